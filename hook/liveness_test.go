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
	"github.com/gre-hook/gre-hook/hook/plan"
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
	aPin   = "route 203.0.113.5/32 via 198.51.100.254 dev eth1 proto 176"
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
	if err := SetLiveness(bg(), e.sys, underlay, tunnel, alive, time.Now().Add(-7*time.Second), &e.log); err != nil {
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

// A dead peer: the tunnel's routes and default route go, the replaced
// default comes back, and the link, address and pin stay. An ifreload
// while dead changes nothing; the peer's return puts everything back and
// takes the default route over again with a new Seq.
func TestDeadWithdrawsAndAliveRestores(t *testing.T) {
	e := newWatched(t)
	e.mustOn("eth1", PhaseUp)
	upDump := e.dump()
	if !e.has(aRoute) || !e.has(aDefault) || !e.has(aPin) {
		t.Fatalf("after up:\n%s", upDump)
	}

	out := e.set("eth1", "gre-a", false)
	diff(t, "kernel after dead", sortLines(e.dump()), edit(upDump, []string{aRoute, aDefault}, origDefault))
	if !strings.Contains(out, `tunnel "gre-a" on eth1: peer 203.0.113.5 is dead, silent for 7s; withdrawing its routes`) {
		t.Errorf("log of dead:\n%s", out)
	}
	if en := e.entry("eth1", "gre-a"); !en.Dead || en.DeadSince == nil || len(en.Defaults) != 0 || len(en.Withdrawn) != 1 || len(en.Fallbacks) != 1 {
		t.Errorf("record after dead: %+v", en)
	}
	deadDump := e.dump()

	// ifreload while dead.
	if out := e.mustOn("eth1", PhaseUp); strings.Contains(out, "gre-hook: + ") {
		t.Errorf("up while dead changed something:\n%s", out)
	}
	diff(t, "kernel after up while dead", e.dump(), deadDump)
	if en := e.entry("eth1", "gre-a"); !en.Dead || len(en.Withdrawn) != 1 {
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
	en := e.entry("eth1", "gre-a")
	if en.Dead || en.DeadSince != nil || en.Seq == 0 || len(en.Replaced) != 1 || len(en.Withdrawn) != 0 || len(en.Fallbacks) != 0 {
		t.Errorf("record after alive: %+v", en)
	}
	e.mustOn("eth1", PhaseDown)
	diff(t, "kernel after down", e.dump(), e.before)
}

// A down while the peer is dead leaves the default route the tunnel had
// replaced, and gc keeps the dead tunnel without putting its routes back.
func TestDownAndGCWhileDead(t *testing.T) {
	e := newWatched(t)
	e.mustOn("eth1", PhaseUp)
	e.set("eth1", "gre-a", false)
	deadDump := e.dump()
	e.log.Reset()
	if err := gc(t, Request{Config: e.cfg, AllowInsecure: true}, e.sys); err != nil {
		t.Fatalf("gc: %v\n%s", err, e.log.String())
	}
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

// event is one step of a failover scenario, and what the kernel must
// hold after it: the default route, and which tunnels' routes ("a", "b").
type event struct{ do, dflt, routes string }

// play runs steps: "up eth1", "down eth2", "dead eth1", "alive eth2",
// "gc", "admin" (the admin sets a default route by hand), "status eth1"
// (which must see no drift there).
func (e *env) play(steps []event) {
	e.t.Helper()
	tunnel := map[string]string{"eth1": "gre-a", "eth2": "gre-b"}
	for i, s := range steps {
		verb, arg, _ := strings.Cut(s.do, " ")
		switch verb {
		case "up":
			e.mustOn(arg, PhaseUp)
		case "down":
			e.mustOn(arg, PhaseDown)
		case "dead", "alive":
			e.set(arg, tunnel[arg], verb == "alive")
		case "gc":
			if err := gc(e.t, Request{Config: e.cfg, AllowInsecure: true}, e.sys); err != nil {
				e.t.Fatalf("step %d, gc: %v", i, err)
			}
		case "admin":
			admin := plan.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("198.51.100.253"), Dev: "eth1"}
			e.fk.Net.AddForeignRoute(admin, fake.ProtoStatic)
		case "status":
			var buf strings.Builder
			if drift, err := statusOf(e.t, Request{Iface: arg, Config: e.cfg, AllowInsecure: true}, e.sys, &buf); err != nil || drift {
				e.t.Fatalf("step %d, status: drift %v, %v:\n%s", i, drift, err, buf.String())
			}
		default:
			e.t.Fatalf("step %d: unknown %q", i, s.do)
		}
		if got := e.defaultRoute(); got != s.dflt {
			e.t.Fatalf("step %d, after %s: default %q, want %q\n%s", i, s.do, got, s.dflt, e.log.String())
		}
		if got := fmt.Sprintf("%v%v", e.has(aRoute), e.has(bRoute)); got != fmt.Sprintf("%v%v", strings.Contains(s.routes, "a"), strings.Contains(s.routes, "b")) {
			e.t.Fatalf("step %d, after %s: routes of a and b %s, want %q\n%s", i, s.do, got, s.routes, e.dump())
		}
	}
}

// Two default_route tunnels and one, dying and coming back amid ups,
// downs, gc and the admin's hand: the default route is always the one the
// rule in defaults.go names, among the tunnels whose peers answer.
func TestFailoverScenarios(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []event
	}{
		{"newer dies and returns", []event{
			{"up eth1", aDefault, "a"}, {"up eth2", bDefault, "ab"},
			{"dead eth2", aDefault, "a"}, {"up eth2", aDefault, "a"}, {"status eth2", aDefault, "a"},
			{"alive eth2", bDefault, "ab"},
			// An ifreload of the older one does not take the default back.
			{"up eth1", bDefault, "ab"},
			{"down eth2", aDefault, "a"}, {"down eth1", origDefault, ""}}},
		{"newer dead, older down, newer returns", []event{
			{"up eth1", aDefault, "a"}, {"up eth2", bDefault, "ab"},
			{"dead eth2", aDefault, "a"}, {"down eth1", origDefault, ""},
			// The original default is one gre-hook replaced, not the admin's.
			{"alive eth2", bDefault, "b"}, {"down eth2", origDefault, ""}}},
		{"older dies while newer holds the default", []event{
			{"up eth1", aDefault, "a"}, {"up eth2", bDefault, "ab"},
			{"dead eth1", bDefault, "b"}, {"down eth2", origDefault, ""},
			{"alive eth1", aDefault, "a"}, {"down eth1", origDefault, ""}}},
		{"both die", []event{
			{"up eth1", aDefault, "a"}, {"up eth2", bDefault, "ab"},
			{"dead eth2", aDefault, "a"}, {"dead eth1", origDefault, ""}, {"gc", origDefault, ""},
			{"alive eth1", aDefault, "a"}, {"alive eth2", bDefault, "ab"},
			{"down eth1", bDefault, "b"}, {"down eth2", origDefault, ""}}},
		{"down while dead", []event{
			{"up eth1", aDefault, "a"}, {"dead eth1", origDefault, ""}, {"down eth1", origDefault, ""}}},
		{"admin default while dead is kept", []event{
			{"up eth1", aDefault, "a"}, {"dead eth1", origDefault, ""}, {"admin", adminDefault, ""},
			{"alive eth1", adminDefault, "a"}, {"up eth1", adminDefault, "a"}, {"status eth1", adminDefault, "a"},
			{"down eth1", adminDefault, ""}}},
		{"admin default, then the peer dies", []event{
			{"up eth1", aDefault, "a"}, {"admin", adminDefault, "a"}, {"dead eth1", adminDefault, ""},
			{"alive eth1", adminDefault, "a"}, {"down eth1", adminDefault, ""}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newWatched(t)
			e.play(tc.steps)
		})
	}
}

// The newer tunnel, back from the dead, holds the default route with the
// highest Seq, and nobody is displaced.
func TestAliveTakesNewSeq(t *testing.T) {
	e := newWatched(t)
	e.play([]event{{"up eth1", aDefault, "a"}, {"up eth2", bDefault, "ab"}, {"dead eth2", aDefault, "a"}, {"alive eth2", bDefault, "ab"}})
	if a, b := e.entry("eth1", "gre-a"), e.entry("eth2", "gre-b"); b.Seq <= a.Seq || a.Displaced || b.Displaced {
		t.Errorf("seq %d (displaced %v), older gre-a's %d (displaced %v)", b.Seq, b.Displaced, a.Seq, a.Displaced)
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
	if err := SetLiveness(bg(), e.sys, "eth1", "gre-a", false, clock.Add(-8*time.Second), &e.log); err != nil {
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
	e.play([]event{{"up eth1", aDefault, "a"}, {"dead eth1", origDefault, ""}})
	e.write(strings.Replace(watchedTwo, "keepalive = { interval = 2, retries = 3 }\n", "", 1))
	e.play([]event{{"up eth1", aDefault, "a"}, {"status eth1", aDefault, "a"}})
	if en := e.entry("eth1", "gre-a"); en.Dead {
		t.Errorf("still dead: %+v", en)
	}
}

// Watched lists the tunnels with keepalive that records list, as the
// kernel has them, with the record's liveness.
func TestWatched(t *testing.T) {
	e := newWatched(t)
	if ws, err := Watched(e.sys, e.cfg); err != nil || len(ws) != 0 {
		t.Fatalf("nothing up: %v %v", ws, err)
	}
	e.mustOn("eth1", PhaseUp)
	e.mustOn("eth2", PhaseUp)
	e.set("eth2", "gre-b", false)
	ws, err := Watched(e.sys, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 2 {
		t.Fatalf("got %+v", ws)
	}
	a, b := ws[0], ws[1]
	if a.Underlay != "eth1" || a.Tunnel != "gre-a" || a.Local != netip.MustParseAddr("198.51.100.1") || a.Remote != netip.MustParseAddr("203.0.113.5") ||
		a.Interval != 2*time.Second || a.Retries != 3 || a.Dead {
		t.Errorf("gre-a: %+v", a)
	}
	if b.Tunnel != "gre-b" || b.Local != netip.MustParseAddr("192.0.2.1") || b.Interval != time.Second || b.Retries != 5 || !b.Dead || b.DeadSince.IsZero() || b.LastReply.IsZero() {
		t.Errorf("gre-b: %+v", b)
	}
	// A tunnel without keepalive is not watched.
	e.write(strings.Replace(watchedTwo, "keepalive = { interval = 2, retries = 3 }\n", "", 1))
	if ws, err := Watched(e.sys, e.cfg); err != nil || len(ws) != 1 || ws[0].Tunnel != "gre-b" {
		t.Errorf("after keepalive removed from gre-a: %+v %v", ws, err)
	}
}

// SetLiveness leaves a tunnel alone that no record lists (ifdown came
// first) and refuses one its config no longer has.
func TestSetLivenessGoneOrUnconfigured(t *testing.T) {
	e := newWatched(t)
	if err := SetLiveness(bg(), e.sys, "eth1", "gre-a", false, time.Time{}, &e.log); err != nil {
		t.Fatalf("no record: %v", err)
	}
	if e.record() != "" {
		t.Fatalf("SetLiveness wrote a record:\n%s", e.record())
	}
	e.mustOn("eth1", PhaseUp)
	upDump := e.dump()
	if err := os.WriteFile(e.cfg, []byte(""), 0o644); err != nil {
		t.Fatal(err)
	}
	err := SetLiveness(bg(), e.sys, "eth1", "gre-a", false, time.Time{}, &e.log)
	if err == nil || !strings.Contains(err.Error(), "no longer has it") {
		t.Fatalf("unconfigured: %v", err)
	}
	diff(t, "kernel", e.dump(), upDump)
	if en := e.entry("eth1", "gre-a"); en.Dead {
		t.Errorf("record marked dead: %+v", en)
	}
}

// A SetLiveness whose kernel change fails must not leave the record
// agreeing with it: the watcher tries again an interval later, and that
// call must then make the change, not find the record already dead (or
// alive) and return without touching the kernel.
func TestSetLivenessFailureIsRetried(t *testing.T) {
	e := newWatched(t)
	e.mustOn("eth1", PhaseUp)
	upDump := e.dump()

	e.fk.Net.FailNth("ReplaceRoute", 1)
	e.log.Reset()
	if err := SetLiveness(bg(), e.sys, "eth1", "gre-a", false, time.Time{}, &e.log); err == nil {
		t.Fatalf("dead with a failing route change: no error\n%s", e.log.String())
	}
	diff(t, "kernel after a failed dead", e.dump(), upDump)
	if en := e.entry("eth1", "gre-a"); en.Dead {
		t.Errorf("record says dead, but its routes are still in the kernel: %+v", en)
	}
	e.set("eth1", "gre-a", false) // the watcher's retry
	if e.has(aRoute) || e.has(aDefault) || !e.has(origDefault) {
		t.Fatalf("the retry of dead left the routes:\n%s", e.dump())
	}

	e.fk.Net.FailNth("ReplaceRoute", 1)
	e.log.Reset()
	if err := SetLiveness(bg(), e.sys, "eth1", "gre-a", true, time.Time{}, &e.log); err == nil {
		t.Fatalf("alive with a failing route change: no error\n%s", e.log.String())
	}
	if en := e.entry("eth1", "gre-a"); !en.Dead {
		t.Errorf("record says alive, but its routes are not back: %+v\n%s", en, e.dump())
	}
	e.set("eth1", "gre-a", true)
	diff(t, "kernel after the retry of alive", e.dump(), upDump)
}
