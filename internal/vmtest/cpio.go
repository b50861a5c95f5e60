package vmtest

import (
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

// cpioEntry is one member of an initramfs: a directory, a regular file
// (Data or, when Data is nil, the content of the host file Source) or a
// character device.
type cpioEntry struct {
	Name   string // path inside the archive, without a leading slash
	Mode   uint32 // type bits (S_IFDIR, S_IFREG, S_IFCHR) | permissions
	Data   []byte
	Source string
	Major  uint32 // device number of a character device
	Minor  uint32
}

const (
	sIFDIR = 0o040000
	sIFREG = 0o100000
	sIFCHR = 0o020000
)

// writeCpio writes entries as a "newc" cpio archive (the format the kernel
// unpacks into its initial root filesystem; see the kernel's
// Documentation/driver-api/early-userspace/buffer-format.rst). Parents
// come before children: entries are sorted by name.
func writeCpio(w io.Writer, entries []cpioEntry) error {
	sorted := append([]cpioEntry(nil), entries...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	cw := &countWriter{w: w}
	for i, e := range sorted {
		name := strings.TrimPrefix(path.Clean("/"+e.Name), "/")
		if name == "" {
			return fmt.Errorf("cpio: empty entry name")
		}
		var size int64
		var src *os.File
		switch e.Mode &^ 0o7777 {
		case sIFREG:
			if e.Data != nil {
				size = int64(len(e.Data))
			} else {
				f, err := os.Open(e.Source)
				if err != nil {
					return fmt.Errorf("cpio: %w", err)
				}
				defer func() { _ = f.Close() }() // read-only
				st, err := f.Stat()
				if err != nil {
					return fmt.Errorf("cpio: %w", err)
				}
				size, src = st.Size(), f
			}
		case sIFDIR, sIFCHR:
		default:
			return fmt.Errorf("cpio: %s: unsupported mode %o", name, e.Mode)
		}
		if err := writeCpioHeader(cw, uint32(i+1), e.Mode, size, e.Major, e.Minor, name); err != nil {
			return err
		}
		switch {
		case src != nil:
			if _, err := io.Copy(cw, src); err != nil {
				return fmt.Errorf("cpio: %s: %w", name, err)
			}
		case size > 0:
			if _, err := cw.Write(e.Data); err != nil {
				return fmt.Errorf("cpio: %s: %w", name, err)
			}
		}
		if err := cw.pad(); err != nil {
			return err
		}
	}
	if err := writeCpioHeader(cw, 0, 0, 0, 0, 0, "TRAILER!!!"); err != nil {
		return err
	}
	return cw.pad()
}

// writeCpioHeader writes a newc header and the NUL-terminated name, padded
// to four bytes.
func writeCpioHeader(cw *countWriter, ino, mode uint32, size int64, major, minor uint32, name string) error {
	nlink := uint32(1)
	if mode&^0o7777 == sIFDIR {
		nlink = 2
	}
	if size > 0xffffffff {
		return fmt.Errorf("cpio: %s: file too large for newc", name)
	}
	// magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
	// devminor, rdevmajor, rdevminor, namesize, check
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, uint32(size), 0, 0, major, minor, len(name)+1, 0)
	if _, err := io.WriteString(cw, hdr+name+"\x00"); err != nil {
		return fmt.Errorf("cpio: %s: %w", name, err)
	}
	return cw.pad()
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// pad writes NULs up to the next multiple of four bytes.
func (c *countWriter) pad() error {
	if r := c.n % 4; r != 0 {
		if _, err := c.Write(make([]byte, 4-r)); err != nil {
			return fmt.Errorf("cpio: %w", err)
		}
	}
	return nil
}
