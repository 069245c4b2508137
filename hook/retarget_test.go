package hook

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gre-hook/gre-hook/hook/engine"
	"github.com/gre-hook/gre-hook/hook/fake"
	"github.com/gre-hook/gre-hook/hook/internal/fixture"
	"github.com/gre-hook/gre-hook/hook/peer"
	"github.com/gre-hook/gre-hook/hook/state"
)

var _ peer.EndpointSetter = (*fake.Net)(nil)

var pinnedConfig = fixture.Config(fixture.Site2().Without("local").Set("remote", `"site2.test"`).Set("default_route", "true"))

func TestRetargetRemote(t *testing.T) {
	e := newEnv(t)
	e.names(map[string][]string{"site2.test": {"203.0.113.1"}})
	e.write(pinnedConfig)
	e.mustRun(PhaseUp)
	before, _ := engine.LinkNamed(e.fk.Net, "gre-site2")
	adds, dels := e.fk.Net.Calls("AddLink"), e.fk.Net.Calls("DelLink")+e.fk.Net.Calls("DelLinks")
	dumpBefore := e.dump()

	var log strings.Builder
	if err := engineTo(e.sys, &log).Retarget(bg(), "eth1", "gre-site2", netip.Addr{}, netip.MustParseAddr("203.0.113.9")); err != nil {
		t.Fatal(err)
	}
	want := "gre-hook: + ip link set gre-site2 type gre local 198.51.100.1 remote 203.0.113.9  # gre-site2 on eth1, in place, was remote 203.0.113.1 (site2.test)\n"
	if log.String() != want {
		t.Errorf("log:\n%s\nwant:\n%s", log.String(), want)
	}
	after, _ := engine.LinkNamed(e.fk.Net, "gre-site2")
	if after.Index != before.Index || e.fk.Net.Calls("AddLink") != adds || e.fk.Net.Calls("DelLink")+e.fk.Net.Calls("DelLinks") != dels {
		t.Errorf("the link was re-created: index %d -> %d", before.Index, after.Index)
	}
	// Only the link's remote differs: no route follows the remote.
	wantDump := strings.NewReplacer("remote 203.0.113.1 ", "remote 203.0.113.9 ").Replace(dumpBefore)
	diff(t, "kernel after retarget", e.dump(), wantDump)

	rec, _ := e.sys.Store.Load("eth1")
	r := rec.Find("gre-site2")
	if r.Remote != netip.MustParseAddr("203.0.113.9") || r.Pin != nil || r.RemoteName != "site2.test" {
		t.Errorf("record entry: %+v pin %+v", r, r.Pin)
	}

	// Again: nothing to do, nothing logged.
	log.Reset()
	if err := engineTo(e.sys, &log).Retarget(bg(), "eth1", "gre-site2", netip.Addr{}, netip.MustParseAddr("203.0.113.9")); err != nil || log.Len() != 0 {
		t.Errorf("second retarget: %v %q", err, log.String())
	}
	// An up that resolves the name to the new address agrees.
	e.names(map[string][]string{"site2.test": {"203.0.113.9"}})
	if out := e.mustRun(PhaseUp); out != "" {
		t.Errorf("up after retarget changed things:\n%s", out)
	}
	// And down leaves the machine as before.
	e.mustRun(PhaseDown)
	diff(t, "after down", e.dump(), baseline)
}

func TestRetargetLocal(t *testing.T) {
	e := newEnv(t)
	e.names(map[string][]string{"site2.test": {"203.0.113.1"}})
	e.write(pinnedConfig)
	e.mustRun(PhaseUp)
	e.fk.Net.AddDeviceAddr("eth1", netip.MustParsePrefix("198.51.100.7/24"))
	var log strings.Builder
	if err := engineTo(e.sys, &log).Retarget(bg(), "eth1", "gre-site2", netip.MustParseAddr("198.51.100.7"), netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "ip link set gre-site2 type gre local 198.51.100.7 remote 203.0.113.1  # gre-site2 on eth1, in place, was local 198.51.100.1 remote 203.0.113.1") ||
		strings.Contains(log.String(), "pin") || strings.Count(log.String(), "\n") != 1 {
		t.Errorf("log: %s", log.String())
	}
	l, _ := engine.LinkNamed(e.fk.Net, "gre-site2")
	if l.Local != netip.MustParseAddr("198.51.100.7") || strings.Contains(e.dump(), "203.0.113.1/32") {
		t.Errorf("link %+v\n%s", l, e.dump())
	}
	rec, _ := e.sys.Store.Load("eth1")
	if r := rec.Find("gre-site2"); r.Local != netip.MustParseAddr("198.51.100.7") {
		t.Errorf("record: %+v", r)
	}
}

