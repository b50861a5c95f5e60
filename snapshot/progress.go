package snapshot

import (
	"io"
	"sync"
	"time"
)

// Progress is a report on a long transfer: a large blob copied into the
// store, decompressed, exported, or unpacked into a layer directory. The
// store reports; drawing is the caller's (the CLI draws bars on a
// terminal).
type Progress struct {
	// What names the transfer, e.g. "copy layer sha256:0123456789ab" or
	// "unpack sha256:0123456789ab"; reports with one What are about one
	// transfer.
	What string
	// Done of Total bytes have been read so far.
	Done, Total int64
	// Finished is set on a transfer's last report (Done may then fall
	// short of Total: the transfer failed, or the size was an estimate).
	Finished bool
}

// progressMin is the smallest blob that gets progress reports.
const progressMin = 16 << 20

// progressEvery is the least time between two reports of one transfer
// (its first and last are always made).
const progressEvery = 100 * time.Millisecond

// bar reports the progress of one transfer to Options.Progress; the zero
// value reports nothing.
type bar struct{ t *transfer }

type transfer struct {
	report func(Progress)
	mu     sync.Mutex
	p      Progress
	last   time.Time
}

// bar starts reporting a transfer of size bytes when there is an
// Options.Progress and the blob is large.
func (s *Store) bar(size int64, what string) bar {
	if s.progress == nil || size < progressMin {
		return bar{}
	}
	t := &transfer{report: s.progress, p: Progress{What: what, Total: size}, last: time.Now()}
	s.progress(t.p)
	return bar{t: t}
}

// wrap counts what is read through r as done.
func (b bar) wrap(r io.Reader) io.Reader {
	if b.t == nil {
		return r
	}
	return &progressReader{r: r, t: b.t}
}

// finish makes the transfer's last report, unless it was made.
func (b bar) finish() {
	if b.t != nil {
		b.t.add(0, true)
	}
}

func (t *transfer) add(n int64, end bool) {
	t.mu.Lock()
	if t.p.Finished {
		t.mu.Unlock()
		return
	}
	t.p.Done += n
	end = end || t.p.Done >= t.p.Total
	now := time.Now()
	if !end && now.Sub(t.last) < progressEvery {
		t.mu.Unlock()
		return
	}
	t.last, t.p.Finished = now, end
	p := t.p
	t.mu.Unlock()
	t.report(p)
}

type progressReader struct {
	r io.Reader
	t *transfer
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.t.add(int64(n), false)
	}
	return n, err
}
