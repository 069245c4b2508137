package hook

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gre-hook/gre-hook/hook/fake"
	"github.com/gre-hook/gre-hook/hook/peer"
	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/rtnl"
	"github.com/gre-hook/gre-hook/hook/state"
)

// watchedTwo is twoDefaults with keepalives and a route on each tunnel.
const watchedTwo = `
[[tunnel]]
name = "gre-a"
underlay = "eth1"
remote = "203.0.113.5"
address = ["10.9.0.2/30"]
default_route = true
mss = "off"
keepalive = { interval = 2, retries = 3 }

[[tunnel.route]]
to = "192.168.50.0/24"

[[tunnel]]
name = "gre-b"
underlay = "eth2"
remote = "192.0.2.9"
address = ["10.8.0.2/30"]
default_route = true
mss = "off"
keepalive = { interval = 1, retries = 5 }

[[tunnel.route]]
to = "192.168.60.0/24"
`

const (
	aRoute = "route 192.168.50.0/24 via 10.9.0.1 dev gre-a proto 176"
	bRoute = "route 192.168.60.0/24 via 10.8.0.1 dev gre-b proto 176"
)

func newWatched(t *testing.T) *env {
	e := newTwoUnderlays(t)
	e.write(watchedTwo)
	e.before = e.dump()
	return e
}

// set calls SetLiveness and returns what it logged.
func (e *env) set(underlay, tunnel string, alive bool) string {
	e.t.Helper()
	e.log.Reset()
	if err := engineTo(e.sys, &e.log).SetLiveness(bg(), underlay, tunnel, alive, time.Now().Add(-7*time.Second)); err != nil {
		e.t.Fatalf("SetLiveness(%s, %s, %v): %v\n%s", underlay, tunnel, alive, err, e.log.String())
	}
	return e.log.String()
}

func (e *env) has(line string) bool {
	for _, l := range strings.Split(e.dump(), "\n") {
		if l == line {
			return true
		}
	}
	return false
}

func (e *env) entry(underlay, tunnel string) *state.Tunnel {
	e.t.Helper()
	rec, err := e.sys.Store.Load(underlay)
	if err != nil {
		e.t.Fatal(err)
	}
	return rec.Find(tunnel)
}

// edit is dump, sorted, with the lines in drop removed and add added.
func edit(dump string, drop []string, add ...string) string {
	gone := map[string]bool{}
	for _, d := range drop {
		gone[d] = true
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSuffix(dump, "\n"), "\n") {
		if !gone[l] {
			out = append(out, l)
		}
	}
	out = append(out, add...)
	return sortLines(strings.Join(out, "\n") + "\n")
}

func sortLines(s string) string {
	ls := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	for i := 1; i < len(ls); i++ {
		for j := i; j > 0 && ls[j] < ls[j-1]; j-- {
			ls[j], ls[j-1] = ls[j-1], ls[j]
		}
	}
	return strings.Join(ls, "\n") + "\n"
}

