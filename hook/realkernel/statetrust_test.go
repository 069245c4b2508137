//go:build realkernel

package realkernel

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStateTrust: records say which routes to put back and which
// down_command to run as root, so the state directory and the records in
// it get the config's trust rules. Once, a record anyone could write was
// acted on as it was.
func TestStateTrust(t *testing.T) {
	t.Parallel()
	cfg := writeConfig(t, site1)

	t.Run("state directory writable by others", func(t *testing.T) {
		ns := newNS(t)
		ns.dummy("eth1", "198.51.100.1/24", 1500)
		dir := filepath.Join(t.TempDir(), "state")
		if err := os.Mkdir(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		os.Chmod(dir, 0o777)
		env := []string{"GRE_HOOK_STATE_DIR=" + dir}
		before := ns.snapshot()
		r := ns.gh(env, "--config", cfg, "--iface", "eth1", "--phase", "up")
		expectFail(t, "up with a world-writable state directory", r, 1, "refusing state directory", "writable by group or others", "chmod go-w")
		ns.assertUnchanged("up with a world-writable state directory", before)
	})

	t.Run("record another user wrote", func(t *testing.T) {
		ns := newCleanNS(t)
		ns.dummy("eth1", "198.51.100.1/24", 1500)
		ns.up(cfg, "eth1")
		rec := filepath.Join(ns.stateDir(), "eth1.json")
		data, err := os.ReadFile(rec)
		if err != nil {
			t.Fatal(err)
		}
		// Someone else's record, with a command gre-hook would run as root.
		planted := strings.Replace(string(data), `"name": "gre-site2"`, `"name": "gre-site2", "down_command": ["/bin/touch", "/tmp/planted"]`, 1)
		if planted == string(data) {
			t.Fatalf("record has no tunnel entry to plant into:\n%s", data)
		}
		if err := os.WriteFile(rec, []byte(planted), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(rec, 1000, 1000); err != nil {
			t.Fatal(err)
		}
		before := ns.snapshot()
		r := ns.gh(nil, "--config", cfg, "--iface", "eth1", "--phase", "down")
		expectFail(t, "down with another user's record", r, 1, rec, "owned by uid 1000, not root")
		ns.assertUnchanged("down with another user's record", before)
		if _, err := os.Stat("/tmp/planted"); err == nil {
			t.Error("the planted down_command ran")
		}
		// The way out: a record root writes again.
		os.Chown(rec, 0, 0)
		os.WriteFile(rec, data, 0o600)
		ns.down(cfg, "eth1")
		ns.assertClean()
	})
}
