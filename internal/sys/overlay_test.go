package sys

import "testing"

func TestOverlayData(t *testing.T) {
	params := []Param{
		{Key: "userxattr"}, {Key: "redirect_dir", Value: "nofollow"}, {Key: "metacopy", Value: "off"},
		{Key: "lowerdir+", Value: "/l/top"}, {Key: "lowerdir+", Value: "/l/bottom"},
		{Key: "upperdir", Value: "/s/upper"}, {Key: "workdir", Value: "/s/work"},
	}
	want := "userxattr,redirect_dir=nofollow,metacopy=off,lowerdir=/l/top:/l/bottom,upperdir=/s/upper,workdir=/s/work"
	if got := OverlayData(params, func(_ int, p string) string { return p }); got != want {
		t.Errorf("OverlayData = %q, want %q", got, want)
	}
	if !HasLowerdirPlus(params) || HasLowerdirPlus(params[:3]) {
		t.Error("HasLowerdirPlus is wrong")
	}
}