// A dead peer: the tunnel's routes and its default route in gre-hook's
// table go, and nothing else changes: the link, its address, the rules and
// the main table's default stay. An ifreload while dead changes nothing;
// the peer's return puts back exactly what went.
func TestDeadWithdrawsAndAliveRestores(t *testing.T) {
	e := newWatched(t)
	e.mustOn("eth1", PhaseUp)
	upDump := e.dump()
	if !e.has(aRoute) || !e.has(aDefault) || !e.has(origDefault) || e.rules() != ourRules {
		t.Fatalf("after up:\n%s", upDump)
	}

	out := e.set("eth1", "gre-a", false)
	diff(t, "kernel after dead", sortLines(e.dump()), edit(upDump, []string{aRoute, aDefault}))
	if !strings.Contains(out, `tunnel "gre-a" on eth1: peer 203.0.113.5 is dead, silent for 7s; withdrawing its routes`) {
		t.Errorf("log of dead:\n%s", out)
	}
	if en := e.entry("eth1", "gre-a"); !en.Dead || en.DeadSince == nil || len(en.Defaults) != 1 || len(en.Withdrawn) != 2 {
		t.Errorf("record after dead: %+v", en)
	}
	if got := e.via("8.8.8.8", 0); got != "eth1" {
		t.Errorf("after dead, traffic goes out of %q, not by the main default", got)
	}
	deadDump := e.dump()

	// ifreload while dead.
	if out := e.mustOn("eth1", PhaseUp); strings.Contains(out, "gre-hook: + ") {
		t.Errorf("up while dead changed something:\n%s", out)
	}
	diff(t, "kernel after up while dead", e.dump(), deadDump)
	if en := e.entry("eth1", "gre-a"); !en.Dead || len(en.Withdrawn) != 2 {
		t.Errorf("up while dead lost the liveness: %+v", en)
	}
	// A second "dead" is a no-op.
	if out := e.set("eth1", "gre-a", false); out != "" {
		t.Errorf("dead twice logged:\n%s", out)
	}
	var buf strings.Builder
	if drift, err := statusOf(e.t, Request{Iface: "eth1", Config: e.cfg, AllowInsecure: true}, e.sys, &buf); err != nil || drift {
		t.Errorf("status while dead: drift %v, %v:\n%s", drift, err, buf.String())
	}

	out = e.set("eth1", "gre-a", true)
	diff(t, "kernel after alive", e.dump(), upDump)
	if !strings.Contains(out, "answers again after 7s; putting its routes back") {
		t.Errorf("log of alive:\n%s", out)
	}
	if en := e.entry("eth1", "gre-a"); en.Dead || en.DeadSince != nil || len(en.Withdrawn) != 0 || en.LastReply == nil {
		t.Errorf("record after alive: %+v", en)
	}
	if out := e.set("eth1", "gre-a", true); out != "" {
		t.Errorf("alive twice logged:\n%s", out)
	}
	e.mustOn("eth1", PhaseDown)
	diff(t, "kernel after down", e.dump(), e.before)
}

// A down while the peer is dead takes the tunnel and the rules, and gc
// keeps the dead tunnel without putting its routes back.
func TestDownAndGCWhileDead(t *testing.T) {
	e := newWatched(t)
	e.mustOn("eth1", PhaseUp)
	e.set("eth1", "gre-a", false)
	deadDump := e.dump()
	e.mustGC()
	diff(t, "kernel after gc while dead", e.dump(), deadDump)
	if en := e.entry("eth1", "gre-a"); en == nil || !en.Dead {
		t.Fatalf("gc lost the dead tunnel's record: %+v", en)
	}
	out := e.mustOn("eth1", PhaseDown)
	if got := e.defaultRoute(); got != origDefault {
		t.Fatalf("after down while dead: %q\n%s", got, out)
	}
	diff(t, "kernel after down while dead", e.dump(), e.before)
}

const adminDefault = "route 0.0.0.0/0 via 198.51.100.253 dev eth1 proto 4"

// event is one step of a failover scenario, and what the kernel must do
// after it: the device that traffic to the internet leaves by, and which
// tunnels' routes ("a", "b") it holds.
type event struct{ do, via, routes string }

