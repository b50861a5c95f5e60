package snapshot

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
)

// warnFunc receives what the layer writer skipped: a message and the
// entry's name in the layer.
type warnFunc func(msg, name string)

// warningPrefix starts a line on the stderr of a HelperRole child that is
// a warning (JSON, so that no name can forge a line), not an error.
const warningPrefix = "lightbox-warning "

type childWarning struct {
	Msg  string `json:"msg"`
	Name string `json:"name"`
}

// childWarn is the warnFunc of a HelperRole child.
func childWarn(msg, name string) {
	b, err := json.Marshal(childWarning{msg, name})
	if err != nil {
		return // two strings always marshal
	}
	fmt.Fprintf(os.Stderr, "%s%s\n", warningPrefix, b)
}

// warnRelay passes the warning lines of a child's stderr to warn and
// drops them from what follows (startChild's error text).
type warnRelay struct {
	warn    warnFunc
	partial []byte
	rest    io.Writer
}

func (r *warnRelay) Write(p []byte) (int, error) {
	r.partial = append(r.partial, p...)
	for {
		i := bytes.IndexByte(r.partial, '\n')
		if i < 0 {
			if len(r.partial) > 64<<10 { // not a warning line: pass it on
				_, _ = r.rest.Write(r.partial) // the rest goes to startChild's limitWriter, which never fails
				r.partial = r.partial[:0]
			}
			return len(p), nil
		}
		line := r.partial[:i+1]
		var cw childWarning
		if rest, ok := bytes.CutPrefix(line, []byte(warningPrefix)); ok && json.Unmarshal(rest, &cw) == nil {
			r.warn(cw.Msg, cw.Name)
		} else {
			_, _ = r.rest.Write(line) // the rest goes to startChild's limitWriter, which never fails
		}
		r.partial = r.partial[i+1:]
	}
}

func (r *warnRelay) flush() {
	if len(r.partial) > 0 {
		_, _ = r.rest.Write(r.partial) // the rest goes to startChild's limitWriter, which never fails
		r.partial = nil
	}
}
