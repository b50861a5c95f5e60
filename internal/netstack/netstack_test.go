//go:build linux

package netstack

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParsePort(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Port
		bad  string // substring of the error; "" = valid
	}{
		{in: "8080:80", want: Port{HostPort: 8080, Port: 80, Proto: "tcp"}},
		{in: "8080:80/tcp", want: Port{HostPort: 8080, Port: 80, Proto: "tcp"}},
		{in: "5353:53/udp", want: Port{HostPort: 5353, Port: 53, Proto: "udp"}},
		{in: "0.0.0.0:8080:80", want: Port{HostIP: "0.0.0.0", HostPort: 8080, Port: 80, Proto: "tcp"}},
		{in: "192.0.2.7:1:65535/udp", want: Port{HostIP: "192.0.2.7", HostPort: 1, Port: 65535, Proto: "udp"}},
		{in: "[::1]:8080:80", want: Port{HostIP: "::1", HostPort: 8080, Port: 80, Proto: "tcp"}},
		{in: "[2001:DB8::1]:8080:80/udp", want: Port{HostIP: "2001:db8::1", HostPort: 8080, Port: 80, Proto: "udp"}},
		{in: "80", bad: "need a host port and a sandbox port"},
		{in: "", bad: "need a host port and a sandbox port"},
		{in: "1:2:3:4", bad: "need a host port and a sandbox port"},
		{in: "8080:80/sctp", bad: `protocol "sctp"`},
		{in: "8080:80/", bad: `protocol ""`},
		{in: "0:80", bad: "host port: 0 out of range"},
		{in: "8080:65536", bad: "sandbox port: 65536 out of range"},
		{in: "8080:-1", bad: "not a number"},
		{in: "x:80", bad: "not a number"},
		{in: ":8080:80", bad: "empty host address"},
		{in: "localhost:8080:80", bad: "not an IPv4 address"},
		{in: "1.2.3:8080:80", bad: "not an IP address"},
		{in: "::1:8080:80", bad: "need a host port and a sandbox port"},
		{in: "[::1:8080:80", bad: "unterminated IPv6 address"},
		{in: "[1.2.3.4]:8080:80", bad: "brackets are for IPv6"},
		{in: "[fe80::1%eth0]:8080:80", bad: "not an IP address"},
	} {
		got, err := ParsePort(tc.in)
		if tc.bad != "" {
			if err == nil || !strings.Contains(err.Error(), tc.bad) || !errors.Is(err, ErrInvalidPort) {
				t.Errorf("ParsePort(%q) = %+v, %v; want an ErrInvalidPort error containing %q", tc.in, got, err, tc.bad)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParsePort(%q): %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParsePort(%q) (-want +got):\n%s", tc.in, diff)
		}
		if err := got.Validate(); err != nil {
			t.Errorf("ParsePort(%q) = %+v, which does not validate: %v", tc.in, got, err)
		}
		// String round-trips.
		again, err := ParsePort(got.String())
		if err != nil || again != got {
			t.Errorf("ParsePort(%q.String() = %q) = %+v, %v; want %+v", tc.in, got.String(), again, err, got)
		}
	}
}

func TestPastaArgs(t *testing.T) {
	args := strings.Join(pastaArgs("/proc/self/fd/3", "/proc/self/fd/4", 65534, 65534, "02:00:00:12:34:56", []Port{
		{HostPort: 8080, Port: 80},
		{HostIP: "::1", HostPort: 8443, Port: 443, Proto: "tcp"},
		{HostIP: "0.0.0.0", HostPort: 5353, Port: 53, Proto: "udp"},
	}), " ")
	for _, want := range []string{
		"--no-map-gw", "-T none", "-U none", "--dns-forward 169.254.1.1",
		"-t 127.0.0.1/8080:80", "-t ::1/8443:443", "-u 0.0.0.0/5353:53",
		"--netns /proc/self/fd/3", "--pid /proc/self/fd/4", "--config-net",
		"--ns-mac-addr 02:00:00:12:34:56", "--runas 65534:65534",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("pastaArgs = %q, want it to contain %q", args, want)
		}
	}
	if strings.Contains(args, "-t none") || strings.Contains(args, "-u none") {
		t.Errorf("pastaArgs = %q: none beside published ports", args)
	}
	if args := strings.Join(pastaArgs("n", "p", 0, 0, "02:00:00:12:34:56", nil), " "); !strings.Contains(args, "-t none") || !strings.Contains(args, "-u none") {
		t.Errorf("pastaArgs without ports = %q, want -t none and -u none (nothing forwarded automatically)", args)
	}
}

func TestResolvConf(t *testing.T) {
	got := string((&Stack{}).ResolvConf())
	if !strings.Contains(got, "nameserver 169.254.1.1\n") {
		t.Errorf("ResolvConf() = %q, want nameserver 169.254.1.1", got)
	}
	if strings.Contains(got, "127.") {
		t.Errorf("ResolvConf() = %q names a loopback resolver", got)
	}
}

// TestResolvSearch: what the sandbox's resolv.conf keeps of the host's,
// as the resolver reads it.
func TestResolvSearch(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{in: "nameserver 127.0.0.53\n", want: ""},
		{in: "nameserver 10.0.0.1\nsearch a.example b.example\noptions ndots:2\noptions\ttimeout:1 edns0\n",
			want: "search a.example b.example\noptions ndots:2 timeout:1 edns0\n"},
		{in: "search a.example\ndomain b.example\n", want: "search b.example\n"}, // the last one wins
		{in: "domain b.example\nsearch a.example c.example\n", want: "search a.example c.example\n"},
		{in: "# search commented.example\n; options rotate\nsearch\noptions\n", want: ""},
	} {
		if got := resolvSearch([]byte(tc.in)); got != tc.want {
			t.Errorf("resolvSearch(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestValidatePorts: two ports that need the same host port are refused.
func TestValidatePorts(t *testing.T) {
	for _, tc := range []struct {
		in  []string
		bad bool
	}{
		{in: []string{"8080:80", "8081:80", "8080:80/udp"}},
		{in: []string{"127.0.0.1:8080:80", "[::1]:8080:80", "192.0.2.7:8080:80"}},
		{in: []string{"8080:80", "8080:81"}, bad: true},
		{in: []string{"8080:80", "127.0.0.1:8080:81"}, bad: true},
		{in: []string{"0.0.0.0:8080:80", "192.0.2.7:8080:81"}, bad: true},
		{in: []string{"[::1]:8080:80", "[::]:8080:81"}, bad: true},
		{in: []string{"5353:53/udp", "0.0.0.0:5353:54/udp"}, bad: true},
	} {
		var ports []Port
		for _, s := range tc.in {
			p, err := ParsePort(s)
			if err != nil {
				t.Fatal(err)
			}
			ports = append(ports, p)
		}
		err := ValidatePorts(ports)
		if tc.bad != (err != nil) || (err != nil && (!errors.Is(err, ErrInvalidPort) || !strings.Contains(err.Error(), "both need host port"))) {
			t.Errorf("ValidatePorts(%v) = %v, want refused: %v", tc.in, err, tc.bad)
		}
	}
}
