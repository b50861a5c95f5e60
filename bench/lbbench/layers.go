package main

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// makeLayeredImage writes an OCI image layout at dir holding one image
// tagged tag: the busybox rootfs as its first layer, then layers-1 layers
// of totalMiB/(layers-1) MiB of files each. File contents are zeros (the
// blobs stay small; the unpacked snapshot is the full size).
func makeLayeredImage(dir, rootfs, tag string, layers, totalMiB int) error {
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return err
	}
	type desc struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Size      int64  `json:"size"`
	}
	var layerDescs []desc
	var diffIDs []string

	perLayer := int64(totalMiB) << 20 / int64(layers-1)
	const fileSize = 1 << 20
	for i := range layers {
		w, err := newBlobWriter(blobs)
		if err != nil {
			return err
		}
		zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
		diff := sha256.New()
		tw := tar.NewWriter(io.MultiWriter(zw, diff))
		if i == 0 {
			err = tarTree(tw, rootfs)
		} else {
			err = tarZeros(tw, fmt.Sprintf("data/layer%02d", i), perLayer, fileSize)
		}
		if err == nil {
			err = tw.Close()
		}
		if err == nil {
			err = zw.Close()
		}
		if err != nil {
			w.abort()
			return err
		}
		d, size, err := w.commit()
		if err != nil {
			return err
		}
		layerDescs = append(layerDescs, desc{"application/vnd.oci.image.layer.v1.tar+gzip", d, size})
		diffIDs = append(diffIDs, "sha256:"+hex.EncodeToString(diff.Sum(nil)))
	}

	config := map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config":       map[string]any{"Env": []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
	}
	cd, cs, err := writeJSONBlob(blobs, config)
	if err != nil {
		return err
	}
	manifest := map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        desc{"application/vnd.oci.image.config.v1+json", cd, cs},
		"layers":        layerDescs,
	}
	md, ms, err := writeJSONBlob(blobs, manifest)
	if err != nil {
		return err
	}
	index := map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests": []any{map[string]any{
			"mediaType":   "application/vnd.oci.image.manifest.v1+json",
			"digest":      md,
			"size":        ms,
			"annotations": map[string]string{"org.opencontainers.image.ref.name": tag},
		}},
	}
	data, _ := json.Marshal(index)
	if err := os.WriteFile(filepath.Join(dir, "index.json"), data, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
}

// blobWriter writes a blob to a temporary file and names it by digest.
type blobWriter struct {
	dir string
	f   *os.File
	h   hash.Hash
	n   int64
}

func newBlobWriter(dir string) (*blobWriter, error) {
	f, err := os.CreateTemp(dir, ".tmp-")
	if err != nil {
		return nil, err
	}
	return &blobWriter{dir: dir, f: f, h: sha256.New()}, nil
}

func (w *blobWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	return n, err
}

func (w *blobWriter) abort() {
	_ = w.f.Close()           // aborted: the partial blob is removed next
	_ = os.Remove(w.f.Name()) // best effort cleanup
}

func (w *blobWriter) commit() (string, int64, error) {
	if err := w.f.Close(); err != nil {
		_ = os.Remove(w.f.Name()) // best effort cleanup
		return "", 0, err
	}
	sum := hex.EncodeToString(w.h.Sum(nil))
	if err := os.Rename(w.f.Name(), filepath.Join(w.dir, sum)); err != nil {
		return "", 0, err
	}
	if err := os.Chmod(filepath.Join(w.dir, sum), 0o644); err != nil {
		return "", 0, err
	}
	return "sha256:" + sum, w.n, nil
}

func writeJSONBlob(dir string, v any) (string, int64, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return "", 0, err
	}
	w, err := newBlobWriter(dir)
	if err != nil {
		return "", 0, err
	}
	if _, err := w.Write(data); err != nil {
		w.abort()
		return "", 0, err
	}
	return w.commit()
}

// tarTree writes the tree at root (regular files, dirs, symlinks), owned
// by 0:0.
func tarTree(tw *tar.Writer, root string) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if rel == "." {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = rel
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			_ = f.Close() // read-only, or nothing written through it
			return err
		}
		return nil
	})
}

var zeros = make([]byte, 1<<20)

// tarZeros writes dir/ and total bytes of zero-filled files of size each.
func tarZeros(tw *tar.Writer, dir string, total, size int64) error {
	for _, d := range []string{"data/", dir + "/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755}); err != nil {
			return err
		}
	}
	for i := int64(0); i*size < total; i++ {
		n := min(size, total-i*size)
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("%s/f%04d", dir, i), Mode: 0o644, Size: n}); err != nil {
			return err
		}
		for n > 0 {
			k := min(n, int64(len(zeros)))
			if _, err := tw.Write(zeros[:k]); err != nil {
				return err
			}
			n -= k
		}
	}
	return nil
}
