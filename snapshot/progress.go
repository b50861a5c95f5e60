package snapshot

import (
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
)

// progressMin is the smallest blob that gets a progress bar.
const progressMin = 16 << 20

// bar is a progress bar over a byte stream; the zero value draws nothing.
type bar struct{ pb *progressbar.ProgressBar }

// bar starts a progress bar of size bytes on Options.Progress when there
// is one and the blob is large.
func (s *Store) bar(size int64, desc string) bar {
	if s.progress == nil || size < progressMin {
		return bar{}
	}
	return bar{pb: progressbar.NewOptions64(size,
		progressbar.OptionSetWriter(s.progress),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)}
}

func (b bar) wrap(r io.Reader) io.Reader {
	if b.pb == nil {
		return r
	}
	return io.TeeReader(r, b.pb)
}

func (b bar) finish() {
	if b.pb != nil {
		b.pb.Finish()
	}
}
