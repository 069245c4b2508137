package hook

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/gre-hook/gre-hook/hook/engine"
	"github.com/gre-hook/gre-hook/hook/fake"
	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/rtnl"
	"github.com/gre-hook/gre-hook/hook/state"
)

// The record and kernel state of the release before policy routing, taken
// down and moved to the new form (engine/legacy.go).

// watchdog is the fake kernel, checked after every change: traffic always
// has a default route, and a tunnel's own packets (marked, once its link
// has the mark) never route into a tunnel.
type watchdog struct {
	*fake.Net
	t      *testing.T
	remote string
	fails  []string
}

func (w *watchdog) check(op string) {
	if _, ok := w.RouteGet(netip.MustParseAddr("8.8.8.8"), 0); !ok {
		w.fails = append(w.fails, "no default route after "+op)
	}
	links, _ := w.Net.Links()
	var mark uint32
	for _, l := range links {
		if l.GRE {
			mark = l.FwMark
		}
	}
	if r, ok := w.RouteGet(netip.MustParseAddr(w.remote), mark); ok && strings.HasPrefix(r.Dev, "gre-") {
		w.fails = append(w.fails, "the tunnel's packets route into "+r.Dev+" after "+op)
	}
}

func (w *watchdog) ReplaceRoute(r rtnl.Route) error {
	err := w.Net.ReplaceRoute(r)
	w.check(engine.DescribeRoute(engine.PlanRoute(r), r.Protocol))
	return err
}

func (w *watchdog) DelRoute(r rtnl.Route) error {
	err := w.Net.DelRoute(r)
	w.check("del " + engine.DescribeRoute(engine.PlanRoute(r), r.Protocol))
	return err
}

func (w *watchdog) AddRule(r rtnl.Rule) error {
	err := w.Net.AddRule(r)
	w.check("rule add")
	return err
}

func (w *watchdog) DelRule(r rtnl.Rule) error {
	err := w.Net.DelRule(r)
	w.check("rule del")
	return err
}

func (w *watchdog) SetFwMark(name string, m uint32) error {
	err := w.Net.SetFwMark(name, m)
	w.check("fwmark")
	return err
}

func (w *watchdog) DelLinks(names []string) []error {
	errs := w.Net.DelLinks(names)
	w.check("link del")
	return errs
}

var (
	legacyDefault = state.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("10.9.0.1"), Dev: "gre-vpn"}
	legacyPin     = state.Route{Dst: netip.MustParsePrefix("203.0.113.5/32"), Gw: netip.MustParseAddr("198.51.100.254"), Dev: "eth1"}
	legacyOrig    = state.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("198.51.100.254"), Dev: "eth1", Protocol: fake.ProtoStatic}
)

// toLegacy makes the machine of newEnv with the defaultRoute config look
// as the previous release's up left it: the link without a mark, the main
// default replaced by the tunnel's, a pin to the remote, no rules and
// nothing in gre-hook's table, and the record that release wrote.
func toLegacy(e *env) {
	e.t.Helper()
	e.write(defaultRoute)
	e.mustRun(PhaseUp)
	n := e.fk.Net
	n.Mutate("gre-vpn", func(l *rtnl.Link) { l.FwMark = 0 })
	for _, r := range plan.DefaultPolicy.Rules(4) {
		n.DelRule(engine.KernelRule(r))
	}
	n.RemoveRoute(netip.MustParsePrefix("0.0.0.0/0"))
	n.AddForeignRoute(legacyDefault.Plan(), plan.RouteProtocol)
	n.AddForeignRoute(legacyPin.Plan(), plan.RouteProtocol)
	rec, err := e.sys.Store.Load("eth1")
	if err != nil {
		e.t.Fatal(err)
	}
	t := &rec.Tunnels[0]
	pin := legacyPin
	t.Defaults, t.Routes = []state.Route{legacyDefault}, nil
	t.Pin, t.Replaced, t.Seq = &pin, []state.Route{legacyOrig}, 1
	if err := e.sys.Store.Save(rec); err != nil {
		e.t.Fatal(err)
	}
}

