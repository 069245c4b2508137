package hook

import (
	"net/netip"
	"strings"
	"testing"
)

var dynamicConfig = namedConfig + `
[[tunnel]]
name = "gre-fixed"
underlay = "eth1"
local = "198.51.100.1"
remote = "203.0.113.5"
address = ["10.0.5.1/30"]

[[tunnel]]
name = "gre-auto"
underlay = "eth1"
remote = "203.0.113.6"
address = ["10.0.6.1/30"]
resolve_interval = 7
`

// Watching lists the tunnels with a name for remote or an automatic local,
// the unresolved ones included, and not the one with both fixed.
func TestDynamicLists(t *testing.T) {
	e := newEnv(t)
	e.names(map[string][]string{"site2.test": {"203.0.113.1"}})
	e.write(dynamicConfig)
	e.mustRun(PhaseUp)
	ds, err := dynamicOf(e.sys, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range ds {
		got = append(got, strings.Join([]string{d.Tunnel, d.Local.String(), d.Remote.String(), d.RemoteName,
			d.ResolveInterval.String(), map[bool]string{true: "auto"}[d.LocalAuto], map[bool]string{true: "unresolved"}[d.Unresolved]}, " "))
	}
	want := []string{
		"gre-site2 198.51.100.1 203.0.113.1 site2.test 5m0s  ",
		"gre-auto 198.51.100.1 203.0.113.6  7s auto ",
		"gre-site3 invalid IP invalid IP site3.test 5m0s auto unresolved",
	}
	diff(t, "Dynamic", strings.Join(got, "\n"), strings.Join(want, "\n"))
}

// Reconcile brings up a tunnel up left unresolved, once its name
// resolves, and only while the record still says it waits.
func TestReconcileUnresolved(t *testing.T) {
	e := newEnv(t)
	e.names(map[string][]string{"site2.test": {"203.0.113.1"}})
	e.write(namedConfig)
	e.mustRun(PhaseUp)
	if strings.Contains(e.dump(), "gre-site3") {
		t.Fatal("gre-site3 is up before its name resolves")
	}
	e.names(map[string][]string{"site2.test": {"203.0.113.1"}, "site3.test": {"203.0.113.3"}})
	var log strings.Builder
	if err := engineTo(e.sys, &log).Reconcile(bg(), "eth1", "gre-site3"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(e.dump(), "link gre-site3 gre local 198.51.100.1 remote 203.0.113.3 ") {
		t.Errorf("gre-site3 not brought up:\n%s", e.dump())
	}
	if !strings.Contains(log.String(), "gre-hook: + ip tunnel add gre-site3 ") || strings.Contains(log.String(), "gre-site2") {
		t.Errorf("log:\n%s", log.String())
	}
	rec, _ := e.sys.Store.Load("eth1")
	if r := rec.Find("gre-site3"); r == nil || r.Unresolved || r.Remote != netip.MustParseAddr("203.0.113.3") {
		t.Errorf("record entry: %+v", r)
	}
	// Nothing waits any more: a no-op.
	log.Reset()
	if err := engineTo(e.sys, &log).Reconcile(bg(), "eth1", "gre-site3"); err != nil || log.Len() != 0 {
		t.Errorf("second reconcile: %v\n%s", err, log.String())
	}
	// After a down, the watcher's late call must not bring anything up.
	e.mustRun(PhaseDown)
	if err := engineTo(e.sys, &log).Reconcile(bg(), "eth1", "gre-site3"); err != nil || strings.Contains(e.dump(), "link gre-") {
		t.Errorf("reconcile after down: %v\n%s", err, e.dump())
	}
}

// An up that finds a stale tunnel it cannot remove keeps it in the record;
// a tunnel that is still unresolved must stay listed once, not once as
// unresolved and again as stale.
func TestUnresolvedListedOnceWhenStaleRemovalFails(t *testing.T) {
	e := newEnv(t)
	e.names(map[string][]string{"site2.test": {"203.0.113.1"}})
	e.write(namedConfig + `
[[tunnel]]
name = "gre-old"
underlay = "eth1"
remote = "203.0.113.7"
address = ["10.0.7.1/30"]
`)
	e.mustRun(PhaseUp)
	e.write(namedConfig)
	e.fk.Net.FailNth("DelLinks", 1)
	e.fk.Net.FailNth("DelLink", 1)
	e.run(PhaseUp)
	rec, err := e.sys.Store.Load("eth1")
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, tu := range rec.Tunnels {
		n[tu.Name]++
	}
	if n["gre-site3"] != 1 || n["gre-old"] != 1 || n["gre-site2"] != 1 {
		t.Errorf("record lists %v; want each once\n%s", n, e.record())
	}
	if r := rec.Find("gre-site3"); r == nil || !r.Unresolved {
		t.Errorf("gre-site3: %+v", r)
	}
}
