package earlysig

import (
	"os/exec"
	"strings"
	"testing"
)

// TestWanted: only exec and an attached run register at start; anything
// that could be run's -d, another command, or the OCI runtime face does
// not (a signal registered there and never read would no longer end the
// process).
func TestWanted(t *testing.T) {
	for _, tc := range []struct {
		args string
		want bool
	}{
		{"lightbox exec sb true", true},
		{"/usr/local/bin/lightbox --root /s exec sb true", true},
		{"lightbox --root=/s --log-level debug exec sb true", true},
		{"lightbox --identity-mapping exec sb true", true},
		{"lightbox --root exec run bb", true}, // a store named exec
		{"lightbox run bb true", true},
		{"lightbox run --name x -v vol:/data -e A=1 --keep bb true", true},
		{"lightbox run -it bb sh", true},
		{"lightbox run -d bb sleep 9", false},
		{"lightbox run --detach bb sleep 9", false},
		{"lightbox run -detach=true bb", false},
		{"lightbox run --d=false bb", false}, // not detached, but not worth parsing
		{"lightbox run -dt bb sh", false},
		{"lightbox run -itd bb sh", false},
		{"lightbox run bb ls -d /", false}, // the command's own -d counts too
		{"lightbox run -workdir /x bb pwd", false},
		{"lightbox --root /s run", true},
		{"lightbox ps", false},
		{"lightbox rm -f sb", false},
		{"lightbox snapshot import run x", false},
		{"lightbox --root /s", false},
		{"lightbox --root", false},
		{"lightbox -- exec sb true", false},
		{"lightbox", false},
		{"lightbox-runc exec id true", false},
		{"/usr/bin/lightbox-runc run id", false},
	} {
		if got := Wanted(strings.Fields(tc.args)); got != tc.want {
			t.Errorf("Wanted(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}

// TestTake: a command line that did not ask for the start's registration
// still gets a channel, ready once Notify is in place; a second Take gets
// a new one (the start's is handed out once).
func TestTake(t *testing.T) {
	earlySigs, earlyReady = Notify()
	first := earlySigs
	sigs, ready := Take()
	<-ready
	if sigs != first {
		t.Fatal("Take did not hand out the start's channel")
	}
	sigs2, ready2 := Take()
	<-ready2
	if sigs2 == nil || sigs2 == first {
		t.Fatal("a second Take did not make a channel of its own")
	}
}

// TestImports: the package's init runs early only while its imports are
// initialized early (the package comment): os, os/signal and syscall.
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{join .Imports \" \"}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != "os os/signal syscall" {
		t.Errorf("imports %q, want \"os os/signal syscall\"", got)
	}
}
