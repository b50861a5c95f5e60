package netstack

// How these tests reach things without any external address: the test
// binary re-executes itself into a "world", a network namespace of its own
// (plus a user namespace in the rootless pass, and a mount namespace whose
// /etc/resolv.conf names the test's resolver). The world stands for the
// host: a veth pair gives it the interface with the default route that
// pasta copies into sandboxes (10.199.0.2/24 via 10.199.0.1), and the
// address 10.199.9.1 on which the test's TCP, UDP and DNS servers listen.
// Both gateway and server addresses are local to the world, so no packet
// ever leaves it. Sandboxes are further re-executions of the test binary in
// new user, network and pid namespaces, started from the world and serving
// requests (dial, resolve, listen) over a pipe; pasta attaches to them
// exactly as for a real sandbox, from the world's network namespace.

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/beamhop/lightbox/internal/reexec"
	"github.com/beamhop/lightbox/internal/testutil"
	"golang.org/x/sys/unix"
)

const (
	envRole   = "_NETSTACK_TEST_ROLE" // "world", "sandbox", "launcher"
	worldGW   = "10.199.0.1"          // the world's default gateway (local to it)
	worldIP   = "10.199.0.2"          // the world's address on the template interface
	serverIP  = "10.199.9.1"          // where the world's servers listen
	tcpPort   = 7001                  // TCP greeter on serverIP
	loPort    = 7002                  // TCP greeter on the world's 127.0.0.1 only
	udpPort   = 7003                  // UDP echo on serverIP
	dnsName   = "svc.lightbox.test."  // the one name the world's resolver knows
	dnsAnswer = "10.199.77.77"
)

func TestMain(m *testing.M) {
	if reexec.Role() == KeeperRole {
		KeeperMain()
	}
	switch os.Getenv(envRole) {
	case "sandbox":
		os.Exit(sandboxMain())
	case "launcher":
		os.Exit(launcherMain())
	case "world":
		if err := setupWorld(); err != nil {
			fmt.Fprintln(os.Stderr, "set up the test world:", err)
			os.Exit(3)
		}
	}
	os.Exit(m.Run())
}

func inWorld() bool { return os.Getenv(envRole) == "world" }

// runInWorld re-runs the current test in the world and fails t if it
// fails there; its output is logged.
func runInWorld(t *testing.T) {
	t.Helper()
	testutil.NeedTool(t, "ip")
	testutil.NeedTool(t, "pasta")
	testutil.NeedTool(t, "nsenter")
	flags := uintptr(unix.CLONE_NEWNET | unix.CLONE_NEWNS)
	spa := &syscall.SysProcAttr{Cloneflags: flags, Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() != 0 {
		spa.Cloneflags |= unix.CLONE_NEWUSER
		spa.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
		spa.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/proc/self/exe", "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), envRole+"=world")
	cmd.SysProcAttr = spa
	out, err := cmd.CombinedOutput()
	for line := range strings.Lines(string(out)) {
		t.Log("world: " + strings.TrimRight(line, "\n"))
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 3 && strings.Contains(string(out), "set up the test world") {
		testutil.Need(t, false, "needs a network namespace with veth: "+string(out))
	}
	if err != nil {
		t.Fatalf("the test failed in its network namespace: %v", err)
	}
}

// setupWorld runs in the world process: interfaces, routes, resolv.conf.
func setupWorld() error {
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "lb0", "type", "veth", "peer", "name", "lb1"},
		{"link", "set", "lb0", "up"},
		{"link", "set", "lb1", "up"},
		{"addr", "add", worldIP + "/24", "dev", "lb0"},
		{"addr", "add", worldGW + "/32", "dev", "lb1"},
		{"addr", "add", serverIP + "/32", "dev", "lb1"},
		{"route", "add", "default", "via", worldGW, "dev", "lb0"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	f, err := os.CreateTemp("", "netstack-resolv-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // the bind mount keeps the inode
	if _, err := f.WriteString("nameserver " + serverIP + "\n"); err != nil {
		return err
	}
	f.Close()
	// As a host's resolv.conf is: pasta may run as nobody.
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	if err := unix.Mount(f.Name(), "/etc/resolv.conf", "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind resolv.conf: %w", err)
	}
	return nil
}

// ---------------------------------------------------------------- sandbox

// request is one thing a test sandbox does on behalf of the test.
type request struct {
	Op   string    `json:"op"`             // "dial", "udp", "resolve", "listen", "addrs", "run", "all"
	Addr string    `json:"addr,omitempty"` // where to dial or listen or which resolver
	Name string    `json:"name,omitempty"` // what to resolve
	Args []string  `json:"args,omitempty"` // what to run
	All  []request `json:"all,omitempty"`  // "all": these at once; Data is their []response
}

type response struct {
	Data string `json:"data,omitempty"`
	Err  string `json:"err,omitempty"`
}

// sandboxMain serves requests on stdin until EOF, as pid 1 of its own
// user, network and pid namespaces.
func sandboxMain() int {
	// As lightbox's own init does: not dumpable, so that a workload
	// cannot ptrace it; Attach must still reach its namespaces.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "prctl:", err)
		return 1
	}
	in := bufio.NewScanner(os.Stdin)
	enc := json.NewEncoder(os.Stdout)
	enc.Encode(response{Data: "ready"})
	for in.Scan() {
		var req request
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			enc.Encode(response{Err: err.Error()})
			continue
		}
		data, err := serve(req)
		r := response{Data: data}
		if err != nil {
			r.Err = err.Error()
		}
		enc.Encode(r)
	}
	return 0
}

