// Package environ is the one implementation of the environment-list rules
// that the root package (a snapshot's Env under the caller's), the
// snapshot store (a bare root filesystem's default) and nsinit (a
// command's Env under the sandbox's) share: a package of its own because
// nsinit may import only internal/ leaves, and these rules must not drift
// apart again (they did: two mergeEnvs with different semantics, three
// default PATHs).
package environ

import "strings"

// DefaultPath is the PATH of a sandbox whose snapshot sets none, as docker
// and runc use it.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Merge applies over on top of base, by key: an entry replaces the one of
// the same key where it stands (as docker's ReplaceOrAppendEnvValues
// does), a new key is appended, and later entries win.
func Merge(base, over []string) []string {
	out := make([]string, 0, len(base)+len(over))
	idx := map[string]int{}
	for _, list := range [][]string{base, over} {
		for _, kv := range list {
			k, _, _ := strings.Cut(kv, "=")
			if i, ok := idx[k]; ok {
				out[i] = kv
				continue
			}
			idx[k] = len(out)
			out = append(out, kv)
		}
	}
	return out
}

// Lookup returns the value of key in env (the last entry wins).
func Lookup(env []string, key string) (string, bool) {
	v, ok := "", false
	for _, kv := range env {
		if rest, found := strings.CutPrefix(kv, key+"="); found {
			v, ok = rest, true
		}
	}
	return v, ok
}
