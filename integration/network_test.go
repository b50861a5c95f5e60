//go:build linux

package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// freePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestPublishedPort: the default (private) network publishes a sandbox
// port on the host's loopback.
func TestPublishedPort(t *testing.T) {
	root, _ := newStore(t)
	port := freePort(t)
	lbOK(t, root, "run", "-d", "--name", "web", "-p", fmt.Sprintf("%d:8080", port), "busybox",
		"sh", "-c", "mkdir -p /www && echo hello from the sandbox > /www/index.html && exec httpd -f -p 8080 -h /www")
	defer lb(t, root, "", "rm", "-f", "web")
	url := fmt.Sprintf("http://127.0.0.1:%d/index.html", port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != "hello from the sandbox\n" {
				t.Fatalf("GET %s = %q", url, body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The sandbox has its own interface and a resolver it can reach.
	out := lbOK(t, root, "exec", "web", "sh", "-c", "cat /etc/resolv.conf; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort")
	if strings.Contains(out, "127.0.0.53") || !strings.Contains(out, "nameserver") || !strings.Contains(out, "lo\n") {
		t.Errorf("inside the private network: %q", out)
	}
}

// TestHostNetwork: --network host sees the host's interfaces.
func TestHostNetwork(t *testing.T) {
	root, _ := newStore(t)
	host, err := os.ReadFile("/proc/net/dev")
	if err != nil {
		t.Fatal(err)
	}
	out := lbOK(t, root, "run", "--network", "host", "busybox", "cat", "/proc/net/dev")
	for _, line := range strings.Split(string(host), "\n")[2:] {
		name, _, ok := strings.Cut(line, ":")
		if ok && !strings.Contains(out, strings.TrimSpace(name)+":") {
			t.Errorf("host interface %s not seen with --network host", strings.TrimSpace(name))
		}
	}
}

// TestNetworkLost: when the user-mode stack of a sandbox's private
// network exits (killed here), the sandbox runs on with no network, and
// ps, ps --format json and inspect say so; until then they do not.
func TestNetworkLost(t *testing.T) {
	root, _ := newStore(t)
	lbOK(t, root, "run", "-d", "--name", "nl", "busybox", "sleep", "1000")
	lost := func() bool {
		var list []struct {
			Name        string `json:"name"`
			NetworkLost bool   `json:"networkLost"`
		}
		if err := json.Unmarshal([]byte(lbOK(t, root, "ps", "--format", "json")), &list); err != nil || len(list) != 1 {
			t.Fatalf("ps --format json: %v %v", list, err)
		}
		return list[0].NetworkLost
	}
	if lost() {
		t.Fatal("a sandbox whose network stack runs reads as having lost it")
	}
	var st struct {
		NetPids []struct{ Pid int } `json:"netPids"`
	}
	b, err := os.ReadFile(filepath.Join(root, "sandboxes", "nl", "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &st); err != nil || len(st.NetPids) == 0 {
		t.Fatalf("state.json names no network helper: %s (%v)", b, err)
	}
	// The stack this test's sandbox started: killed by its pid.
	if err := syscall.Kill(st.NetPids[0].Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ps says the network is lost", lost)
	if out := lbOK(t, root, "ps"); !strings.Contains(out, "running, no network") {
		t.Errorf("ps = %q, want the sandbox running, no network", out)
	}
	if out := lbOK(t, root, "inspect", "nl"); !strings.Contains(out, `"networkLost": true`) {
		t.Errorf("inspect = %s, want networkLost", out)
	}
	lbOK(t, root, "rm", "-f", "-t", "0", "nl")
}