func watched(e *env) *watchdog {
	w := &watchdog{Net: e.fk.Net, t: e.t, remote: "203.0.113.5"}
	e.sys.Net = w
	return w
}

// A down by this release of the previous one's underlay puts the main
// default back as it was, takes the pin, and leaves nothing.
func TestLegacyDown(t *testing.T) {
	e := newEnv(t)
	toLegacy(e)
	w := watched(e)
	e.mustRun(PhaseDown)
	if len(w.fails) > 0 {
		t.Errorf("during the down:\n%s", strings.Join(w.fails, "\n"))
	}
	diff(t, "after down", e.dump(), baseline)
}

// An up by this release moves the previous one's underlay to the new form
// with a default route at every moment: first the mark, the route in
// gre-hook's table and the rules; then the main default the record says
// was replaced; then the pin goes.
func TestLegacyUpMigrates(t *testing.T) {
	e := newEnv(t)
	toLegacy(e)
	w := watched(e)
	out := e.mustRun(PhaseUp)
	if len(w.fails) > 0 {
		t.Errorf("during the up:\n%s\n%s", strings.Join(w.fails, "\n"), out)
	}
	want := []string{
		"ip link set gre-vpn type gre fwmark 0x4747",
		"ip route replace default via 10.9.0.1 dev gre-vpn table 18247 metric 1 proto 176",
		"ip rule add priority 32700 lookup main suppress_prefixlength 0 proto 176",
		"ip rule add priority 32701 not fwmark 0x4747 lookup 18247 proto 176",
		"ip route replace default via 198.51.100.254 dev eth1 proto 4",
		"ip route del 203.0.113.5/32 via 198.51.100.254 dev eth1",
	}
	last := -1
	for _, c := range want {
		i := strings.Index(out, "gre-hook: + "+c+"\n")
		if i < 0 || i < last {
			t.Fatalf("the migration log lacks %q, or has it out of order:\n%s", c, out)
		}
		last = i
	}
	diff(t, "after the migration", e.dump(), defaultRouteState)
	if rec := e.record(); strings.Contains(rec, `"replaced"`) || strings.Contains(rec, `"pin"`) || strings.Contains(rec, `"default_seq"`) {
		t.Errorf("the record keeps the old form:\n%s", rec)
	}
	if out := e.mustRun(PhaseUp); out != "" {
		t.Errorf("a second up changed things:\n%s", out)
	}
	e.mustRun(PhaseDown)
	diff(t, "after down", e.dump(), baseline)
}

// A migration that fails after the main default was put back rolls back
// to the previous release's state, which its record still describes, and
// a later down takes that down correctly.
func TestLegacyUpRollsBack(t *testing.T) {
	e := newEnv(t)
	toLegacy(e)
	legacy := e.dump()
	// The MSS rules are written after the migration's steps. (An
	// up_command would not run: the migration changes the link in place.)
	e.write(strings.Replace(defaultRoute, "default_route = true", "default_route = true\nmss = 1300", 1))
	e.fk.V4.FailNth("Restore", 1)
	_, err := e.run(PhaseUp)
	if err == nil {
		t.Fatal("no error")
	}
	diff(t, "after the rollback", e.dump(), legacy)
	if !strings.Contains(e.record(), `"replaced"`) {
		t.Errorf("the record lost the old form:\n%s", e.record())
	}
	e.mustRun(PhaseDown)
	diff(t, "after down", e.dump(), baseline)
}

// The previous release's down of a failed restore is kept too: a down that
// cannot put the main default back says which route, and keeps the record
// for a second try.
func TestLegacyDownRestoreFailureReported(t *testing.T) {
	e := newEnv(t)
	toLegacy(e)
	e.fk.Net.FailNth("ReplaceRoute", 1) // putting the old default back
	_, err := e.run(PhaseDown)
	if err == nil || !strings.Contains(err.Error(), "ip route replace default via 198.51.100.254 dev eth1 proto 4") {
		t.Fatalf("got %v, want the failed restore named", err)
	}
	if e.record() == "" {
		t.Fatal("record dropped; the old default route is forgotten")
	}
	e.mustRun(PhaseDown)
	diff(t, "state after a second down", e.dump(), baseline)
}
