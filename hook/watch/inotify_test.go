package watch

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gre-hook/gre-hook/hook/state"
)

func TestFollowDirSignalsRecordsOnly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state") // made by FollowDir
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan struct{}, 1)
	if err := FollowDir(ctx, dir, out, &syncBuf{}); err != nil {
		t.Fatal(err)
	}
	expect := func(what string, want bool) {
		t.Helper()
		select {
		case <-out:
			if !want {
				t.Errorf("%s: signalled", what)
			}
		case <-time.After(300 * time.Millisecond):
			if want {
				t.Errorf("%s: no signal", what)
			}
		}
	}
	// The watcher's own file, written as it writes it, is no record.
	if err := state.WriteLiveness(dir, nil); err != nil {
		t.Fatal(err)
	}
	expect("the liveness file written", false)
	if err := os.WriteFile(filepath.Join(dir, "lock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	expect("the lock file made", false)

	// A record saved as state.Store saves it: a temporary file renamed.
	tmp := filepath.Join(dir, ".record-1")
	if err := os.WriteFile(tmp, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	expect("a temporary file", false)
	if err := os.Rename(tmp, filepath.Join(dir, "eth1.json")); err != nil {
		t.Fatal(err)
	}
	expect("a record saved", true)
	if err := os.Remove(filepath.Join(dir, "eth1.json")); err != nil {
		t.Fatal(err)
	}
	expect("a record removed", true)

	cancel()
	time.Sleep(50 * time.Millisecond)
	os.WriteFile(filepath.Join(dir, "eth2.json"), []byte("{}"), 0o600)
	expect("after the stop", false)
}
