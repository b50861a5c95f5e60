package lightbox

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// CACertsHost is the value of SandboxOptions.CACerts and
// BuildOptions.CACerts that binds the host's CA bundle into the sandbox.
const CACertsHost = "host"

// caBundlePaths are where distributions keep their CA bundle (the list Go's
// crypto/x509 searches): Debian, Ubuntu, Alpine and Arch; Fedora and RHEL;
// openSUSE; OpenELEC; CentOS and RHEL 7; Alpine's and the BSDs' cert.pem.
var caBundlePaths = []string{
	"/etc/ssl/certs/ca-certificates.crt",
	"/etc/pki/tls/certs/ca-bundle.crt",
	"/etc/ssl/ca-bundle.pem",
	"/etc/pki/tls/cacert.pem",
	"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
	"/etc/ssl/cert.pem",
}

// hostCABundle is the host's CA bundle: $SSL_CERT_FILE when set (as Go
// and OpenSSL read it), else the first of caBundlePaths that is a file.
func hostCABundle() (string, error) {
	if f := os.Getenv("SSL_CERT_FILE"); f != "" {
		fi, err := os.Stat(f)
		if err != nil {
			return "", fmt.Errorf("ca-certs host: SSL_CERT_FILE: %w", err)
		}
		if !fi.Mode().IsRegular() {
			return "", fmt.Errorf("ca-certs host: SSL_CERT_FILE %s: not a file", f)
		}
		return filepath.Abs(f)
	}
	for _, p := range caBundlePaths {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("ca-certs host: the host has no CA bundle at %s (nor SSL_CERT_FILE)", strings.Join(caBundlePaths, ", "))
}

// caCertMounts returns read-only binds of the host's CA bundle over each
// of caBundlePaths that the snapshot (layers, bottom first) has as a file
// and that mounts does not take already. It binds over files that exist
// only, so that nothing is created in the sandbox's writable layer and a
// commit or a build step never captures the host's bundle (the snapshot's
// own file is there again once the mount is gone). None found is not an
// error here: the caller decides.
func caCertMounts(layers []string, mounts map[string]Mount) (map[string]Mount, error) {
	host, err := hostCABundle()
	if err != nil {
		return nil, err
	}
	out := map[string]Mount{}
	for _, p := range caBundlePaths {
		if _, taken := mounts[p]; taken {
			continue
		}
		ok, err := fileInLayers(layers, p)
		if err != nil {
			return nil, fmt.Errorf("ca-certs host: %w", err)
		}
		if ok {
			out[p] = Mount{Source: host, ReadOnly: true}
		}
	}
	return out, nil
}

// fileInLayers reports whether the topmost layer (bottom first) that has p
// has a regular file there, resolved inside that layer (RESOLVE_IN_ROOT):
// a whiteout or a directory hides what is below.
func fileInLayers(layers []string, p string) (bool, error) {
	rel := strings.TrimPrefix(path.Clean(p), "/")
	for i := len(layers) - 1; i >= 0; i-- {
		root, err := unix.Open(layers[i], unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return false, &os.PathError{Op: "open", Path: layers[i], Err: err}
		}
		fd, err := unix.Openat2(root, rel, &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
		})
		unix.Close(root)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			continue
		}
		if err != nil {
			return false, &os.PathError{Op: "openat2", Path: filepath.Join(layers[i], rel), Err: err}
		}
		var st unix.Stat_t
		err = unix.Fstat(fd, &st)
		unix.Close(fd)
		if err != nil {
			return false, &os.PathError{Op: "fstat", Path: filepath.Join(layers[i], rel), Err: err}
		}
		return st.Mode&unix.S_IFMT == unix.S_IFREG, nil
	}
	return false, nil
}