// play runs steps: "up eth1", "down eth2", "dead eth1", "alive eth2",
// "gc", "admin" (the admin sets the main default by hand), "status eth1"
// (which must see no drift there). After each it checks the main table's
// default byte for byte (the original, or the admin's after "admin"),
// that gre-hook's rules exist iff a default_route tunnel is up, and that
// the tunnels' own packets leave by the main table.
func (e *env) play(steps []event) {
	e.t.Helper()
	tunnel := map[string]string{"eth1": "gre-a", "eth2": "gre-b"}
	main := origDefault
	up := map[string]bool{}
	for i, s := range steps {
		verb, arg, _ := strings.Cut(s.do, " ")
		switch verb {
		case "up":
			e.mustOn(arg, PhaseUp)
			up[arg] = true
		case "down":
			e.mustOn(arg, PhaseDown)
			up[arg] = false
		case "dead", "alive":
			e.set(arg, tunnel[arg], verb == "alive")
		case "gc":
			if err := gc(e.t, Request{Config: e.cfg, AllowInsecure: true}, e.sys); err != nil {
				e.t.Fatalf("step %d, gc: %v", i, err)
			}
		case "admin":
			admin := plan.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("198.51.100.253"), Dev: "eth1"}
			e.fk.Net.AddForeignRoute(admin, fake.ProtoStatic)
			main = adminDefault
		case "status":
			var buf strings.Builder
			if drift, err := statusOf(e.t, Request{Iface: arg, Config: e.cfg, AllowInsecure: true}, e.sys, &buf); err != nil || drift {
				e.t.Fatalf("step %d, status: drift %v, %v:\n%s", i, drift, err, buf.String())
			}
		default:
			e.t.Fatalf("step %d: unknown %q", i, s.do)
		}
		if got := e.mainDefault(); got != main {
			e.t.Fatalf("step %d, after %s: main default %q, want %q\n%s", i, s.do, got, main, e.log.String())
		}
		if got := e.via("8.8.8.8", 0); got != s.via {
			e.t.Fatalf("step %d, after %s: traffic leaves by %q, want %q\n%s", i, s.do, got, s.via, e.dump())
		}
		for _, remote := range []string{"203.0.113.5", "192.0.2.9"} {
			if got := e.via(remote, mark); strings.HasPrefix(got, "gre-") {
				e.t.Fatalf("step %d, after %s: the outer packets to %s go into %s", i, s.do, remote, got)
			}
		}
		if want := up["eth1"] || up["eth2"]; (e.rules() == ourRules) != want || (!want && e.rules() != "") {
			e.t.Fatalf("step %d, after %s: rules %q, want them: %v", i, s.do, e.rules(), want)
		}
		if got := fmt.Sprintf("%v%v", e.has(aRoute), e.has(bRoute)); got != fmt.Sprintf("%v%v", strings.Contains(s.routes, "a"), strings.Contains(s.routes, "b")) {
			e.t.Fatalf("step %d, after %s: routes of a and b %s, want %q\n%s", i, s.do, got, s.routes, e.dump())
		}
	}
}

// Two default_route tunnels, dying and coming back amid ups, downs, gc
// and the admin's hand: traffic takes the first tunnel of the config
// whose peer answers, else the main table's default, which nothing
// touches.
func TestFailoverScenarios(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []event
	}{
		{"second dies and returns", []event{
			{"up eth1", "gre-a", "a"}, {"up eth2", "gre-a", "ab"},
			{"dead eth2", "gre-a", "a"}, {"up eth2", "gre-a", "a"}, {"status eth2", "gre-a", "a"},
			{"alive eth2", "gre-a", "ab"}, {"up eth1", "gre-a", "ab"},
			{"down eth2", "gre-a", "a"}, {"down eth1", "eth1", ""}}},
		{"first dies: the second carries, then the first again", []event{
			{"up eth1", "gre-a", "a"}, {"up eth2", "gre-a", "ab"},
			{"dead eth1", "gre-b", "b"}, {"status eth1", "gre-b", "b"},
			{"alive eth1", "gre-a", "ab"}, {"down eth1", "gre-b", "b"}, {"down eth2", "eth1", ""}}},
		{"second dead, first down, second returns", []event{
			{"up eth1", "gre-a", "a"}, {"up eth2", "gre-a", "ab"},
			{"dead eth2", "gre-a", "a"}, {"down eth1", "eth1", ""},
			{"alive eth2", "gre-b", "b"}, {"down eth2", "eth1", ""}}},
		{"both die", []event{
			{"up eth1", "gre-a", "a"}, {"up eth2", "gre-a", "ab"},
			{"dead eth2", "gre-a", "a"}, {"dead eth1", "eth1", ""}, {"gc", "eth1", ""},
			{"alive eth1", "gre-a", "a"}, {"alive eth2", "gre-a", "ab"},
			{"down eth1", "gre-b", "b"}, {"down eth2", "eth1", ""}}},
		{"down while dead", []event{
			{"up eth1", "gre-a", "a"}, {"dead eth1", "eth1", ""}, {"down eth1", "eth1", ""}}},
		{"admin's main default while dead", []event{
			{"up eth1", "gre-a", "a"}, {"dead eth1", "eth1", ""}, {"admin", "eth1", ""},
			{"alive eth1", "gre-a", "a"}, {"up eth1", "gre-a", "a"}, {"status eth1", "gre-a", "a"},
			{"down eth1", "eth1", ""}}},
		{"admin's main default, then the peer dies", []event{
			{"up eth1", "gre-a", "a"}, {"admin", "gre-a", "a"}, {"dead eth1", "eth1", ""},
			{"alive eth1", "gre-a", "a"}, {"down eth1", "eth1", ""}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newWatched(t)
			e.play(tc.steps)
		})
	}
}

