package nsinit

import (
	"errors"
	"fmt"
	"io"
	"net"
	"slices"

	"golang.org/x/sys/unix"
)

// The descriptor-passing half of the codec: SCM_RIGHTS on unix sockets,
// for the exec socket's messages (WriteMsg, ReadMsg) and the host side's
// descriptors (SendFDs, ReceiveFDs). Descriptors received are
// close-on-exec: the kernel makes them so as it installs them
// (MSG_CMSG_CLOEXEC, which ReceiveFDs passes and net's ReadMsgUnix
// passes on Linux), not an fcntl per descriptor after.

// MaxMsgFDs bounds the descriptors of a reply on the exec socket (three
// stdio fds, or a pty). A request may carry up to MaxFDsPerMessage (a
// take's mounts and leases).
const MaxMsgFDs = 4

// MaxInline bounds a message sent in its packet. A larger one travels in
// a sealed memfd passed with a one-byte packet (msgInMemfd): a
// SOCK_SEQPACKET message must fit the sender's socket buffer (~208 kB by
// default, and a rootless process cannot raise it past wmem_max), while
// a command's arguments and environment may take up to what execve
// accepts, 2 MB under the usual 8 MB stack limit.
const MaxInline = 64 << 10

// MaxRequest bounds a message of either kind, so that a reader never
// allocates more (arguments and environment of the largest execve any
// stack limit allows, 6 MB, with their encoding's overhead).
const MaxRequest = 8 << 20

// msgInMemfd is the payload of a packet whose message is in the last
// descriptor it carries. No encoded message is one byte long.
const msgInMemfd = "\x00"

// WriteMsg sends m, with fds, as one packet on c; a message larger than
// MaxInline goes in a memfd sent with them. A message larger than
// MaxRequest is refused before anything is sent.
func WriteMsg(c *net.UnixConn, m Message, fds []int) error {
	b, err := Marshal(m)
	if err != nil {
		return err
	}
	if len(b) > MaxRequest {
		return fmt.Errorf("%s of %d bytes: arguments and environment exceed %d bytes", m.kind(), len(b), MaxRequest)
	}
	if len(b) > MaxInline {
		mfd, err := sealedMemfd(b)
		if err != nil {
			return fmt.Errorf("%s of %d bytes: %w", m.kind(), len(b), err)
		}
		defer func() { _ = unix.Close(mfd) }() // sent, or the send failed: the peer holds its own
		b, fds = []byte(msgInMemfd), append(slices.Clip(fds), mfd)
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	_, _, err = c.WriteMsgUnix(b, oob, nil)
	return err
}

// sealedMemfd returns a memfd holding b that nobody can change any more.
func sealedMemfd(b []byte) (int, error) {
	fd, err := unix.MemfdCreate("lightbox-message", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return -1, fmt.Errorf("memfd_create: %w", err)
	}
	if err := writeAll(fd, b); err != nil {
		_ = unix.Close(fd) // ours, unsent
		return -1, fmt.Errorf("write memfd: %w", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, memfdSeals); err != nil {
		_ = unix.Close(fd) // ours, unsent
		return -1, fmt.Errorf("seal memfd: %w", err)
	}
	return fd, nil
}

const memfdSeals = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE

// readMemfd returns the message a peer sent in the memfd fd: sealed, so
// that it cannot change while it is read, and at most MaxRequest bytes.
func readMemfd(fd int) ([]byte, error) {
	seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	if err != nil {
		return nil, fmt.Errorf("message in a memfd: %w", err)
	}
	if seals&memfdSeals != memfdSeals {
		return nil, fmt.Errorf("message in a memfd: not sealed (seals %#x)", seals)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("message in a memfd: %w", err)
	}
	if st.Size > MaxRequest {
		return nil, fmt.Errorf("message in a memfd of %d bytes: more than %d", st.Size, MaxRequest)
	}
	b := make([]byte, st.Size)
	if err := readFullAt(fd, b); err != nil {
		return nil, fmt.Errorf("message in a memfd: %w", err)
	}
	return b, nil
}

// readFullAt fills b from fd's start (a memfd's: a message, a handover's
// state).
func readFullAt(fd int, b []byte) error {
	for off := 0; off < len(b); {
		n, err := unix.Pread(fd, b[off:], int64(off))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrUnexpectedEOF
		}
		off += n
	}
	return nil
}

// ReadMsg reads one packet from c into m, using buf for a message sent
// in it (a larger one comes in a memfd, WriteMsg), and returns the
// descriptors it carried, at most maxFDs (the caller owns them, also when
// the error is not nil). A packet that carried more is an error: the
// kernel closes what does not fit, and a message read without some of its
// descriptors would name ones that are not there. io.EOF: the peer closed
// the connection.
func ReadMsg(c *net.UnixConn, buf []byte, maxFDs int, m Message) ([]int, error) {
	oob := make([]byte, unix.CmsgSpace(4*(maxFDs+1))) // and a memfd
	n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
	if n == 0 && oobn == 0 && (err == nil || errors.Is(err, io.EOF)) {
		// An EOF can stand in for the peer's last message: a
		// SOCK_SEQPACKET read that found the queue empty checks for the
		// peer's shutdown next (unix_dgram_recvmsg), and a message sent
		// just before a close can land in between, queued behind the
		// EOF. The sender queued it before it shut down, so once the
		// EOF is seen a second read finds it, or says EOF again, at once
		// (a shut-down socket never waits). Seen as an Exec whose exit
		// status was lost ("the sandbox ended before the command did")
		// about once in 60 000 (bench/NOTES.md).
		n, oobn, flags, _, err = c.ReadMsgUnix(buf, oob)
	}
	if err != nil {
		return nil, err
	}
	fds, ferr := parseRights(oob[:oobn])
	if ferr != nil {
		return fds, ferr
	}
	if flags&unix.MSG_CTRUNC != 0 {
		return fds, fmt.Errorf("%s with more than %d descriptors", m.kind(), maxFDs)
	}
	if flags&unix.MSG_TRUNC != 0 {
		return fds, fmt.Errorf("%s larger than %d bytes", m.kind(), len(buf))
	}
	if n == 0 {
		return fds, io.EOF
	}
	body := buf[:n]
	if string(body) == msgInMemfd {
		if len(fds) == 0 {
			return nil, fmt.Errorf("%s in a memfd: no descriptor", m.kind())
		}
		mfd := fds[len(fds)-1]
		fds = fds[:len(fds)-1]
		body, err = readMemfd(mfd)
		_ = unix.Close(mfd) // read, or unreadable: ours either way
		if err != nil {
			return fds, err
		}
	}
	if len(fds) > maxFDs {
		return fds, fmt.Errorf("%s with more than %d descriptors", m.kind(), maxFDs)
	}
	return fds, Unmarshal(body, m)
}

// parseRights returns the descriptors of SCM_RIGHTS control messages.
func parseRights(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("control message: %w", err)
	}
	var fds []int
	for _, m := range msgs {
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue // not SCM_RIGHTS: nothing of ours to close
		}
		fds = append(fds, got...)
	}
	return fds, nil
}

