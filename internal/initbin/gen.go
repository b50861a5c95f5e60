//go:build ignore

// gen builds ./lightbox-init for every architecture lightbox carries a
// lean init for, reproducibly (-trimpath, no build id, no VCS stamp,
// CGO_ENABLED=0), and writes lightbox-init.linux-ARCH.gz and its sha256.
// Run by `go generate ./internal/initbin`.
package main

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
)

// Arches are the GOARCHes a lean init is committed for; others fall back
// to re-executing the whole binary.
var arches = []string{"amd64", "arm64"}

func main() {
	for _, arch := range arches {
		if err := gen(arch); err != nil {
			fmt.Fprintln(os.Stderr, "gen:", err)
			os.Exit(1)
		}
	}
}

func gen(arch string) error {
	tmp, err := os.CreateTemp("", "lightbox-init-*")
	if err != nil {
		return err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	cmd := exec.Command("go", Args(tmp.Name())...)
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+arch, "CGO_ENABLED=0", "GOFLAGS=")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build %s: %w", arch, err)
	}
	b, err := os.ReadFile(tmp.Name())
	if err != nil {
		return err
	}
	var z bytes.Buffer
	zw, err := gzip.NewWriterLevel(&z, gzip.BestCompression)
	if err != nil {
		return err
	}
	zw.Write(b)
	if err := zw.Close(); err != nil {
		return err
	}
	h := sha256.Sum256(b)
	base := "lightbox-init.linux-" + arch
	if err := writeIfChanged(base+".gz", z.Bytes()); err != nil {
		return err
	}
	return writeIfChanged(base+".sha256", []byte(hex.EncodeToString(h[:])+"\n"))
}

func writeIfChanged(p string, b []byte) error {
	if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, b) {
		return nil
	}
	return os.WriteFile(p, b, 0o644)
}

// Args are the go command's arguments that build the lean init to out;
// initbin_test.go builds it the same way to check the committed one.
func Args(out string) []string {
	return []string{"build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid=", "-o", out, "./lightbox-init"}
}
