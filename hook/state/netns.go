package state

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// readlink is os.Readlink; tests replace it.
var readlink = os.Readlink

// NetnsDir is DirFor, with an error that says so when it cannot tell
// which network namespace the thread is in (/proc/1/ns/net unreadable,
// as under some container runtimes): the directory is then base, the
// host namespace's, and a caller should not take that in silence.
func NetnsDir(base string) (string, error) {
	self, err := readlink("/proc/thread-self/ns/net")
	if err != nil {
		return base, fmt.Errorf("cannot tell which network namespace this is (%v), so it is taken for the host's", err)
	}
	init, err := readlink("/proc/1/ns/net")
	if err != nil {
		return base, fmt.Errorf("cannot tell which network namespace this is (%v), so it is taken for the host's", err)
	}
	if self == init {
		return base, nil
	}
	if c, err := netnsCookie(); err == nil {
		return filepath.Join(base, fmt.Sprintf("netns-cookie-%d", c)), nil
	}
	// "net:[4026532281]" -> "netns-4026532281"
	id := strings.TrimSuffix(strings.TrimPrefix(self, "net:["), "]")
	return filepath.Join(base, "netns-"+id), nil
}
