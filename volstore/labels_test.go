package volstore_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/beamhop/lightbox/volstore"
)

func TestCheckLabels(t *testing.T) {
	many := map[string]string{}
	for i := range volstore.MaxLabels + 1 {
		many[fmt.Sprint("k", i)] = "v"
	}
	for _, c := range []struct {
		labels map[string]string
		ok     bool
	}{
		{nil, true},
		{map[string]string{"flow": "build", "team": "ml infra", "é": "ünïcode ✓", "empty": ""}, true},
		{map[string]string{strings.Repeat("k", volstore.MaxLabelKey): strings.Repeat("v", volstore.MaxLabelValue)}, true},
		{map[string]string{strings.Repeat("k", volstore.MaxLabelKey+1): "v"}, false},
		{map[string]string{"k": strings.Repeat("v", volstore.MaxLabelValue+1)}, false},
		{many, false},
		{map[string]string{"": "v"}, false},
		{map[string]string{"a=b": "v"}, false},
		{map[string]string{"a b": "v"}, false},
		{map[string]string{"k": "line\nforged row"}, false},
		{map[string]string{"k": "\x1b[2J"}, false},
		{map[string]string{"k": "a\tb"}, false},
		{map[string]string{"k": "a\x00b"}, false},
		{map[string]string{"k": "a\x7fb"}, false},
		{map[string]string{"k": "a\u0085b"}, false}, // C1 control (NEL)
		{map[string]string{"k": "evil\u202egnp.exe"}, false},
		{map[string]string{"k": "\xff\xfe"}, false},
		{map[string]string{"k\x1b": "v"}, false},
	} {
		err := volstore.CheckLabels(c.labels)
		if c.ok && err != nil {
			t.Errorf("CheckLabels(%q) = %v, want nil", c.labels, err)
		}
		if !c.ok && !errors.Is(err, volstore.ErrInvalidOption) {
			t.Errorf("CheckLabels(%q) = %v, want ErrInvalidOption", c.labels, err)
		}
	}
	for f, ok := range map[string]bool{"k": true, "k=v w": true, "k=": true, "=v": false, "k=\x1b[2J": false, "k\n=v": false} {
		if err := volstore.CheckLabelFilter(f); (err == nil) != ok {
			t.Errorf("CheckLabelFilter(%q) = %v, want ok=%v", f, err, ok)
		}
	}
}
