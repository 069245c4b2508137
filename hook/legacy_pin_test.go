package hook

import (
	"net/netip"
	"testing"

	"github.com/gre-hook/gre-hook/hook/engine"
	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/rtnl"
	"github.com/gre-hook/gre-hook/hook/state"
)

// Two underlays of the previous release, gre-b's main default in
// force (it took over last). Migrating eth1 alone deletes gre-a's pin while
// the main default is still gre-b's: gre-a's marked packets then route
// into gre-b.
func TestLegacyPinStaysWhileMainDefaultIsAnotherTunnels(t *testing.T) {
	e := newTwoUnderlays(t)
	e.mustOn("eth1", PhaseUp)
	e.mustOn("eth2", PhaseUp)
	n := e.fk.Net
	for _, l := range []string{"gre-a", "gre-b"} {
		n.Mutate(l, func(l *rtnl.Link) { l.FwMark = 0 })
	}
	for _, r := range plan.DefaultPolicy.Rules(4) {
		n.DelRule(engine.KernelRule(r))
	}
	n.RemoveRoute(netip.MustParsePrefix("0.0.0.0/0"))
	n.RemoveRoute(netip.MustParsePrefix("0.0.0.0/0"))
	n.RemoveRoute(netip.MustParsePrefix("0.0.0.0/0"))
	aDef := state.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("10.9.0.1"), Dev: "gre-a"}
	bDef := state.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("10.8.0.1"), Dev: "gre-b"}
	pinA := state.Route{Dst: netip.MustParsePrefix("203.0.113.5/32"), Gw: netip.MustParseAddr("198.51.100.254"), Dev: "eth1"}
	n.AddForeignRoute(bDef.Plan(), plan.RouteProtocol)
	n.AddForeignRoute(pinA.Plan(), plan.RouteProtocol)
	for u, f := range map[string]func(*state.Tunnel){
		"eth1": func(t *state.Tunnel) {
			p := pinA
			t.Defaults, t.Pin, t.Replaced, t.Seq = []state.Route{aDef}, &p, []state.Route{legacyOrig}, 1
		},
		"eth2": func(t *state.Tunnel) { t.Defaults, t.Seq = []state.Route{bDef}, 2 },
	} {
		rec, err := e.sys.Store.Load(u)
		if err != nil {
			t.Fatal(err)
		}
		f(&rec.Tunnels[0])
		if err := e.sys.Store.Save(rec); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("legacy kernel:\n%s", e.dump())
	if got := e.via("203.0.113.5", 0); got != "eth1" {
		t.Fatalf("legacy set-up wrong: gre-a's remote via %q", got)
	}
	out := e.mustOn("eth1", PhaseUp)
	t.Logf("up eth1:\n%s", out)
	if got := e.via("203.0.113.5", mark); got != "eth1" {
		t.Errorf("after migrating eth1 only, gre-a's own (marked) packets to its remote leave by %q, not eth1\n%s", got, e.dump())
	}
	out = e.mustOn("eth2", PhaseUp)
	t.Logf("up eth2:\n%s", out)
	if e.mainDefault() != origDefault {
		t.Errorf("main default after migrating eth2: %q", e.mainDefault())
	}
}
