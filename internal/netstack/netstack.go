package netstack

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
)

// DNSForwarder is the address, inside the sandbox, of pasta's DNS
// forwarder: queries sent there are relayed to the host's resolver. It is
// the address rootless podman uses with pasta; it is link-local, so it
// never collides with an address a sandbox could want to reach.
// slirp4netns has its own, 10.0.2.3; ResolvConf names the right one.
const DNSForwarder = "169.254.1.1"

// DefaultHostIP is where a published port listens on the host when Port
// names no address.
const DefaultHostIP = "127.0.0.1"

// ErrUnavailable is matched (errors.Is) by the errors of Check and Attach
// when private networking cannot work on this machine; such an error also
// matches errors.ErrUnsupported, and its message names the cause and the
// fix.
var ErrUnavailable = errors.New("private network unavailable")

// ErrInvalidPort is matched by the errors of ParsePort and of Attach for a
// port specification that is not valid.
var ErrInvalidPort = errors.New("invalid port")

// unavailableError is an ErrUnavailable with its cause and fix.
type unavailableError struct {
	cause string // what is missing, e.g. "pasta not found in PATH"
	fix   string // what to do, e.g. "install Debian's passt package"
	err   error  // underlying error, may be nil
}

func (e *unavailableError) Error() string {
	s := ErrUnavailable.Error() + ": " + e.cause
	if e.err != nil {
		s += ": " + e.err.Error()
	}
	return s + ": " + e.fix + ", or use --network none or --network host"
}

func (e *unavailableError) Unwrap() []error {
	errs := []error{ErrUnavailable, errors.ErrUnsupported}
	if e.err != nil {
		errs = append(errs, e.err)
	}
	return errs
}

const (
	fixPasta = "install slirp4netns (apt-get install slirp4netns) or pasta (apt-get install passt)"
	fixTun   = "make /dev/net/tun usable by unprivileged users (chmod 0666 /dev/net/tun, as most distributions ship it)"
)

// Port publishes a port of the sandbox on the host.
type Port struct {
	// HostIP is the host address to listen on; "" = 127.0.0.1.
	HostIP string
	// HostPort is the port on the host, 1-65535.
	HostPort int
	// Port is the port inside the sandbox, 1-65535.
	Port int
	// Proto is "tcp" or "udp"; "" = "tcp".
	Proto string
}

// String formats p as ParsePort reads it.
func (p Port) String() string {
	s := strconv.Itoa(p.HostPort) + ":" + strconv.Itoa(p.Port) + "/" + p.proto()
	if p.HostIP == "" {
		return s
	}
	if strings.Contains(p.HostIP, ":") {
		return "[" + p.HostIP + "]:" + s
	}
	return p.HostIP + ":" + s
}

func (p Port) proto() string {
	if p.Proto == "" {
		return "tcp"
	}
	return p.Proto
}

func (p Port) hostIP() string {
	if p.HostIP == "" {
		return DefaultHostIP
	}
	return p.HostIP
}

// Validate checks p; the error wraps ErrInvalidPort.
func (p Port) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("port %s: %w: %s", p, ErrInvalidPort, fmt.Sprintf(format, a...))
	}
	if p.HostPort < 1 || p.HostPort > 65535 {
		return bad("host port %d out of range 1-65535", p.HostPort)
	}
	if p.Port < 1 || p.Port > 65535 {
		return bad("sandbox port %d out of range 1-65535", p.Port)
	}
	if pr := p.proto(); pr != "tcp" && pr != "udp" {
		return bad("protocol %q is not tcp or udp", pr)
	}
	if p.HostIP != "" {
		a, err := netip.ParseAddr(p.HostIP)
		if err != nil || a.Zone() != "" {
			return bad("host address %q is not an IP address", p.HostIP)
		}
	}
	return nil
}

// ValidatePorts checks each port and that no two need the same host
// port: the same protocol and port on the same host address, or on any
// address when either is the unspecified one (0.0.0.0 or ::), which
// binds them all. The error wraps ErrInvalidPort and names both.
func ValidatePorts(ports []Port) error {
	for i, p := range ports {
		if err := p.Validate(); err != nil {
			return err
		}
		a := netip.MustParseAddr(p.hostIP()) // Validate parsed it
		for _, q := range ports[:i] {
			if q.HostPort != p.HostPort || q.proto() != p.proto() {
				continue
			}
			b := netip.MustParseAddr(q.hostIP())
			if a == b || a.IsUnspecified() || b.IsUnspecified() {
				return fmt.Errorf("publish ports %s and %s: %w: both need host port %s/%s: give each its own host port",
					q, p, ErrInvalidPort, net.JoinHostPort(p.hostIP(), strconv.Itoa(p.HostPort)), p.proto())
			}
		}
	}
	return nil
}

