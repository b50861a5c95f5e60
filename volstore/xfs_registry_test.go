//go:build linux

package volstore

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The registry rewrites keep every line that is not lightbox's own, and
// count ids from either file as taken.
func TestXFSRegistryRewrite(t *testing.T) {
	dir := t.TempDir()
	b := &XFSBackend{
		projects: filepath.Join(dir, "projects"),
		projid:   filepath.Join(dir, "projid"),
		tag:      "lightbox-0000abcd-",
	}
	projects := "# comment\n10:/srv/a\n\n100000:/srv/b\n"
	projid := "a:10\n# names\nonly-named:100001\n"
	os.WriteFile(b.projects, []byte(projects), 0o644)
	os.WriteFile(b.projid, []byte(projid), 0o644)

	reg, err := b.readRegistry()
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[uint32]bool{10: true, 100000: true, 100001: true, 100002: false} {
		if got := reg.used(id); got != want {
			t.Errorf("used(%d) = %v, want %v", id, got, want)
		}
	}
	reg.add(100002, b.tag+"vol", "/store/volumes/vol/data")
	if err := b.writeRegistry(reg); err != nil {
		t.Fatal(err)
	}
	reg, err = b.readRegistry()
	if err != nil {
		t.Fatal(err)
	}
	if name, path, ok := reg.lookup(100002); !ok || name != b.tag+"vol" || path != "/store/volumes/vol/data" {
		t.Errorf("lookup(100002) = %q, %q, %v after add", name, path, ok)
	}
	if got := reg.ours(b.tag); len(got) != 1 || got[0].id != 100002 {
		t.Errorf("ours = %+v, want just id 100002", got)
	}
	if !reg.nameTaken(b.tag + "vol") {
		t.Errorf("nameTaken(%q) = false after add", b.tag+"vol")
	}
	reg.remove(100002)
	if err := b.writeRegistry(reg); err != nil {
		t.Fatal(err)
	}
	gotP, _ := os.ReadFile(b.projects)
	gotN, _ := os.ReadFile(b.projid)
	if string(gotP) != projects || string(gotN) != projid {
		t.Errorf("after add and remove:\nprojects %q, want %q\nprojid %q, want %q", gotP, projects, gotN, projid)
	}
}

func TestXFSProjectName(t *testing.T) {
	b := &XFSBackend{root: "/var/lib/lightbox", tag: "lightbox-0000abcd-"}
	reg := &registry{projid: []string{"lightbox-0000abcd-volumes-taken:7"}}
	for _, tc := range []struct{ dir, want string }{
		{"/var/lib/lightbox/volumes/npm-cache/data", "lightbox-0000abcd-volumes-npm-cache"},
		{"/var/lib/lightbox/sandboxes/sb1/upper", "lightbox-0000abcd-sandboxes-sb1-upper"},
		{"/elsewhere/x y", "lightbox-0000abcd-x-y"},
		{"/var/lib/lightbox/volumes/taken/data", "lightbox-0000abcd-volumes-taken-9"},
	} {
		if got := b.projectName(tc.dir, reg, 9); got != tc.want {
			t.Errorf("projectName(%s) = %q, want %q", tc.dir, got, tc.want)
		}
		if strings.ContainsAny(b.projectName(tc.dir, reg, 9), ": \n") {
			t.Errorf("projectName(%s) has a character /etc/projid cannot hold", tc.dir)
		}
	}
}