func serve(req request) (string, error) {
	const timeout = 3 * time.Second
	switch req.Op {
	case "all":
		// Probes that must fail wait out their timeout: at once, they
		// wait it once.
		rs := make([]response, len(req.All))
		var wg sync.WaitGroup
		for i, r := range req.All {
			wg.Go(func() {
				data, err := serve(r)
				rs[i].Data = data
				if err != nil {
					rs[i].Err = err.Error()
				}
			})
		}
		wg.Wait()
		b, err := json.Marshal(rs)
		return string(b), err
	case "dial":
		c, err := net.DialTimeout("tcp", req.Addr, timeout)
		if err != nil {
			return "", err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		fmt.Fprintf(c, "hello\n")
		line, err := bufio.NewReader(c).ReadString('\n')
		return strings.TrimSpace(line), err
	case "udp":
		c, err := net.Dial("udp", req.Addr)
		if err != nil {
			return "", err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		if _, err := c.Write([]byte("ping")); err != nil {
			return "", err
		}
		b := make([]byte, 512)
		n, err := c.Read(b)
		return string(b[:n]), err
	case "resolve":
		r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, req.Addr) // udp, or tcp for a truncated answer
		}}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		addrs, err := r.LookupHost(ctx, req.Name)
		return strings.Join(addrs, ","), err
	case "listen":
		l, err := net.Listen("tcp", req.Addr)
		if err != nil {
			return "", err
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					c.SetDeadline(time.Now().Add(timeout))
					line, _ := bufio.NewReader(c).ReadString('\n')
					fmt.Fprintf(c, "sandbox got %s\n", strings.TrimSpace(line))
				}()
			}
		}()
		return l.Addr().String(), nil
	case "conns":
		// Open Args[0] TCP connections to Addr, all at once open, until
		// one fails; say how many were open.
		n, _ := strconv.Atoi(req.Args[0])
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for range n {
			c, err := net.DialTimeout("tcp", req.Addr, timeout)
			if err != nil {
				return strconv.Itoa(len(conns)), err
			}
			conns = append(conns, c)
		}
		return strconv.Itoa(len(conns)), nil
	case "silence":
		// No IPv6 on interfaces made from now on: the sandbox sends no
		// frame of its own (router solicitation, MLD report) after its
		// link comes up, so the first frame on its interface is one
		// that comes in.
		for _, p := range []string{"/proc/sys/net/ipv6/conf/all/disable_ipv6", "/proc/sys/net/ipv6/conf/default/disable_ipv6"} {
			if err := os.WriteFile(p, []byte("1\n"), 0); err != nil {
				return "", err
			}
		}
		return "", nil
	case "run":
		out, err := exec.Command(req.Args[0], req.Args[1:]...).CombinedOutput()
		return string(out), err
	case "addrs":
		var out []string
		ifs, err := net.Interfaces()
		if err != nil {
			return "", err
		}
		for _, i := range ifs {
			as, _ := i.Addrs()
			for _, a := range as {
				out = append(out, i.Name+"="+a.String())
			}
		}
		route, err := os.ReadFile("/proc/self/net/route")
		if err != nil {
			return "", err
		}
		for line := range strings.Lines(string(route)) {
			f := strings.Fields(line)
			if len(f) > 2 && f[1] == "00000000" {
				out = append(out, "default@"+f[0])
			}
		}
		return strings.Join(out, " "), nil
	}
	return "", fmt.Errorf("unknown op %q", req.Op)
}

// sandbox is a running test sandbox.
type sandbox struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *os.File
	rd  *bufio.Reader
}

// sandboxCmd prepares a sandbox in new user, network and pid namespaces
// whose root is uid:gid of ours: the test binary serving requests when
// role is "sandbox", an idle sleep when it is "idle".
func sandboxCmd(role string, uid, gid int) *exec.Cmd {
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = append(os.Environ(), envRole+"="+role)
	if role == "idle" {
		cmd = exec.Command("sleep", "600")
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  unix.CLONE_NEWUSER | unix.CLONE_NEWNET | unix.CLONE_NEWPID,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: gid, Size: 1}},
		Pdeathsig:   syscall.SIGKILL,
	}
	return cmd
}

// ownSandboxCmd is sandboxCmd for a sandbox whose root is ours; as root,
// as in a store that maps ids to themselves, 65536 ids are mapped, so
// that nobody (65534) is too.
func ownSandboxCmd(role string) *exec.Cmd {
	cmd := sandboxCmd(role, os.Geteuid(), os.Getegid())
	if os.Geteuid() == 0 && parentID("uid_map", 0) == 0 { // real root, not the rootless world's
		cmd.SysProcAttr.UidMappings[0].Size = 65536
		cmd.SysProcAttr.GidMappings[0].Size = 65536
		cmd.SysProcAttr.GidMappingsEnableSetgroups = true
	}
	return cmd
}

func startSandbox(t *testing.T) *sandbox {
	t.Helper()
	cmd := ownSandboxCmd("sandbox")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sandbox: %v", err)
	}
	s := &sandbox{cmd: cmd, in: in, out: out.(*os.File), rd: bufio.NewReader(out)}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	if r := s.recv(t); r.Data != "ready" {
		t.Fatalf("sandbox said %+v, want ready", r)
	}
	return s
}

func (s *sandbox) pid() int { return s.cmd.Process.Pid }

func (s *sandbox) recv(t *testing.T) response {
	t.Helper()
	s.out.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := s.rd.ReadBytes('\n')
	if err != nil {
		t.Fatalf("read from sandbox: %v", err)
	}
	var r response
	if err := json.Unmarshal(line, &r); err != nil {
		t.Fatalf("sandbox said %q: %v", line, err)
	}
	return r
}

// do runs req in the sandbox and returns its data and error text.
func (s *sandbox) do(t *testing.T, req request) (string, string) {
	t.Helper()
	b, _ := json.Marshal(req)
	if _, err := s.in.Write(append(b, '\n')); err != nil {
		t.Fatalf("write to sandbox: %v", err)
	}
	r := s.recv(t)
	return r.Data, r.Err
}

// doAll sends reqs to the sandbox as one "all" request, carried out at
// once, and returns their (data, error text) pairs in order.
func (s *sandbox) doAll(t *testing.T, reqs []request) []response {
	t.Helper()
	data, errText := s.do(t, request{Op: "all", All: reqs})
	var rs []response
	if err := json.Unmarshal([]byte(data), &rs); err != nil || len(rs) != len(reqs) {
		t.Fatalf("sandbox answered %d requests at once with %q (%s): %v", len(reqs), data, errText, err)
	}
	return rs
}

// ---------------------------------------------------------------- servers

// serveTCP listens on addr until the test ends and hands each connection
// to handle, on a goroutine of its own; handle closes it.
func serveTCP(t *testing.T, addr string, handle func(net.Conn)) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
}

// greeter answers each TCP connection on addr with "greeter@addr got LINE".
func greeter(t *testing.T, addr string) {
	t.Helper()
	serveTCP(t, addr, func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		fmt.Fprintf(c, "greeter@%s got %s\n", addr, strings.TrimSpace(line))
	})
}

// udpEcho answers each datagram on addr with "echo:" and its content.
func udpEcho(t *testing.T, addr string) {
	t.Helper()
	serveUDP(t, addr, func(q []byte) []byte { return append([]byte("echo:"), q...) })
}

// serveUDP answers each datagram on addr (up to 1500 bytes) with what
// answer returns for it, nothing for nil, until the test ends.
func serveUDP(t *testing.T, addr string, answer func([]byte) []byte) {
	t.Helper()
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		b := make([]byte, 1500)
		for {
			n, from, err := c.ReadFrom(b)
			if err != nil {
				return
			}
			if resp := answer(b[:n]); resp != nil {
				c.WriteTo(resp, from)
			}
		}
	}()
}