// ParsePort reads "[HOSTIP:]HOSTPORT:PORT[/tcp|udp]" (an IPv6 HOSTIP in
// brackets: "[::1]:8080:80"). The error wraps ErrInvalidPort.
func ParsePort(s string) (Port, error) {
	bad := func(why string) (Port, error) {
		return Port{}, fmt.Errorf("port %q: %w: %s (want [HOSTIP:]HOSTPORT:PORT[/tcp|udp])", s, ErrInvalidPort, why)
	}
	rest, proto := s, "tcp"
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		rest, proto = s[:i], s[i+1:]
		if proto != "tcp" && proto != "udp" {
			return bad("protocol " + strconv.Quote(proto) + " is not tcp or udp")
		}
	}
	var p Port
	p.Proto = proto
	if strings.HasPrefix(rest, "[") {
		end := strings.Index(rest, "]:")
		if end < 0 {
			return bad("unterminated IPv6 address")
		}
		p.HostIP, rest = rest[1:end], rest[end+2:]
		if !strings.Contains(p.HostIP, ":") {
			return bad("brackets are for IPv6 addresses")
		}
	}
	parts := strings.Split(rest, ":")
	switch {
	case len(parts) == 3 && p.HostIP == "":
		if parts[0] == "" {
			return bad("empty host address")
		}
		p.HostIP, parts = parts[0], parts[1:]
		if !strings.Contains(p.HostIP, ".") {
			return bad("host address " + strconv.Quote(p.HostIP) + " is not an IPv4 address (IPv6 goes in brackets)")
		}
	case len(parts) == 2:
	default:
		return bad("need a host port and a sandbox port")
	}
	var err error
	if p.HostPort, err = atoiPort(parts[0]); err != nil {
		return bad("host port: " + err.Error())
	}
	if p.Port, err = atoiPort(parts[1]); err != nil {
		return bad("sandbox port: " + err.Error())
	}
	if p.HostIP != "" {
		a, err := netip.ParseAddr(p.HostIP)
		if err != nil || a.Zone() != "" {
			return bad("host address " + strconv.Quote(p.HostIP) + " is not an IP address")
		}
		p.HostIP = a.String()
	}
	return p, nil
}

func atoiPort(s string) (int, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%s out of range 1-65535", s)
	}
	return n, nil
}

// The user-mode network stacks Attach can start.
const (
	// Pasta is pasta, from Debian's passt package: used when asked for,
	// or when slirp4netns is not installed.
	Pasta = "pasta"
	// Slirp4netns is slirp4netns: the default.
	Slirp4netns = "slirp4netns"
)

// Options configure Attach. The zero value picks the stack, publishes no
// port and logs nothing.
type Options struct {
	// Helper is Pasta or Slirp4netns; "" = slirp4netns when it is
	// installed, else pasta. Both run outside the sandbox's pid namespace
	// and never as the host's root (see the package doc); idle,
	// slirp4netns costs ~0.3 MB of anonymous memory per sandbox, pasta
	// ~29 MB (its buffers) plus ~1.7 MB for its keeper (bench/NOTES.md,
	// "The network stacks"), for comparable throughput.
	Helper string
	// Ports are published on the host; none by default.
	Ports []Port
	// Logger receives debug records of what is started; nil discards.
	Logger *slog.Logger
	// Exit, when not nil, is a pipe's read end that hangs up once the
	// sandbox's init has exited (the init holds the only write end):
	// slirp4netns's --exit-fd then, which exits at once. Without it,
	// --exit-fd is a pidfd of the init, which hangs up only once the
	// init is reaped (an orphaned init waits for the host's pid 1 for
	// that). Attach passes on a copy; the caller keeps and closes its own.
	Exit *os.File
}

// Stack is a user-mode network stack attached to one sandbox. It is safe
// for concurrent use.
type Stack struct {
	helper string // Pasta or Slirp4netns
	dns    string // the DNS forwarder's address inside the sandbox
	search string // the host's resolv.conf's search and options lines, for the sandbox's
	pids   []int

	mu     sync.Mutex
	closed bool
	close  func() error // stops the helper; set by Attach
}

// ResolvConf returns the content of the sandbox's /etc/resolv.conf: the
// stack's DNS forwarder, never a host loopback resolver, and the search
// domains and options of the host's resolv.conf (as docker and podman
// keep them), so that a short name the host resolves resolves inside too.
func (s *Stack) ResolvConf() []byte {
	dns := s.dns
	if dns == "" {
		dns = DNSForwarder
	}
	return []byte("# written by lightbox: DNS goes through the sandbox's network stack\nnameserver " + dns + "\n" + s.search)
}

// resolvSearch returns the search and options lines of a resolv.conf for
// the sandbox's, as the resolver reads them: the last "search" or
// "domain" line wins (a domain is a search list of one), and the options
// of every "options" line add up. Nameservers are the stack's business.
func resolvSearch(conf []byte) string {
	var search, options []string
	for line := range strings.Lines(string(conf)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "search":
			search = f[1:]
		case "domain":
			search = f[1:2]
		case "options":
			options = append(options, f[1:]...)
		}
	}
	var b strings.Builder
	if len(search) > 0 {
		b.WriteString("search " + strings.Join(search, " ") + "\n")
	}
	if len(options) > 0 {
		b.WriteString("options " + strings.Join(options, " ") + "\n")
	}
	return b.String()
}

// Helper returns which stack is attached: Pasta or Slirp4netns.
func (s *Stack) Helper() string { return s.helper }

// Pids returns the pids (in the caller's pid namespace) of the stack's
// helper processes, for memory accounting and garbage collection.
func (s *Stack) Pids() []int { return append([]int(nil), s.pids...) }

// Close stops the helper processes. The sandbox's network goes down; it is
// not needed for cleanup, since the helpers die with the sandbox's init
// anyway. Close is idempotent.
func (s *Stack) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.close == nil {
		s.closed = true
		return nil
	}
	s.closed = true
	return s.close()
}