// SendFDs sends fds on the socket sock, in order, at most
// MaxFDsPerMessage a message with a one-byte payload.
func SendFDs(sock int, fds []int) error {
	for i := 0; i < len(fds); i += MaxFDsPerMessage {
		batch := fds[i:min(i+MaxFDsPerMessage, len(fds))]
		err := error(unix.EINTR)
		for errors.Is(err, unix.EINTR) {
			err = unix.Sendmsg(sock, []byte{0}, unix.UnixRights(batch...), nil, 0)
		}
		if err != nil {
			return fmt.Errorf("send descriptors: %w", err)
		}
	}
	return nil
}

// ReceiveFDs reads n descriptors that SendFDs sent on sock.
func ReceiveFDs(sock, n int) ([]int, error) {
	var out []int
	oob := make([]byte, unix.CmsgSpace(4*MaxFDsPerMessage))
	buf := make([]byte, 1)
	for len(out) < n {
		var (
			got, oobn, flags int
			err              error
		)
		for {
			got, oobn, flags, _, err = unix.Recvmsg(sock, buf, oob, unix.MSG_CMSG_CLOEXEC)
			if !errors.Is(err, unix.EINTR) {
				break
			}
		}
		if err != nil {
			return out, fmt.Errorf("receive descriptors: %w", err)
		}
		if flags&unix.MSG_CTRUNC != 0 {
			fds, _ := parseRights(oob[:oobn])
			return append(out, fds...), fmt.Errorf("receive descriptors: more than %d in one message", MaxFDsPerMessage)
		}
		if got == 0 && oobn == 0 {
			return out, fmt.Errorf("receive descriptors: got %d of %d", len(out), n)
		}
		fds, err := parseRights(oob[:oobn])
		out = append(out, fds...)
		if err != nil {
			return out, fmt.Errorf("receive descriptors: %w", err)
		}
	}
	if len(out) != n {
		return out, fmt.Errorf("receive descriptors: got %d, want %d", len(out), n)
	}
	return out, nil
}