// Status shows each watched tunnel dead or alive with the age of the
// last reply, from the record and the watcher's liveness file.
func TestStatusLiveness(t *testing.T) {
	e := newWatched(t)
	e.mustOn("eth1", PhaseUp)
	e.mustOn("eth2", PhaseUp)
	clock := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	now = func() time.Time { return clock }
	defer func() { now = time.Now }()
	var buf strings.Builder
	if _, err := statusOf(e.t, Request{Config: e.cfg, AllowInsecure: true}, e.sys, &buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "gre-a on eth1: up\n  keepalive: alive, no reply known (is gre-hook watch running?)\n") {
		t.Errorf("status before the watcher:\n%s", buf.String())
	}
	if err := engineTo(e.sys, &e.log).SetLiveness(bg(), "eth1", "gre-a", false, clock.Add(-8*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := state.WriteLiveness(e.sys.Store.Dir, []state.LivenessEntry{
		{Underlay: "eth2", Tunnel: "gre-b", Remote: netip.MustParseAddr("192.0.2.9"), Alive: true, LastReply: clock.Add(-1500 * time.Millisecond)},
	}); err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	drift, err := statusOf(e.t, Request{Config: e.cfg, AllowInsecure: true}, e.sys, &buf)
	if err != nil || drift {
		t.Fatalf("status: drift %v, %v\n%s", drift, err, buf.String())
	}
	for _, want := range []string{
		"gre-a on eth1: up\n  keepalive: dead since ",
		", last reply 8s ago\n",
		"gre-b on eth2: up\n  keepalive: alive, last reply 1.5s ago\n",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, buf.String())
		}
	}
	buf.Reset()
	if _, err := jsonStatusOf(e.t, Request{Config: e.cfg, AllowInsecure: true}, e.sys, &buf); err != nil {
		t.Fatal(err)
	}
	var report []TunnelStatus
	if err := json.Unmarshal([]byte(buf.String()), &report); err != nil {
		t.Fatal(err)
	}
	if len(report) != 2 || report[0].Keepalive == nil || report[0].Keepalive.Alive || report[0].Keepalive.DeadSince == nil ||
		report[0].Keepalive.LastReplyAge == nil || *report[0].Keepalive.LastReplyAge != 8 ||
		report[1].Keepalive == nil || !report[1].Keepalive.Alive || *report[1].Keepalive.LastReplyAge != 1.5 {
		t.Errorf("status --json:\n%s", buf.String())
	}
}

// A dead tunnel whose routes are in the kernel after all (an older
// gre-hook brought them back) is not called drift, and the next up
// withdraws them again.
func TestUpWithdrawsRoutesOfDeadTunnel(t *testing.T) {
	e := newWatched(t)
	e.mustOn("eth1", PhaseUp)
	e.set("eth1", "gre-a", false)
	deadDump := e.dump()
	e.fk.Net.AddForeignRoute(plan.Route{Dst: netip.MustParsePrefix("192.168.50.0/24"), Gw: netip.MustParseAddr("10.9.0.1"), Dev: "gre-a"}, plan.RouteProtocol)
	e.mustOn("eth1", PhaseUp)
	diff(t, "kernel after up", e.dump(), deadDump)
}

// A dead tunnel whose keepalive is taken out of the config comes back with
// the next up: no watcher would ever find it alive.
func TestKeepaliveRemovedWhileDead(t *testing.T) {
	e := newWatched(t)
	e.play([]event{{"up eth1", "gre-a", "a"}, {"dead eth1", "eth1", ""}})
	e.write(strings.Replace(watchedTwo, "keepalive = { interval = 2, retries = 3 }\n", "", 1))
	e.play([]event{{"up eth1", "gre-a", "a"}, {"status eth1", "gre-a", "a"}})
	if en := e.entry("eth1", "gre-a"); en.Dead {
		t.Errorf("still dead: %+v", en)
	}
}