func TestRetargetRefuses(t *testing.T) {
	e := newEnv(t)
	e.names(map[string][]string{"site2.test": {"203.0.113.1"}})
	e.write(pinnedConfig)
	for _, c := range []struct {
		tunnel, remote, want string
	}{
		{"gre-site2", "203.0.113.9", `moving tunnel "gre-site2" on eth1: gre-hook's record does not list it as up`},
	} {
		err := engineTo(e.sys, nil).Retarget(bg(), "eth1", c.tunnel, netip.Addr{}, netip.MustParseAddr(c.remote))
		if err == nil || err.Error() != c.want {
			t.Errorf("got %v, want %s", err, c.want)
		}
	}
	e.mustRun(PhaseUp)
	err := engineTo(e.sys, nil).Retarget(bg(), "eth1", "gre-site2", netip.Addr{}, netip.MustParseAddr("2001:db8::9"))
	if err == nil || !strings.Contains(err.Error(), "endpoints are of the family it was made with") {
		t.Errorf("family change: %v", err)
	}
	// A failing change leaves the kernel and the record as they were.
	dump, rec := e.dump(), e.record()
	e.fk.Net.FailNth("SetEndpoints", 1)
	if err := engineTo(e.sys, nil).Retarget(bg(), "eth1", "gre-site2", netip.Addr{}, netip.MustParseAddr("203.0.113.9")); err == nil {
		t.Error("no error from a failing change")
	}
	diff(t, "kernel after a failed retarget", e.dump(), dump)
	diff(t, "record after a failed retarget", e.record(), rec)
}

// A renumbering that takes the underlay's last address before the new one
// comes (a PPP reconnect, a DHCP lease lost): the kernel flushes every
// route through the underlay. Nothing of gre-hook's goes with them (its
// default route is in its own table, via the tunnel), and moving the local
// is one change, whether or not a route through the underlay exists yet.
func TestRetargetAfterRenumbering(t *testing.T) {
	for _, to := range []string{"198.51.100.7/24", "100.64.0.2/24"} {
		t.Run(to, func(t *testing.T) {
			e := newEnv(t)
			e.names(map[string][]string{"site2.test": {"203.0.113.1"}})
			e.write(pinnedConfig)
			e.mustRun(PhaseUp)
			e.fk.Net.DropDeviceAddr("eth1", netip.MustParsePrefix("198.51.100.1/24"))
			e.fk.Net.AddDeviceAddr("eth1", netip.MustParsePrefix(to))
			local := netip.MustParsePrefix(to).Addr()
			var log strings.Builder
			if err := engineTo(e.sys, &log).Retarget(bg(), "eth1", "gre-site2", local, netip.Addr{}); err != nil {
				t.Fatal(err)
			}
			if strings.Count(log.String(), "\n") != 1 || !strings.Contains(log.String(), "type gre local "+local.String()) {
				t.Errorf("log: %s", log.String())
			}
			if d := e.dump(); !strings.Contains(d, "route 0.0.0.0/0 via 10.0.0.2 dev gre-site2 table 18247 metric 1 proto 176") {
				t.Errorf("kernel:\n%s", d)
			}
			// Again: nothing to do.
			log.Reset()
			if err := engineTo(e.sys, &log).Retarget(bg(), "eth1", "gre-site2", local, netip.Addr{}); err != nil || log.Len() != 0 {
				t.Errorf("again: %v %q", err, log.String())
			}
		})
	}
}

// A record of the previous release still has its pin, which would not
// follow the remote: Retarget says to run up first, and changes nothing.
func TestRetargetRefusesLegacyPin(t *testing.T) {
	e := newEnv(t)
	e.names(map[string][]string{"site2.test": {"203.0.113.1"}})
	e.write(pinnedConfig)
	e.mustRun(PhaseUp)
	rec, _ := e.sys.Store.Load("eth1")
	pin := state.Route{Dst: netip.MustParsePrefix("203.0.113.1/32"), Gw: netip.MustParseAddr("198.51.100.254"), Dev: "eth1"}
	rec.Tunnels[0].Pin = &pin
	if err := e.sys.Store.Save(rec); err != nil {
		t.Fatal(err)
	}
	dump := e.dump()
	err := engineTo(e.sys, nil).Retarget(bg(), "eth1", "gre-site2", netip.Addr{}, netip.MustParseAddr("203.0.113.9"))
	if err == nil || !strings.Contains(err.Error(), "run `gre-hook up --iface eth1` first") {
		t.Errorf("got %v", err)
	}
	diff(t, "kernel", e.dump(), dump)
}

// A tunnel moved to another remote has another peer: its record keeps no
// reply of the old one (status would show it as the new peer's, and a
// restarted watcher would take it up again), while a dead tunnel stays
// dead, since when it was, until the new peer answers.
func TestRetargetForgetsTheOldPeersReply(t *testing.T) {
	e := newEnv(t)
	e.write(fixture.Config(fixture.Site2().Set("keepalive", "{ interval = 1, retries = 3 }")))
	e.mustRun(PhaseUp)
	if err := NewEngine(e.sys).SetLiveness(bg(), "eth1", "gre-site2", false, time.Now().Add(-5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := NewEngine(e.sys).Retarget(bg(), "eth1", "gre-site2", netip.Addr{}, netip.MustParseAddr("203.0.113.9")); err != nil {
		t.Fatal(err)
	}
	rec, _ := e.sys.Store.Load("eth1")
	r := rec.Find("gre-site2")
	if r.LastReply != nil || !r.Dead || r.DeadSince == nil {
		t.Errorf("after the move: last reply %v, dead %v since %v; want no reply, still dead since before", r.LastReply, r.Dead, r.DeadSince)
	}
	var buf strings.Builder
	if _, err := statusOf(t, Request{Config: e.cfg, AllowInsecure: true}, e.sys, &buf); err != nil || !strings.Contains(buf.String(), "no reply known") {
		t.Errorf("status after the move (%v):\n%s", err, buf.String())
	}
}