// dnsServer answers A queries for dnsName with dnsAnswer, empty answers
// for its other types, NXDOMAIN for anything else.
func dnsServer(t *testing.T, addr string) {
	t.Helper()
	serveUDP(t, addr, dnsAnswerFor)
}

func dnsAnswerFor(q []byte) []byte {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:]) != 1 {
		return nil
	}
	// Read the question's name.
	i, labels := 12, []string{}
	for i < len(q) && q[i] != 0 {
		l := int(q[i])
		if l&0xc0 != 0 || i+1+l > len(q) {
			return nil
		}
		labels = append(labels, string(q[i+1:i+1+l]))
		i += 1 + l
	}
	if i+5 > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[i+1:])
	end := i + 5 // past the root label, QTYPE and QCLASS
	name := strings.ToLower(strings.Join(labels, ".")) + "."
	resp := append([]byte(nil), q[:end]...)
	resp[2] = 0x80 | q[2]&0x01 // QR, keep RD
	resp[3] = 0x80             // RA, NOERROR
	binary.BigEndian.PutUint16(resp[6:], 0)
	binary.BigEndian.PutUint16(resp[8:], 0)
	binary.BigEndian.PutUint16(resp[10:], 0)
	switch {
	case name != dnsName:
		resp[3] |= 3 // NXDOMAIN
	case qtype == 1:
		binary.BigEndian.PutUint16(resp[6:], 1)
		ip := net.ParseIP(dnsAnswer).To4()
		resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4)
		resp = append(resp, ip...)
	}
	return resp
}

// ---------------------------------------------------------------- helpers

// waitExit waits until process pid has exited, up to d.
func waitExit(pid int, d time.Duration) bool {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return errors.Is(err, unix.ESRCH)
	}
	defer unix.Close(fd)
	return exited(fd, d)
}

// procIDs returns the ids of the Uid or Gid line of /proc/PID/status.
func procIDs(pid int, key string) ([]int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	for line := range strings.Lines(string(b)) {
		k, v, _ := strings.Cut(line, ":")
		if k != key {
			continue
		}
		var ids []int
		for _, f := range strings.Fields(v) {
			n, err := strconv.Atoi(f)
			if err != nil {
				return nil, fmt.Errorf("/proc/%d/status: %s: %q", pid, key, v)
			}
			ids = append(ids, n)
		}
		return ids, nil
	}
	return nil, fmt.Errorf("/proc/%d/status: no %s line", pid, key)
}

// isHelper reports whether pid runs helper (pasta's comm may be
// passt.avx2).
func isHelper(pid int, helper string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return false
	}
	if helper == Pasta {
		return strings.HasPrefix(string(b), "pasta") || strings.HasPrefix(string(b), "passt")
	}
	return strings.HasPrefix(string(b), helper)
}

