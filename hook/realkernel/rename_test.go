//go:build realkernel

package realkernel

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRenameSameEndpoints renames the seed's tunnel and changes nothing
// else. The kernel keys GRE tunnels by local, remote and key, so the new
// link can only be made once the old one is gone: one up must do both.
// First an up that fails after that point (an up_command that fails) must
// put the old tunnel back as it was; then the real one renames.
func TestRenameSameEndpoints(t *testing.T) {
	t.Parallel()
	ns := newCleanNS(t)
	ns.dummy("eth1", "198.51.100.1/24", 1500)
	// One config file, edited: a run with another file leaves the
	// underlay's tunnels alone.
	cfg := writeConfig(t, site1)
	edit := func(text string) {
		t.Helper()
		if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ns.up(cfg, "eth1")
	before := ns.snapshot()
	oldRec, err := os.ReadFile(filepath.Join(ns.stateDir(), "eth1.json"))
	if err != nil {
		t.Fatal(err)
	}
	renamed := strings.Replace(site1, `name = "gre-site2"`, `name = "gre-b"`, 1)

	edit(strings.Replace(renamed, `address = `, "up_command = [\"/bin/false\"]\naddress = ", 1))
	r := ns.gh(nil, "--config", cfg, "--iface", "eth1", "--phase", "up")
	expectFail(t, "a rename whose up_command fails", r, 1, "up_command", "rolled back")
	if !strings.Contains(r.stderr, "+ ip link del gre-site2") {
		t.Errorf("the failing up did not remove the old link first, so its rollback proves nothing:\n%s", r.stderr)
	}
	ns.assertUnchanged("the rolled back rename", before)
	if rec, _ := os.ReadFile(filepath.Join(ns.stateDir(), "eth1.json")); string(rec) != string(oldRec) {
		t.Errorf("the record after the rollback:\n%s\nwant:\n%s", rec, oldRec)
	}

	edit(renamed)
	r = ns.up(cfg, "eth1")
	t.Logf("the renaming up:\n%s", r.stderr)
	links := ns.links()
	if _, ok := links["gre-site2"]; ok {
		t.Errorf("gre-site2 is still there after the rename")
	}
	l, ok := links["gre-b"]
	if !ok {
		t.Fatalf("no link gre-b after the rename:\n%s", ns.ip("-d", "link", "show"))
	}
	assertEq(t, "gre-b's local", l.data("local"), "198.51.100.1")
	assertEq(t, "gre-b's remote", l.data("remote"), "203.0.113.1")
	assertEq(t, "gre-b's alias", l.Ifalias, "gre-hook:eth1")
	assertEq(t, "gre-b up", l.has("UP"), true)
	if ours := ns.ourRoutes(); len(ours) != 1 || !strings.HasPrefix(ours[0], "192.168.2.0/24 via 10.0.0.2 dev gre-b ") {
		t.Errorf("gre-hook's routes after the rename: %q, want the LAN route via gre-b", ours)
	}
	rules := strings.Join(ns.mangle("iptables"), "\n")
	if !strings.Contains(rules, "-o gre-b ") || strings.Contains(rules, "gre-site2") {
		t.Errorf("MSS rules after the rename:\n%s", rules)
	}
	if rec, _ := os.ReadFile(filepath.Join(ns.stateDir(), "eth1.json")); strings.Contains(string(rec), "gre-site2") || !strings.Contains(string(rec), "gre-b") {
		t.Errorf("the record after the rename:\n%s", rec)
	}
	if r := ns.up(cfg, "eth1"); strings.Contains(r.stderr, "+ ") {
		t.Errorf("a second up changed something:\n%s", r.stderr)
	}
	ns.down(cfg, "eth1")
	ns.assertNothingLeft("down after the rename")
}
