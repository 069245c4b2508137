package state

import (
	"errors"
	"io/fs"
	"testing"
)

// When the namespace cannot be told, NetnsDir says so and gives the
// base; DirFor, which has no way to say it, keeps its old result.
func TestNetnsDirCannotTell(t *testing.T) {
	old := readlink
	t.Cleanup(func() { readlink = old })
	readlink = func(p string) (string, error) {
		if p == "/proc/1/ns/net" {
			return "", &fs.PathError{Op: "readlink", Path: p, Err: errors.New("permission denied")}
		}
		return "net:[4026531840]", nil
	}
	dir, err := NetnsDir("/run/gre-hook")
	want := "cannot tell which network namespace this is (readlink /proc/1/ns/net: permission denied), so it is taken for the host's"
	if dir != "/run/gre-hook" || err == nil || err.Error() != want {
		t.Errorf("NetnsDir = %q, %v; want /run/gre-hook, %s", dir, err, want)
	}
	if got := DirFor("/run/gre-hook"); got != "/run/gre-hook" {
		t.Errorf("DirFor = %q", got)
	}
	// The host's namespace: no error.
	readlink = func(string) (string, error) { return "net:[4026531840]", nil }
	if dir, err := NetnsDir("/run/gre-hook"); dir != "/run/gre-hook" || err != nil {
		t.Errorf("NetnsDir in the host namespace = %q, %v", dir, err)
	}
}