func attach(t *testing.T, s *sandbox, opts Options) *Stack {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	st, err := Attach(ctx, s.pid(), opts)
	if err != nil {
		t.Fatalf("Attach(%d): %v", s.pid(), err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// ---------------------------------------------------------------- tests

// TestPrivateNetwork attaches pasta to sandboxes, as root and rootless, and
// checks what a user sees: an address and a default route, outbound TCP
// and UDP to a host address, DNS through the forwarder, published ports
// on the host's loopback only, the host's loopback out of reach, and the
// helper's lifetime.
func TestPrivateNetwork(t *testing.T) {
	if !inWorld() {
		runInWorld(t)
		return
	}
	greeter(t, net.JoinHostPort(serverIP, strconv.Itoa(tcpPort)))
	greeter(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(loPort)))
	udpEcho(t, net.JoinHostPort(serverIP, strconv.Itoa(udpPort)))
	dnsServer(t, net.JoinHostPort(serverIP, "53"))

	for i, h := range []string{Pasta, Slirp4netns} {
		t.Run(h, func(t *testing.T) {
			testutil.NeedTool(t, h)
			testStack(t, h, 18000+100*i)
		})
	}
	t.Run("default", func(t *testing.T) {
		// The default stack is the cheap one (bench/NOTES.md).
		testutil.NeedTool(t, Slirp4netns)
		s := startSandbox(t)
		if st := attach(t, s, Options{}); st.Helper() != Slirp4netns {
			t.Errorf("Attach with no Helper attached %q, want %q", st.Helper(), Slirp4netns)
		}
	})
}

// defaultCaps is a sandbox's default capability set (podman's), as
// setpriv names them.
const defaultCaps = "+chown,+dac_override,+fowner,+fsetid,+kill,+net_bind_service,+setfcap,+setgid,+setpcap,+setuid,+sys_chroot"

// stackFacts are what a sandbox sees of each helper.
var stackFacts = map[string]struct{ addr, gateway string }{
	Pasta:       {addr: worldIP + "/24", gateway: worldGW}, // copied from the host
	Slirp4netns: {addr: "10.0.2.100/24", gateway: "10.0.2.2"},
}

func testStack(t *testing.T, helper string, ports int) {
	facts := stackFacts[helper]
	s := startSandbox(t)
	if got, _ := s.do(t, request{Op: "addrs"}); strings.Contains(got, "default@") {
		t.Fatalf("sandbox has a default route before Attach: %s", got)
	}
	hostPort, sandboxPort := ports+80, 8080
	st := attach(t, s, Options{Helper: helper, Ports: []Port{{HostPort: hostPort, Port: sandboxPort}}})
	if st.Helper() != helper {
		t.Errorf("Helper() = %q, want %q", st.Helper(), helper)
	}

	t.Run("interface", func(t *testing.T) {
		// Attach returned: the interface must be usable already.
		got, errText := s.do(t, request{Op: "addrs"})
		if errText != "" || !strings.Contains(got, "="+facts.addr) || !strings.Contains(got, "default@") {
			t.Errorf("sandbox interfaces after Attach = %q (%s), want %s and a default route", got, errText, facts.addr)
		}
	})
	t.Run("outbound-tcp", func(t *testing.T) {
		addr := net.JoinHostPort(serverIP, strconv.Itoa(tcpPort))
		got, errText := s.do(t, request{Op: "dial", Addr: addr})
		if want := "greeter@" + addr + " got hello"; got != want {
			t.Errorf("dial %s from the sandbox = %q (%s), want %q", addr, got, errText, want)
		}
	})
	t.Run("outbound-udp", func(t *testing.T) {
		addr := net.JoinHostPort(serverIP, strconv.Itoa(udpPort))
		got, errText := s.do(t, request{Op: "udp", Addr: addr})
		if got != "echo:ping" {
			t.Errorf("udp to %s from the sandbox = %q (%s), want echo:ping", addr, got, errText)
		}
	})
	t.Run("dns", func(t *testing.T) {
		rc := string(st.ResolvConf())
		ns := ""
		for line := range strings.Lines(rc) {
			if f := strings.Fields(line); len(f) == 2 && f[0] == "nameserver" {
				ns = f[1]
			}
		}
		if ns == "" || strings.HasPrefix(ns, "127.") {
			t.Fatalf("ResolvConf() = %q, want a nameserver that is not on loopback", rc)
		}
		got, errText := s.do(t, request{Op: "resolve", Addr: net.JoinHostPort(ns, "53"), Name: dnsName})
		if got != dnsAnswer {
			t.Errorf("resolve %s through %s in the sandbox = %q (%s), want %s from the host's resolver", dnsName, ns, got, errText, dnsAnswer)
		}
		_, errText = s.do(t, request{Op: "resolve", Addr: net.JoinHostPort(ns, "53"), Name: "other.lightbox.test."})
		if !strings.Contains(errText, "no such host") {
			t.Errorf("resolve an unknown name in the sandbox: error %q, want no such host (the host resolver's NXDOMAIN)", errText)
		}
	})
	t.Run("host-loopback-unreachable", func(t *testing.T) {
		lo := net.JoinHostPort("127.0.0.1", strconv.Itoa(loPort))
		// The service is there for the host...
		c, err := net.DialTimeout("tcp", lo, 3*time.Second)
		if err != nil {
			t.Fatalf("the host's own loopback service %s: %v", lo, err)
		}
		c.Close()
		// ...but not through the gateway (both helpers map it to the
		// host's loopback by default) nor through forwarded loopback
		// ports (pasta's default).
		for _, addr := range []string{net.JoinHostPort(facts.gateway, strconv.Itoa(loPort)), lo} {
			got, errText := s.do(t, request{Op: "dial", Addr: addr})
			if errText == "" {
				t.Errorf("dial %s from the sandbox reached %q; the host's loopback must be out of reach", addr, got)
			}
			t.Logf("dial %s from the sandbox: %s", addr, errText)
		}
	})
	t.Run("published-port", func(t *testing.T) {
		if _, errText := s.do(t, request{Op: "listen", Addr: ":" + strconv.Itoa(sandboxPort)}); errText != "" {
			t.Fatalf("listen in the sandbox: %s", errText)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(hostPort))
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			t.Fatalf("dial the published port %s: %v", addr, err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "from host\n")
		line, err := bufio.NewReader(c).ReadString('\n')
		if want := "sandbox got from host\n"; line != want {
			t.Errorf("published port %s answered %q (%v), want %q", addr, line, err, want)
		}
		// Published on loopback only.
		other := net.JoinHostPort(serverIP, strconv.Itoa(hostPort))
		if c, err := net.DialTimeout("tcp", other, 3*time.Second); err == nil {
			c.Close()
			t.Errorf("dial %s succeeded: a port without a host address must be published on 127.0.0.1 only", other)
		}
	})
	t.Run("published-port-on-address", func(t *testing.T) {
		// The first connection to a sandbox that has sent nothing yet
		// must get through: it comes over the tap (not spliced on
		// loopback), so the stack must know the interface's MAC address
		// before it hears from the sandbox.
		s2 := startSandbox(t)
		if _, errText := s2.do(t, request{Op: "silence"}); errText != "" {
			t.Fatalf("turn IPv6 off in the sandbox: %s", errText)
		}
		attach(t, s2, Options{Helper: helper, Ports: []Port{{HostIP: serverIP, HostPort: ports + 81, Port: 80}, {HostPort: ports + 82, Port: 53, Proto: "udp"}}})
		if _, errText := s2.do(t, request{Op: "listen", Addr: ":80"}); errText != "" {
			t.Fatalf("listen in the sandbox: %s", errText)
		}
		addr := net.JoinHostPort(serverIP, strconv.Itoa(ports+81))
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			t.Fatalf("dial the published port %s: %v", addr, err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "x\n")
		if line, err := bufio.NewReader(c).ReadString('\n'); line != "sandbox got x\n" {
			t.Errorf("published port %s answered %q (%v)", addr, line, err)
		}
		// A port taken on the host is refused before pasta starts.
		s3 := startSandbox(t)
		_, err = Attach(t.Context(), s3.pid(), Options{Helper: helper, Ports: []Port{{HostIP: serverIP, HostPort: tcpPort, Port: 80}}})
		if err == nil || !strings.Contains(err.Error(), "already in use") {
			t.Errorf("Attach publishing a port in use: %v, want an error saying it is in use", err)
		}
	})
	if helper == Pasta {
		t.Run("workload-cannot-trace-helper", func(t *testing.T) {
			// pasta is in the sandbox's user namespace, with sockets in the
			// host's network namespace, and makes itself not dumpable. Were
			// the workload to name it, with the sandbox's default
			// capabilities it must still not get at its memory.
			// (slirp4netns is dumpable: its wall is the pid namespace
			// and the empty root it pivots into, helper-out-of-reach.)
			testutil.NeedTool(t, "setpriv")
			environ := fmt.Sprintf("/proc/%d/environ", st.Pids()[0])
			if _, errText := s.do(t, request{Op: "run", Args: []string{"cat", environ}}); errText != "" {
				t.Fatalf("with every capability, the sandbox's root cannot read %s either (%s): the check below proves nothing", environ, errText)
			}
			out, errText := s.do(t, request{Op: "run", Args: []string{"setpriv", "--bounding-set=-all," + defaultCaps, "--", "cat", environ}})
			if errText == "" || !strings.Contains(out, "Permission denied") {
				t.Errorf("a workload with the default capabilities read the helper's %s (%d bytes, error %q); it must not be able to trace it", environ, len(out), errText)
			}
		})
	}
	{
		t.Run("helper-out-of-reach", func(t *testing.T) {
			// What the workload sees: a /proc of the sandbox's pid
			// namespace, as the sandbox mounts it.
			testutil.NeedTool(t, "unshare")
			out, errText := s.do(t, request{Op: "run", Args: []string{"unshare", "--mount", "--mount-proc", "sh", "-c",
				`for d in /proc/[0-9]*; do echo "${d#/proc/} $(cat $d/comm)"; done`}})
			if errText != "" {
				t.Fatalf("list the sandbox's processes: %s: %s", errText, out)
			}
			t.Logf("processes in the sandbox:\n%s", out)
			if !strings.Contains(out, "\n1 ") && !strings.HasPrefix(out, "1 ") {
				t.Fatalf("the sandbox's /proc lists no pid 1: the listing proves nothing")
			}
			for line := range strings.Lines(out) {
				f := strings.Fields(line)
				if len(f) == 2 && f[0] != "1" && !slices.Contains([]string{"sh", "unshare", "cat"}, f[1]) {
					t.Errorf("the workload sees %q (pid %s in the sandbox): the network helper and its keeper must be outside its pid namespace", f[1], f[0])
				}
			}
			// On the host: no process of the stack runs as root.
			pids := st.Pids()
			if len(pids) < 1 || !isHelper(pids[0], helper) {
				t.Fatalf("Pids() = %v, want %s first", pids, helper)
			}
			for _, p := range pids {
				uids, err := procIDs(p, "Uid")
				if err != nil {
					t.Fatal(err)
				}
				// The ids as the host sees them (the rootless pass's
				// world is a user namespace of its own).
				for i, u := range uids {
					uids[i] = parentID("uid_map", u)
				}
				if slices.Contains(uids, 0) {
					t.Errorf("helper process %d runs with uid 0 on the host (Uid: %v); it must be an unprivileged id", p, uids)
				}
				t.Logf("helper process %d: host Uid %v", p, uids)
			}
			// And the network works through it.
			addr := net.JoinHostPort(serverIP, strconv.Itoa(tcpPort))
			if got, errText := s.do(t, request{Op: "dial", Addr: addr}); got != "greeter@"+addr+" got hello" {
				t.Errorf("dial %s from the sandbox = %q (%s)", addr, got, errText)
			}
		})
	}
	t.Run("helper-dies-with-sandbox", func(t *testing.T) {
		pids := st.Pids()
		if len(pids) == 0 || !isHelper(pids[0], helper) {
			t.Fatalf("Pids() = %v, want the %s process first", pids, helper)
		}
		if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// As its parent (the runtime, or the host's init once the
		// launcher is gone) does; slirp4netns goes when the init is
		// reaped.
		s.cmd.Wait()
		for _, p := range pids {
			if !waitExit(p, 10*time.Second) {
				t.Errorf("helper %d still runs 10s after the sandbox's init was killed", p)
			}
		}
	})
	t.Run("helper-killed-from-host", func(t *testing.T) {
		// Killing the stack from the host cuts the sandbox's network
		// and nothing else.
		s := startSandbox(t)
		st := attach(t, s, Options{Helper: helper})
		pids := st.Pids()
		for _, p := range pids {
			if err := syscall.Kill(p, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				t.Fatalf("kill helper %d: %v", p, err)
			}
		}
		for _, p := range pids {
			if !waitExit(p, 5*time.Second) {
				t.Errorf("helper %d still runs 5s after SIGKILL", p)
			}
		}
		if got, errText := s.do(t, request{Op: "addrs"}); errText != "" || got == "" {
			t.Errorf("the sandbox after its network helper was killed: addrs = %q (%s), want an answer", got, errText)
		}
		if err := st.Close(); err != nil {
			t.Errorf("Close after the helper was killed: %v", err)
		}
	})
	t.Run("close", func(t *testing.T) {
		s := startSandbox(t)
		st := attach(t, s, Options{Helper: helper})
		pids := st.Pids()
		if err := st.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		for _, p := range pids {
			if !waitExit(p, 5*time.Second) {
				t.Errorf("helper %d still runs after Close", p)
			}
		}
		if err := st.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

// launcherMain starts an idle sandbox, attaches the stack named by
// $_NETSTACK_TEST_HELPER to it, prints "SANDBOX_PID PID..." (the helper's
// pids) and waits to be killed.
func launcherMain() int {
	cmd := ownSandboxCmd("idle")
	cmd.SysProcAttr.Pdeathsig = 0 // the sandbox outlives its launcher
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	st, err := Attach(context.Background(), cmd.Process.Pid, Options{Helper: os.Getenv("_NETSTACK_TEST_HELPER")})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		cmd.Process.Kill()
		return 1
	}
	fmt.Println(cmd.Process.Pid, strings.Trim(fmt.Sprint(st.Pids()), "[]"))
	for {
		time.Sleep(time.Hour)
	}
}

// TestHelperOutlivesKilledLauncher: the launching process is killed with
// SIGKILL; the helper stays as long as the sandbox does, and goes with it.
func TestHelperOutlivesKilledLauncher(t *testing.T) {
	if !inWorld() {
		runInWorld(t)
		return
	}
	for _, h := range []string{Pasta, Slirp4netns} {
		t.Run(h, func(t *testing.T) {
			testutil.NeedTool(t, h)
			cmd := exec.Command("/proc/self/exe")
			cmd.Env = append(os.Environ(), envRole+"=launcher", "_NETSTACK_TEST_HELPER="+h)
			cmd.Stderr = os.Stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Wait()
			defer cmd.Process.Kill()
			out.(*os.File).SetReadDeadline(time.Now().Add(20 * time.Second))
			line, err := bufio.NewReader(out).ReadString('\n')
			var pids []int
			for _, f := range strings.Fields(line) {
				n, err := strconv.Atoi(f)
				if err != nil {
					t.Fatalf("launcher said %q", line)
				}
				pids = append(pids, n)
			}
			if err != nil || len(pids) < 2 {
				t.Fatalf("launcher said %q: %v", line, err)
			}
			sbPid, helpers := pids[0], pids[1:]
			defer syscall.Kill(sbPid, syscall.SIGKILL)
			cmd.Process.Kill()
			cmd.Wait()
			if !isHelper(helpers[0], h) {
				t.Fatalf("pid %d is not %s", helpers[0], h)
			}
			for _, p := range helpers {
				if waitExit(p, 500*time.Millisecond) {
					t.Fatalf("helper %d exited with its launcher; it must live as long as the sandbox", p)
				}
			}
			if err := syscall.Kill(sbPid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			for _, p := range helpers {
				if !waitExit(p, 10*time.Second) {
					t.Errorf("helper %d still runs 10s after the sandbox's init was killed (launcher already dead)", p)
				}
			}
		})
	}
}

// TestUnavailableWithoutPasta: no pasta in PATH is an error naming the
// cause and the fix, from Check and from Attach.
func TestUnavailableWithoutPasta(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	err := Check()
	checkUnavailable(t, "Check", err, "neither pasta nor slirp4netns", "apt-get install passt")
	_, err = Attach(t.Context(), os.Getpid(), Options{})
	checkUnavailable(t, "Attach", err, "neither pasta nor slirp4netns", "apt-get install passt")
	_, err = Attach(t.Context(), os.Getpid(), Options{Helper: Pasta})
	checkUnavailable(t, "Attach", err, "pasta not found in PATH", "apt-get install passt")
	t.Log(err)
}

// TestAttachRefusesOwnUserns: a process in our own user namespace is no
// sandbox; the helper would run as our root.
func TestAttachRefusesOwnUserns(t *testing.T) {
	testutil.NeedTool(t, "pasta")
	testutil.NeedTool(t, "nsenter")
	_, err := Attach(t.Context(), os.Getpid(), Options{})
	if err == nil || !strings.Contains(err.Error(), "shares this process's user namespace") {
		t.Errorf("Attach(own pid) = %v, want an error saying a sandbox needs its own user namespace", err)
	}
}

func checkUnavailable(t *testing.T, what string, err error, cause, fix string) {
	t.Helper()
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("%s: %v, want ErrUnavailable (and errors.ErrUnsupported)", what, err)
	}
	for _, want := range []string{cause, fix, "--network none"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %q, want it to say %q", what, err, want)
		}
	}
}

// TestTunVerdict: who may open the tun device, by its mode and owners.
func TestTunVerdict(t *testing.T) {
	testutil.NeedTool(t, "pasta")
	testutil.NeedTool(t, "nsenter")
	dev := tun0600(t)
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		t.Fatal(err)
	}
	other := int(st.Uid) + 4242
	for _, tc := range []struct {
		uid, gid int
		groups   []int
		ok       bool
	}{
		{uid: int(st.Uid), gid: other, ok: true},
		{uid: other, gid: other, ok: false},
		{uid: other, gid: int(st.Gid), ok: false}, // 0600: nothing for the group
		{uid: other, gid: other, groups: []int{int(st.Gid)}, ok: false},
	} {
		err := checkTun(dev, tc.uid, tc.gid, tc.groups, false)
		if (err == nil) != tc.ok {
			t.Errorf("checkTun(%s mode 0600 owner %d, uid %d gid %d groups %v) = %v, want ok=%v", dev, st.Uid, tc.uid, tc.gid, tc.groups, err, tc.ok)
		}
		if err != nil {
			checkUnavailable(t, "checkTun", err, "mode 0600", "chmod 0666 /dev/net/tun")
		}
	}
	if err := checkTun(filepath.Join(t.TempDir(), "tun"), 0, 0, nil, false); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "modprobe tun") {
		t.Errorf("checkTun(missing device) = %v, want ErrUnavailable saying modprobe tun", err)
	}
}

// tun0600 returns a character device of mode 0600 owned by someone else
// than the unprivileged user: a tun node made for the test as root, an
// existing root-only device otherwise.
func tun0600(t *testing.T) string {
	t.Helper()
	if os.Geteuid() == 0 {
		p := filepath.Join(t.TempDir(), "tun")
		if err := unix.Mknod(p, unix.S_IFCHR|0o600, int(unix.Mkdev(10, 200))); err != nil {
			t.Fatalf("mknod %s: %v", p, err)
		}
		if err := os.Chmod(p, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, p := range []string{"/dev/cpu_dma_latency", "/dev/btrfs-control", "/dev/userfaultfd", "/dev/vga_arbiter", "/dev/uinput"} {
		var st unix.Stat_t
		if unix.Stat(p, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Mode&0o777 == 0o600 && int(st.Uid) != os.Geteuid() {
			return p
		}
	}
	testutil.Need(t, false, "needs a character device of mode 0600 owned by root")
	return ""
}

// TestAttachTun0600: a sandbox whose root is an unprivileged user, against
// a tun device of mode 0600 (as this kind of machine ships it): Attach
// fails naming the device and the chmod, and starts nothing.
func TestAttachTun0600(t *testing.T) {
	testutil.NeedTool(t, "pasta")
	testutil.NeedTool(t, "nsenter")
	dev := tun0600(t)
	defer func(p string) { tunPath = p }(tunPath)
	tunPath = dev
	uid, gid := os.Geteuid(), os.Getegid()
	if uid == 0 {
		uid, gid = 4242, 4242 // root maps the sandbox's root to an ordinary user
	}
	cmd := sandboxCmd("idle", uid, gid)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sandbox: %v", err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	_, err := Attach(t.Context(), cmd.Process.Pid, Options{})
	checkUnavailable(t, "Attach", err, dev+" is mode 0600", "chmod 0666 /dev/net/tun")
	t.Log(err)
	if os.Geteuid() != 0 {
		checkUnavailable(t, "Check", Check(), dev+" is mode 0600", "chmod 0666 /dev/net/tun")
	}
}

// TestDNSWithLoopbackResolver: when the host's resolv.conf names a
// resolver on its loopback (systemd-resolved's 127.0.0.53), the sandbox
// still resolves through the forwarder, and its resolv.conf does not name
// the loopback address.
func TestDNSWithLoopbackResolver(t *testing.T) {
	if !inWorld() {
		runInWorld(t)
		return
	}
	f, err := os.CreateTemp("", "netstack-resolv-*")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	f.WriteString("nameserver 127.0.0.53\n")
	f.Close()
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Unmount("/etc/resolv.conf", 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(f.Name(), "/etc/resolv.conf", "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	dnsServer(t, "127.0.0.53:53")
	for _, h := range []string{Pasta, Slirp4netns} {
		t.Run(h, func(t *testing.T) {
			testutil.NeedTool(t, h)
			s := startSandbox(t)
			st := attach(t, s, Options{Helper: h})
			rc := string(st.ResolvConf())
			if strings.Contains(rc, "127.") {
				t.Errorf("ResolvConf() = %q names a loopback resolver", rc)
			}
			ns := strings.Fields(rc[strings.Index(rc, "nameserver"):])[1]
			got, errText := s.do(t, request{Op: "resolve", Addr: net.JoinHostPort(ns, "53"), Name: dnsName})
			if got != dnsAnswer {
				t.Errorf("resolve %s in the sandbox through %s with the host's resolver on 127.0.0.53 = %q (%s), want %s", dnsName, ns, got, errText, dnsAnswer)
			}
		})
	}
}

// TestAttachSubordinateRoot: real root launching a sandbox whose root is
// a subordinate id (not root on the host) still gets a configured
// interface; the helper runs as that id.
func TestAttachSubordinateRoot(t *testing.T) {
	testutil.RootOnly(t)
	testutil.NeedTool(t, "ip")
	for _, h := range []string{Pasta, Slirp4netns} {
		t.Run(h, func(t *testing.T) {
			testutil.NeedTool(t, h)
			const sub = 100000
			cmd := sandboxCmd("idle", sub, sub)
			cmd.SysProcAttr.UidMappings[0].Size = 65536
			cmd.SysProcAttr.GidMappings[0].Size = 65536
			cmd.SysProcAttr.GidMappingsEnableSetgroups = true
			if err := cmd.Start(); err != nil {
				t.Fatalf("start sandbox: %v", err)
			}
			defer cmd.Wait()
			defer cmd.Process.Kill()
			st, err := Attach(t.Context(), cmd.Process.Pid, Options{Helper: h})
			if err != nil {
				t.Fatalf("Attach: %v", err)
			}
			defer st.Close()
			out, err := exec.Command("nsenter", "--target", strconv.Itoa(cmd.Process.Pid), "--user", "--net", "--preserve-credentials", "ip", "route", "show", "default").CombinedOutput()
			if err != nil || !strings.HasPrefix(string(out), "default via ") {
				t.Errorf("default route in the sandbox = %q (%v), want one", out, err)
			}
			var stat syscall.Stat_t
			if err := syscall.Stat(fmt.Sprintf("/proc/%d", st.Pids()[0]), &stat); err != nil || stat.Uid != sub {
				t.Errorf("helper %d runs as uid %d (%v), want %d (the sandbox's root)", st.Pids()[0], stat.Uid, err, sub)
			}
		})
	}
}

// bindResolvConf puts content in place of the world's /etc/resolv.conf
// (the host's, for the helpers), for the rest of the world's one test.
func bindResolvConf(t *testing.T, content string) {
	t.Helper()
	// The world's own is a bind of a file removed since: nothing can be
	// mounted on it.
	if err := unix.Unmount("/etc/resolv.conf", 0); err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp("", "netstack-resolv-*")
	if err != nil {
		t.Fatal(err)
	}
	// Kept until the test ends: a sandbox binds its own over it.
	t.Cleanup(func() { os.Remove(f.Name()) })
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(f.Name(), "/etc/resolv.conf", "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
}

// TestDNSSearchDomains: a short name the host resolves through its
// resolv.conf's search domain resolves in the sandbox too (glibc's
// getent, with the sandbox's resolv.conf), and the host's options
// (ndots, timeout) come along; the nameserver is still the stack's.
func TestDNSSearchDomains(t *testing.T) {
	if !inWorld() {
		runInWorld(t)
		return
	}
	testutil.NeedTool(t, "getent")
	testutil.NeedTool(t, "unshare")
	dnsServer(t, net.JoinHostPort(serverIP, "53"))
	bindResolvConf(t, "# the host's\nnameserver "+serverIP+"\ndomain example.invalid\nsearch other.invalid lightbox.test\noptions ndots:1 timeout:2\n")
	short := strings.TrimSuffix(strings.TrimSuffix(dnsName, "."), ".lightbox.test")
	for _, h := range []string{Pasta, Slirp4netns} {
		t.Run(h, func(t *testing.T) {
			testutil.NeedTool(t, h)
			s := startSandbox(t)
			st := attach(t, s, Options{Helper: h})
			rc := string(st.ResolvConf())
			for _, want := range []string{"\nsearch other.invalid lightbox.test\n", "\noptions ndots:1 timeout:2\n"} {
				if !strings.Contains(rc, want) {
					t.Errorf("ResolvConf() = %q, want it to carry the host's %q", rc, strings.TrimSpace(want))
				}
			}
			if strings.Contains(rc, serverIP) || strings.Contains(rc, "example.invalid") {
				t.Errorf("ResolvConf() = %q names the host's nameserver or its overridden domain", rc)
			}
			f := filepath.Join(t.TempDir(), "resolv.conf")
			if err := os.WriteFile(f, st.ResolvConf(), 0o644); err != nil {
				t.Fatal(err)
			}
			out, errText := s.do(t, request{Op: "run", Args: []string{"unshare", "--mount", "sh", "-c",
				"mount --bind " + f + " /etc/resolv.conf && exec getent ahostsv4 " + short}})
			if errText != "" || !strings.HasPrefix(out, dnsAnswer+" ") {
				t.Errorf("getent ahostsv4 %s in the sandbox = %q (%s), want %s through the host's search domain", short, out, errText, dnsAnswer)
			}
		})
	}
}

// countingListeners listens on each TCP and UDP address and counts what
// reaches them: a connection accepted, a datagram received.
func countingListeners(t *testing.T, tcp, udp []string) *atomic.Int32 {
	t.Helper()
	var n atomic.Int32
	for _, addr := range tcp {
		serveTCP(t, addr, func(c net.Conn) {
			n.Add(1)
			c.Close()
		})
	}
	for _, addr := range udp {
		serveUDP(t, addr, func(q []byte) []byte {
			n.Add(1)
			return q
		})
	}
	return &n
}

// TestAttackHostLoopback: from a sandbox, every way to the host's
// loopback services through the stack fails and none of them hears a
// thing: the gateway (IPv4 and IPv6), the DNS forwarder used as a proxy
// to another port (with the host's resolver on 127.0.0.1, the worst
// case: the forwarder relays to loopback), and another sandbox's port
// published on the host's 127.0.0.1. Outbound traffic and DNS through
// the forwarder work meanwhile (the walls are not just a dead network).
func TestAttackHostLoopback(t *testing.T) {
	if !inWorld() {
		runInWorld(t)
		return
	}
	// An IPv6 address and default route for pasta to copy (the gateway
	// is not local: IPv6 refuses that).
	const gw6, ip6 = "fd99::1", "fd99::2"
	for _, args := range [][]string{
		{"-6", "addr", "add", ip6 + "/64", "dev", "lb0", "nodad"},
		{"-6", "route", "add", "default", "via", gw6, "dev", "lb0"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	bindResolvConf(t, "nameserver 127.0.0.1\n")
	dnsServer(t, "127.0.0.1:53")
	greeter(t, net.JoinHostPort(serverIP, strconv.Itoa(tcpPort)))
	const port = 7010 // the host's loopback services, TCP and UDP
	heard := countingListeners(t,
		[]string{"127.0.0.1:7010", "[::1]:7010"},
		[]string{"127.0.0.1:7010", "[::1]:7010"})
	for i, h := range []string{Pasta, Slirp4netns} {
		t.Run(h, func(t *testing.T) {
			testutil.NeedTool(t, h)
			// Another sandbox, its port published on the host's loopback.
			other := startSandbox(t)
			published := 18500 + i
			attach(t, other, Options{Helper: h, Ports: []Port{{HostPort: published, Port: 80}}})
			if _, errText := other.do(t, request{Op: "listen", Addr: ":80"}); errText != "" {
				t.Fatalf("listen in the other sandbox: %s", errText)
			}
			lo := net.JoinHostPort("127.0.0.1", strconv.Itoa(published))
			if got, err := dialGreeting(lo); err != nil || got != "sandbox got hello" {
				t.Fatalf("the other sandbox's published port from the host: %q %v: the walls below prove nothing", got, err)
			}

			s := startSandbox(t)
			st := attach(t, s, Options{Helper: h})
			gw, fwd := stackFacts[h].gateway, strings.Fields(string(st.ResolvConf())[strings.Index(string(st.ResolvConf()), "nameserver"):])[1]
			// Not a dead network: outbound TCP and DNS through the forwarder work.
			addr := net.JoinHostPort(serverIP, strconv.Itoa(tcpPort))
			if got, errText := s.do(t, request{Op: "dial", Addr: addr}); got != "greeter@"+addr+" got hello" {
				t.Fatalf("dial %s from the sandbox = %q (%s): the walls below prove nothing", addr, got, errText)
			}
			if got, errText := s.do(t, request{Op: "resolve", Addr: net.JoinHostPort(fwd, "53"), Name: dnsName}); got != dnsAnswer {
				t.Fatalf("resolve through %s = %q (%s): the walls below prove nothing", fwd, got, errText)
			}
			before := heard.Load()
			probes := []request{
				{Op: "dial", Addr: net.JoinHostPort(gw, strconv.Itoa(port))},
				{Op: "dial", Addr: net.JoinHostPort(fwd, strconv.Itoa(port))},
				{Op: "dial", Addr: net.JoinHostPort(gw6, strconv.Itoa(port))},
				{Op: "dial", Addr: net.JoinHostPort(gw, strconv.Itoa(published))},
				{Op: "dial", Addr: net.JoinHostPort(fwd, strconv.Itoa(published))},
				{Op: "dial", Addr: net.JoinHostPort(gw6, strconv.Itoa(published))},
				{Op: "dial", Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(published))},
				{Op: "udp", Addr: net.JoinHostPort(gw, strconv.Itoa(port))},
				{Op: "udp", Addr: net.JoinHostPort(fwd, strconv.Itoa(port))},
				{Op: "udp", Addr: net.JoinHostPort(gw6, strconv.Itoa(port))},
			}
			for i, r := range s.doAll(t, probes) {
				a := probes[i]
				if r.Err == "" {
					t.Errorf("%s %s from the sandbox reached %q: the host's loopback must be out of reach", a.Op, a.Addr, r.Data)
				}
				t.Logf("%s %s: %s", a.Op, a.Addr, r.Err)
			}
			if n := heard.Load() - before; n != 0 {
				t.Errorf("the host's loopback services heard %d connections or datagrams from the sandbox", n)
			}
		})
	}
}

// dialGreeting sends "hello" to a TCP greeter at addr and returns its
// answer.
func dialGreeting(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "hello\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// TestDNSOverTCP: an answer too big for UDP (the resolver's UDP answer
// is truncated) is asked for again over TCP, through slirp4netns's
// forwarder, and arrives. Debian 12's pasta forwards UDP only (its man
// page: "Mapping is limited to UDP traffic directed to port 53"), as the
// README says; its result is logged.
func TestDNSOverTCP(t *testing.T) {
	if !inWorld() {
		runInWorld(t)
		return
	}
	// UDP: truncated, no answer.
	serveUDP(t, net.JoinHostPort(serverIP, "53"), func(q []byte) []byte {
		resp := dnsAnswerFor(q)
		if resp == nil {
			return nil
		}
		resp = resp[:12+len(q[12:])]
		resp[2] |= 0x02 // TC
		binary.BigEndian.PutUint16(resp[6:], 0)
		return resp
	})
	// TCP: the answer, after its two-byte length.
	serveTCP(t, net.JoinHostPort(serverIP, "53"), func(conn net.Conn) {
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		var n uint16
		if binary.Read(conn, binary.BigEndian, &n) != nil {
			return
		}
		q := make([]byte, n)
		if _, err := io.ReadFull(conn, q); err != nil {
			return
		}
		if resp := dnsAnswerFor(q); resp != nil {
			conn.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(resp))), resp...))
		}
	})
	for _, h := range []string{Slirp4netns, Pasta} {
		t.Run(h, func(t *testing.T) {
			testutil.NeedTool(t, h)
			s := startSandbox(t)
			st := attach(t, s, Options{Helper: h})
			rc := string(st.ResolvConf())
			ns := strings.Fields(rc[strings.Index(rc, "nameserver"):])[1]
			got, errText := s.do(t, request{Op: "resolve", Addr: net.JoinHostPort(ns, "53"), Name: dnsName})
			if h == Pasta {
				t.Logf("resolve %s through %s, the answer over TCP only: %q (%s)", dnsName, ns, got, errText)
				return
			}
			if got != dnsAnswer {
				t.Errorf("resolve %s through %s, the answer over TCP only: %q (%s), want %s", dnsName, ns, got, errText, dnsAnswer)
			}
		})
	}
}

// TestHelperManyConnections: a sandbox holds many TCP connections open at
// once through its stack, more than the soft RLIMIT_NOFILE of the process
// that attached it (1024 for a user's session: each connection is a
// socket of the helper's): the helper gets its hard limit.
func TestHelperManyConnections(t *testing.T) {
	if !inWorld() {
		runInWorld(t)
		return
	}
	const soft, conns = 128, 400
	// hold listens on addr and holds each connection open until the test
	// ends.
	hold := func(t *testing.T, addr string) {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		t.Cleanup(func() { l.Close(); <-done })
		go func() {
			defer close(done)
			var held []net.Conn
			defer func() {
				for _, c := range held {
					c.Close()
				}
			}()
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				held = append(held, c)
			}
		}()
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Max < 4*conns {
		t.Fatalf("hard RLIMIT_NOFILE %d: too low for the test", lim.Max)
	}
	for _, h := range []string{Slirp4netns, Pasta} {
		t.Run(h, func(t *testing.T) {
			testutil.NeedTool(t, h)
			addr := net.JoinHostPort(serverIP, "7020")
			hold(t, addr)
			s := startSandbox(t)
			// The helper starts with the soft limit of a user's session
			// (scaled down), as the CLI's children do.
			low := syscall.Rlimit{Cur: soft, Max: lim.Max}
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
				t.Fatal(err)
			}
			attach(t, s, Options{Helper: h})
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
				t.Fatal(err)
			}
			got, errText := s.do(t, request{Op: "conns", Addr: addr, Args: []string{strconv.Itoa(conns)}})
			if got != strconv.Itoa(conns) {
				t.Errorf("the sandbox held %s TCP connections open through %s (%s), want %d: more than the launcher's soft RLIMIT_NOFILE of %d", got, h, errText, conns, soft)
			}
		})
	}
}
