package hook

import (
	"strings"
	"testing"
)

// site1Renamed is site1 with its tunnel renamed and nothing else changed:
// the same mode, local, remote and key, which is what the kernel keys GRE
// tunnels by.
var site1Renamed = strings.Replace(site1, `name = "gre-site2"`, `name = "gre-b"`, 1)

// TestRenameSameEndpoints: renaming a tunnel whose endpoints stay is one up.
// The old link must go before the new one is made, or the kernel refuses the
// new one with EEXIST (another tunnel already has that local, remote and
// key).
func TestRenameSameEndpoints(t *testing.T) {
	want := golden(t, site1Renamed)
	e := newEnv(t)
	e.write(site1)
	e.mustRun(PhaseUp)
	e.write(site1Renamed)
	// A dry run prints what the up will do, the old link's removal once,
	// and changes nothing.
	before := e.dump()
	dry := e.dryRun()
	diff(t, "state after the dry run", e.dump(), before)
	out := e.mustRun(PhaseUp)
	diff(t, "the dry run's commands", dry, strings.ReplaceAll(out, "gre-hook: + ", ""))
	diff(t, "state after the renaming up", e.dump(), want)
	if del, add := strings.Index(out, "ip link del gre-site2"), strings.Index(out, "ip tunnel add gre-b "); del < 0 || add < 0 || del > add {
		t.Errorf("the old link is not deleted before the new one is made:\n%s", out)
	}
	if strings.Count(out, "ip link del gre-site2") != 1 {
		t.Errorf("the old link is deleted more than once, or not at all:\n%s", out)
	}
	if rec := e.record(); strings.Contains(rec, "gre-site2") {
		t.Errorf("the record still has the old tunnel:\n%s", rec)
	}
	if out := e.mustRun(PhaseUp); out != "" {
		t.Errorf("a second up logged:\n%s", out)
	}
	e.mustRun(PhaseDown)
	diff(t, "state after down", e.dump(), baseline)
}

// TestRenameSameEndpointsRollback: when a step after the old link's removal
// fails, the rollback puts the old link back with its addresses and routes,
// and the record still lists it; the next up, with the fault gone, renames.
func TestRenameSameEndpointsRollback(t *testing.T) {
	want := golden(t, site1Renamed)
	e := newEnv(t)
	e.write(site1)
	e.mustRun(PhaseUp)
	before, rec := e.dump(), e.record()
	e.write(site1Renamed)
	// The new tunnel's route: after the old link is gone and the new one
	// is made, addressed and up.
	e.fk.Net.FailNth("ReplaceRoute", 1)
	out, err := e.run(PhaseUp)
	if err == nil {
		t.Fatalf("up with a failing route succeeded:\n%s", out)
	}
	if !strings.Contains(out, "ip link del gre-site2") {
		t.Fatalf("the fault came before the old link was removed, so the test proves nothing:\n%s", out)
	}
	diff(t, "state after the rolled back rename", e.dump(), before)
	if got := e.record(); got != rec {
		t.Errorf("record after the rollback:\n%s\nwant:\n%s", got, rec)
	}
	e.fk.Net.Disarm()
	e.mustRun(PhaseUp)
	diff(t, "state after the next up", e.dump(), want)
	e.mustRun(PhaseDown)
	diff(t, "state after down", e.dump(), baseline)
}

// TestRenameSameEndpointsDefaultRoute: a renamed default_route tunnel is
// not removed first (its default route would go with its link, and the
// record's note of the route it replaced with its entry). The up says so
// and changes nothing; down and up then rename it.
func TestRenameSameEndpointsDefaultRoute(t *testing.T) {
	renamed := strings.Replace(defaultRoute, `name = "gre-vpn"`, `name = "gre-vpn2"`, 1)
	if renamed == defaultRoute {
		t.Fatal("the config has no tunnel gre-vpn to rename")
	}
	want := golden(t, renamed)
	e := newEnv(t)
	e.write(defaultRoute)
	e.mustRun(PhaseUp)
	before, rec := e.dump(), e.record()
	e.write(renamed)
	out, err := e.run(PhaseUp)
	const msg = `tunnel "gre-vpn2": stale tunnel gre-vpn has the same local 198.51.100.1, remote 203.0.113.5 and key 0, which the kernel allows one tunnel, and holds the default route, so it is not removed first; take the underlay's tunnels down and up (` + "`gre-hook --iface eth1 --phase down`" + `, then up)`
	if err == nil || !strings.Contains(err.Error(), msg) {
		t.Errorf("up: %v\nwant the error to say: %s", err, msg)
	}
	if strings.Contains(out, "+ ip") {
		t.Errorf("the refused up changed something:\n%s", out)
	}
	diff(t, "state after the refused up", e.dump(), before)
	if got := e.record(); got != rec {
		t.Errorf("record after the refused up:\n%s\nwant:\n%s", got, rec)
	}
	e.mustRun(PhaseDown)
	diff(t, "state after down", e.dump(), baseline)
	e.mustRun(PhaseUp)
	diff(t, "state after up", e.dump(), want)
}
