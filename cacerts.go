package lightbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/beamhop/lightbox/snapshot"
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
func caCertMounts(snaps *snapshot.Store, layers []string, mounts map[string]Mount) (map[string]Mount, error) {
	host, err := hostCABundle()
	if err != nil {
		return nil, err
	}
	out := map[string]Mount{}
	for _, p := range caBundlePaths {
		if _, taken := mounts[p]; taken {
			continue
		}
		ok, err := snaps.IsRegularFile(layers, p)
		if err != nil {
			return nil, fmt.Errorf("ca-certs host: %w", err)
		}
		if ok {
			out[p] = Mount{Source: host, ReadOnly: true}
		}
	}
	return out, nil
}