// Watched lists the tunnels with keepalive that records list, as the
// kernel has them, with the record's liveness.
func TestWatched(t *testing.T) {
	e := newWatched(t)
	if ws, err := watchedOf(e.sys, e.cfg); err != nil || len(ws) != 0 {
		t.Fatalf("nothing up: %v %v", ws, err)
	}
	e.mustOn("eth1", PhaseUp)
	e.mustOn("eth2", PhaseUp)
	e.set("eth2", "gre-b", false)
	ws, err := watchedOf(e.sys, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 2 {
		t.Fatalf("got %+v", ws)
	}
	a, b := ws[0], ws[1]
	if a.Underlay != "eth1" || a.Tunnel != "gre-a" || a.Local != netip.MustParseAddr("198.51.100.1") || a.Remote != netip.MustParseAddr("203.0.113.5") ||
		a.Interval != 2*time.Second || a.Retries != 3 || !a.Alive {
		t.Errorf("gre-a: %+v", a)
	}
	if b.Tunnel != "gre-b" || b.Local != netip.MustParseAddr("192.0.2.1") || b.Interval != time.Second || b.Retries != 5 || b.Alive || b.DeadSince.IsZero() || b.LastReply.IsZero() {
		t.Errorf("gre-b: %+v", b)
	}
	// A tunnel without keepalive is not watched.
	e.write(strings.Replace(watchedTwo, "keepalive = { interval = 2, retries = 3 }\n", "", 1))
	if ws, err := watchedOf(e.sys, e.cfg); err != nil || len(ws) != 1 || ws[0].Tunnel != "gre-b" {
		t.Errorf("after keepalive removed from gre-a: %+v %v", ws, err)
	}
}

// SetLiveness leaves a tunnel alone that no record lists (ifdown came
// first), and reads no config: an emptied or broken one blocks nothing.
func TestSetLivenessGoneOrUnconfigured(t *testing.T) {
	e := newWatched(t)
	if err := engineTo(e.sys, &e.log).SetLiveness(bg(), "eth1", "gre-a", false, time.Time{}); err != nil {
		t.Fatalf("no record: %v", err)
	}
	if e.record() != "" {
		t.Fatalf("SetLiveness wrote a record:\n%s", e.record())
	}
	e.mustOn("eth1", PhaseUp)
	upDump := e.dump()
	for _, text := range []string{"", "[[tunnel]\nname = "} {
		if err := os.WriteFile(e.cfg, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		e.set("eth1", "gre-a", false)
		diff(t, "kernel after dead", sortLines(e.dump()), edit(upDump, []string{aRoute, aDefault}))
		e.set("eth1", "gre-a", true)
		diff(t, "kernel after alive", e.dump(), upDump)
	}
}

// A failover reads nothing but the record: not a pending edit of the
// config (a new MTU, a new tunnel, another route), and the state of the
// underlay does not matter (down, without its address, or gone).
func TestFailoverIsNarrow(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(e *env)
	}{
		{"pending config edit", func(e *env) {
			e.write(strings.Replace(watchedTwo, `to = "192.168.50.0/24"`, "to = \"192.168.51.0/24\"", 1) + `
[[tunnel]]
name = "gre-new"
underlay = "eth1"
remote = "203.0.113.77"
mtu = 1300
`)
		}},
		{"underlay down", func(e *env) { e.fk.Net.Mutate("eth1", func(l *rtnl.Link) { l.Up = false }) }},
		{"underlay without its address", func(e *env) { e.fk.Net.DropDeviceAddr("eth1", netip.MustParsePrefix("198.51.100.1/24")) }},
		{"underlay gone", func(e *env) {
			if err := e.fk.Net.DelLink("eth1"); err != nil {
				e.t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newWatched(t)
			e.mustOn("eth1", PhaseUp)
			e.mustOn("eth2", PhaseUp)
			tc.break_(e)
			before := e.dump()
			links, addrs := e.fk.Net.Calls("AddLink")+e.fk.Net.Calls("SetMTU"), e.fk.Net.Calls("AddAddr")
			e.set("eth1", "gre-a", false)
			diff(t, "kernel after dead", sortLines(e.dump()), edit(before, []string{aRoute, aDefault}))
			if got := e.via("8.8.8.8", 0); got != "gre-b" {
				t.Errorf("after dead, traffic leaves by %q", got)
			}
			e.set("eth1", "gre-a", true)
			diff(t, "kernel after alive", e.dump(), before)
			if e.fk.Net.Calls("AddLink")+e.fk.Net.Calls("SetMTU") != links || e.fk.Net.Calls("AddAddr") != addrs {
				t.Errorf("the failover changed links or addresses")
			}
		})
	}
}

// A failover cut short (the record says dead, or alive with routes still
// to put back, but the kernel was not changed yet: a crash, a failing
// change) is repaired by SetLiveness with the record's liveness, which the
// watcher calls when Watched says Sync; a failing change is an error, and
// the record keeps saying what is due.
func TestSetLivenessFailureIsRetried(t *testing.T) {
	e := newWatched(t)
	e.mustOn("eth1", PhaseUp)
	upDump := e.dump()
	sync := func() bool {
		ws, err := watchedOf(e.sys, e.cfg)
		if err != nil || len(ws) != 1 {
			t.Fatalf("watched: %+v %v", ws, err)
		}
		return ws[0].Sync
	}
	if sync() {
		t.Error("sync wanted right after up")
	}

	e.fk.Net.FailNth("DelRoute", 1)
	e.log.Reset()
	if err := engineTo(e.sys, &e.log).SetLiveness(bg(), "eth1", "gre-a", false, time.Time{}); err == nil {
		t.Fatalf("dead with a failing route change: no error\n%s", e.log.String())
	}
	if en := e.entry("eth1", "gre-a"); !en.Dead || len(en.Withdrawn) != 2 || !sync() {
		t.Errorf("record after a failed dead: %+v", en)
	}
	e.set("eth1", "gre-a", false) // the watcher's retry
	if e.has(aRoute) || e.has(aDefault) || !e.has(origDefault) {
		t.Fatalf("the retry of dead left the routes:\n%s", e.dump())
	}

	e.fk.Net.FailNth("ReplaceRoute", 1)
	e.log.Reset()
	if err := engineTo(e.sys, &e.log).SetLiveness(bg(), "eth1", "gre-a", true, time.Time{}); err == nil {
		t.Fatalf("alive with a failing route change: no error\n%s", e.log.String())
	}
	if en := e.entry("eth1", "gre-a"); en.Dead || len(en.Withdrawn) != 2 || !sync() {
		t.Errorf("record after a failed alive: %+v\n%s", en, e.dump())
	}
	e.set("eth1", "gre-a", true)
	diff(t, "kernel after the retry of alive", e.dump(), upDump)
	if sync() {
		t.Error("sync still wanted")
	}

	// A crash between the record and the kernel: the record says dead,
	// the kernel still has the routes. The watcher's call at start repairs it.
	rec, _ := e.sys.Store.Load("eth1")
	en := rec.Find("gre-a")
	now := time.Now()
	en.Dead, en.DeadSince, en.Withdrawn = true, &now, peer.Withdrawable(en)
	if err := e.sys.Store.Save(rec); err != nil {
		t.Fatal(err)
	}
	if !sync() {
		t.Error("no sync wanted after a crash")
	}
	if out := e.set("eth1", "gre-a", false); out != "" {
		t.Errorf("the repair logged a new death:\n%s", out)
	}
	diff(t, "kernel after the repair", sortLines(e.dump()), edit(upDump, []string{aRoute, aDefault}))
}

// Withdrawing a dead tunnel's default says so when it leaves the router
// with no default route at all, and is quiet while the main table has one.
func TestDeadWithNoDefaultLeftWarns(t *testing.T) {
	e := newWatched(t)
	e.mustOn("eth1", PhaseUp)
	if out := e.set("eth1", "gre-a", false); strings.Contains(out, "no IPv4 default route") {
		t.Errorf("warned with the main default in place:\n%s", out)
	}
	e.set("eth1", "gre-a", true)
	e.fk.Net.RemoveRoute(netip.MustParsePrefix("0.0.0.0/0"))
	if e.has(origDefault) {
		t.Fatalf("the main default is still there:\n%s", e.dump())
	}
	out := e.set("eth1", "gre-a", false)
	if want := "gre-hook: warning: with the dead tunnel's default route withdrawn, this router has no IPv4 default route: " +
		"the main table has none, and no other default_route tunnel is alive\n"; !strings.Contains(out, want) {
		t.Errorf("log of dead with no default left:\n%s\nwant the line\n%s", out, want)
	}
}
