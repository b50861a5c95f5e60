package environ

import (
	"slices"
	"testing"
)

func TestMerge(t *testing.T) {
	for _, tc := range []struct {
		base, over, want []string
	}{
		{nil, nil, []string{}},
		{[]string{"A=1", "B=2"}, []string{"B=3", "C=4"}, []string{"A=1", "B=3", "C=4"}},
		{[]string{"A=1", "A=2"}, nil, []string{"A=2"}},
		{[]string{"PATH=/bin"}, []string{"X=1", "PATH=/usr/bin", "X=2"}, []string{"PATH=/usr/bin", "X=2"}},
		{nil, []string{"EMPTY="}, []string{"EMPTY="}},
	} {
		if got := Merge(tc.base, tc.over); !slices.Equal(got, tc.want) {
			t.Errorf("Merge(%q, %q) = %q, want %q", tc.base, tc.over, got, tc.want)
		}
	}
}

func TestLookup(t *testing.T) {
	env := []string{"PATH=/a", "PATHX=/b", "PATH=/c"}
	if v, ok := Lookup(env, "PATH"); !ok || v != "/c" {
		t.Errorf("Lookup(PATH) = %q, %v, want /c, true", v, ok)
	}
	if _, ok := Lookup(env, "HOME"); ok {
		t.Error("Lookup(HOME) found a value in an env without one")
	}
}
