package hook

import (
	"context"
	"errors"
	"math/rand"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/gre-hook/gre-hook/hook/fake"
	"github.com/gre-hook/gre-hook/hook/plan"
)

// twoDefaults has a default_route tunnel on each of two underlays. B's
// remote is on eth2's own subnet, so its pin does not go through A.
const twoDefaults = `
[[tunnel]]
name = "gre-a"
underlay = "eth1"
remote = "203.0.113.5"
address = ["10.9.0.2/30"]
default_route = true
mss = "off"

[[tunnel]]
name = "gre-b"
underlay = "eth2"
remote = "192.0.2.9"
address = ["10.8.0.2/30"]
default_route = true
mss = "off"
`

func newTwoUnderlays(t *testing.T) *env {
	e := newEnv(t)
	e.fk.Net.AddDevice("eth2", 1500)
	e.fk.Net.AddDeviceAddr("eth2", netip.MustParsePrefix("192.0.2.1/24"))
	e.write(twoDefaults)
	e.before = e.dump()
	return e
}

// on runs a phase for an underlay other than eth1, or with other settings.
func (e *env) on(iface string, phase Phase, edit ...func(*Request)) (string, error) {
	e.t.Helper()
	e.log.Reset()
	req := e.req(phase)
	req.Iface = iface
	for _, f := range edit {
		f(&req)
	}
	err := run(req, e.sys)
	return e.log.String(), err
}

func (e *env) mustOn(iface string, phase Phase, edit ...func(*Request)) string {
	e.t.Helper()
	out, err := e.on(iface, phase, edit...)
	if err != nil {
		e.t.Fatalf("%s %s: %v\n%s", iface, phase, err, out)
	}
	return out
}

// defaultRoute returns the fake kernel's IPv4 default route lines, of
// every table.
func (e *env) defaultRoute() string {
	var out []string
	for _, l := range strings.Split(e.dump(), "\n") {
		if strings.HasPrefix(l, "route 0.0.0.0/0 ") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// mainDefault is the main table's IPv4 default route lines.
func (e *env) mainDefault() string {
	var out []string
	for _, l := range strings.Split(e.defaultRoute(), "\n") {
		if l != "" && !strings.Contains(l, " table ") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// rules is the fake kernel's rule lines.
func (e *env) rules() string {
	var out []string
	for _, l := range strings.Split(e.dump(), "\n") {
		if strings.HasPrefix(l, "rule ") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// via is the device the kernel sends a packet to dst with fwmark mark
// out of ("" for no route).
func (e *env) via(dst string, mark uint32) string {
	r, ok := e.fk.Net.RouteGet(netip.MustParseAddr(dst), mark)
	if !ok {
		return ""
	}
	return r.Dev
}

const (
	origDefault = "route 0.0.0.0/0 via 198.51.100.254 dev eth1 proto 4"
	aDefault    = "route 0.0.0.0/0 via 10.9.0.1 dev gre-a table 18247 metric 1 proto 176"
	bDefault    = "route 0.0.0.0/0 via 10.8.0.1 dev gre-b table 18247 metric 2 proto 176"
	ourRules    = "rule 4 32700: lookup main suppress_prefixlength 0 proto 176\nrule 4 32701: not fwmark 0x4747 lookup 18247 proto 176"
	mark        = 0x4747
)

// Two default_route tunnels on two underlays, taken down in either order:
// two routes in gre-hook's table, by metric in config order; the main
// table's default untouched throughout; the rules there while one is up.
func TestTwoDefaultRouteTunnels(t *testing.T) {
	for _, order := range [][]string{{"eth2", "eth1"}, {"eth1", "eth2"}} {
		t.Run("down "+strings.Join(order, " then "), func(t *testing.T) {
			e := newTwoUnderlays(t)
			check := func(when, want, rules, dev string) {
				t.Helper()
				if got := e.defaultRoute(); got != want {
					t.Fatalf("%s: default routes\n%s\nwant\n%s", when, got, want)
				}
				if got := e.rules(); got != rules {
					t.Fatalf("%s: rules\n%s\nwant\n%s", when, got, rules)
				}
				if got := e.via("8.8.8.8", 0); got != dev {
					t.Fatalf("%s: 8.8.8.8 goes out of %q, want %q", when, got, dev)
				}
				// The tunnels' own packets leave by the main table.
				if got := e.via("203.0.113.5", mark); got != "eth1" {
					t.Fatalf("%s: marked packets to the remote go out of %q", when, got)
				}
			}
			e.mustOn("eth1", PhaseUp)
			check("after up eth1", aDefault+"\n"+origDefault, ourRules, "gre-a")
			e.mustOn("eth2", PhaseUp)
			check("after up eth2", bDefault+"\n"+aDefault+"\n"+origDefault, ourRules, "gre-a")
			// Re-running up on either (ifreload) changes nothing.
			if out := e.mustOn("eth1", PhaseUp) + e.mustOn("eth2", PhaseUp); out != "" {
				t.Fatalf("a second up of both changed things:\n%s", out)
			}
			e.mustOn(order[0], PhaseDown)
			want, dev := aDefault, "gre-a"
			if order[0] == "eth1" {
				want, dev = bDefault, "gre-b"
			}
			check("after down "+order[0], want+"\n"+origDefault, ourRules, dev)
			e.mustOn(order[1], PhaseDown)
			check("after down "+order[1], origDefault, "", "eth1")
			diff(t, "after both down", e.dump(), e.before)
		})
	}
}

// gc of one of two default_route tunnels keeps the other's route and the
// rules; the last one's gc takes the rules too.
func TestGCKeepsTheOtherDefault(t *testing.T) {
	e := newTwoUnderlays(t)
	e.mustOn("eth1", PhaseUp)
	e.mustOn("eth2", PhaseUp)
	e.write(strings.SplitN(twoDefaults, "[[tunnel]]\nname = \"gre-b\"", 2)[0])
	e.mustGC()
	if got := e.defaultRoute(); got != aDefault+"\n"+origDefault || e.rules() != ourRules {
		t.Fatalf("after gc of gre-b:\n%s", e.dump())
	}
	e.write("")
	e.mustGC()
	diff(t, "after gc of both", e.dump(), e.before)
}

// A main default the admin changes after up is never touched: not by a
// re-run of up, not by status, not by down.
func TestDownKeepsAdminDefault(t *testing.T) {
	e := newTwoUnderlays(t)
	e.mustOn("eth1", PhaseUp)
	admin := plan.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("198.51.100.253"), Dev: "eth1"}
	e.fk.Net.AddForeignRoute(admin, fake.ProtoStatic)
	want := "route 0.0.0.0/0 via 198.51.100.253 dev eth1 proto 4"
	if out := e.mustOn("eth1", PhaseUp); out != "" || e.mainDefault() != want {
		t.Fatalf("after up again: %q\n%s", e.mainDefault(), out)
	}
	var buf strings.Builder
	if drift, err := statusOf(t, Request{Iface: "eth1", Config: e.cfg, AllowInsecure: true}, e.sys, &buf); err != nil || drift {
		t.Errorf("status calls the admin's default route drift (%v):\n%s", err, buf.String())
	}
	e.mustOn("eth1", PhaseDown)
	if got := e.defaultRoute(); got != want || e.rules() != "" {
		t.Fatalf("after down: %q, want the admin's %q\n%s", got, want, e.dump())
	}
}

// A second config's run (a dual-stack underlay's inet6 stanza, or gc and
// status by hand) leaves the first config's tunnels alone; down removes
// them whatever it reads.
func TestOtherConfigLeavesTunnels(t *testing.T) {
	e := newEnv(t)
	e.write(site1)
	e.mustRun(PhaseUp)
	want := e.dump()
	other := filepath.Join(t.TempDir(), "other.toml")
	if err := os.WriteFile(other, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	useOther := func(r *Request) { r.Config = other; r.Verbose = true }
	out := e.mustOn("eth1", PhaseUp, useOther)
	diff(t, "state after an up with another config", e.dump(), want)
	if !strings.Contains(out, "came from "+e.cfg) || !strings.Contains(out, "leaving them alone") {
		t.Errorf("-v does not say why:\n%s", out)
	}
	e.log.Reset()
	if err := gc(t, Request{Config: other, AllowInsecure: true}, e.sys); err != nil {
		t.Fatalf("gc with another config: %v\n%s", err, e.log.String())
	}
	diff(t, "state after gc with another config", e.dump(), want)
	var buf strings.Builder
	drift, err := statusOf(t, Request{Config: other, AllowInsecure: true}, e.sys, &buf)
	if err != nil || drift || !strings.Contains(buf.String(), "gre-site2 on eth1: up") {
		t.Errorf("status with another config: drift %v, %v:\n%s", drift, err, buf.String())
	}
	// Switching the source is explicit: the other config has no tunnels,
	// so they go.
	e.mustOn("eth1", PhaseUp, useOther, func(r *Request) { r.SwitchConfig = true })
	diff(t, "state after --switch-config", e.dump(), baseline)

	e.mustRun(PhaseUp)
	e.mustOn("eth1", PhaseDown, useOther)
	diff(t, "state after down with another config", e.dump(), baseline)
}

// An unreadable record stops every run on its underlay and gc from
// deleting anything there.
func TestUnreadableRecordChangesNothing(t *testing.T) {
	e := newTwoUnderlays(t)
	e.mustOn("eth1", PhaseUp)
	before := e.dump()
	path := filepath.Join(e.sys.Store.Dir, "eth1.json")
	if err := os.WriteFile(path, []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, phase := range []Phase{PhaseUp, PhaseDown} {
		out, err := e.on("eth1", phase)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), ".bad") {
			t.Errorf("%s with a corrupt record: %v\n%s", phase, err, out)
		}
	}
	e.log.Reset()
	err := gc(t, Request{Config: e.cfg, AllowInsecure: true}, e.sys)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("gc with a corrupt record: %v", err)
	}
	diff(t, "state after runs with a corrupt record", e.dump(), before)
	// The way out the message gives works, and says what it cannot know.
	if err := os.Rename(path, path+".bad"); err != nil {
		t.Fatal(err)
	}
	out := e.mustOn("eth1", PhaseDown)
	if e.defaultRoute() != origDefault || e.rules() != "" || strings.Contains(e.dump(), "proto 176") {
		t.Errorf("after a down by the kernel's marks:\n%s\n%s", e.dump(), out)
	}
}

// A failed up with default_route rolls back its route in gre-hook's table
// and its rules too, and leaves the main default as it was.
func TestDefaultRouteRollback(t *testing.T) {
	e := newEnv(t)
	e.write(strings.Replace(defaultRoute, "default_route = true", "default_route = true\nup_command = [\"/bin/false\"]", 1))
	e.sys.Command = func(context.Context, []string, []string) error { return errors.New("exit status 1") }
	out, err := e.run(PhaseUp)
	if err == nil || !strings.Contains(err.Error(), "rolled back") {
		t.Fatalf("up: %v\n%s", err, out)
	}
	diff(t, "after the rollback", e.dump(), baseline)
}

// table = 254 is the main table: a second up has nothing to do.
func TestMainTableByNumberSettles(t *testing.T) {
	e := newEnv(t)
	e.write(strings.Replace(site1, `to = "192.168.2.0/24"`, "to = \"192.168.2.0/24\"\ntable = 254", 1))
	e.mustRun(PhaseUp)
	diff(t, "state after up", e.dump(), site1State)
	if out := e.mustRun(PhaseUp); out != "" {
		t.Errorf("second up changed something:\n%s", out)
	}
}

// A record written by a run that skipped the config checks does not get
// its down_command run by a checked run, which says why.
func TestInsecureRecordNotHonoured(t *testing.T) {
	e := newEnv(t)
	e.write(strings.Replace(site1, `mss = "pmtu"`, "mss = \"pmtu\"\ndown_command = [\"/usr/bin/logger\", \"bye\"]", 1))
	e.mustRun(PhaseUp)
	if !strings.Contains(e.record(), `"insecure": true`) {
		t.Fatalf("record of an unchecked run not marked:\n%s", e.record())
	}
	out := e.mustOn("eth1", PhaseDown, func(r *Request) { r.AllowInsecure = false; r.Config = "/nonexistent/gre-hook.toml" })
	if len(e.commands) != 0 {
		t.Errorf("a checked run ran a command from an unchecked record: %v", e.commands)
	}
	if !strings.Contains(out, "skipped the config checks") {
		t.Errorf("no warning:\n%s", out)
	}
	diff(t, "state after down", e.dump(), baseline)

	// An unchecked run trusts it, as it trusts the config.
	e.mustRun(PhaseUp)
	e.mustRun(PhaseDown)
	if len(e.commands) != 1 {
		t.Errorf("commands: %v", e.commands)
	}
}

// A run by hand with another config says why it leaves the tunnels
// alone; one from ifupdown says so only with -v.
func TestOtherConfigByHandSaysWhy(t *testing.T) {
	e := newEnv(t)
	e.write(site1)
	e.mustRun(PhaseUp)
	other := filepath.Join(t.TempDir(), "other.toml")
	if err := os.WriteFile(other, []byte(site1Edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := e.mustOn("eth1", PhaseUp, func(r *Request) { r.Config = other }); out != "" {
		t.Errorf("a run from ifupdown was not quiet:\n%s", out)
	}
	out := e.mustOn("eth1", PhaseUp, func(r *Request) { r.Config = other; r.ByHand = true })
	if !strings.Contains(out, "warning: eth1: its tunnels came from "+e.cfg) || !strings.Contains(out, "--switch-config") {
		t.Errorf("a run by hand did not say why:\n%s", out)
	}
}

// A tunnel that an up removes because the config dropped it gets its
// down_command run first, as a down would.
func TestStaleTunnelRunsDownCommand(t *testing.T) {
	e := newEnv(t)
	e.write(site1 + `
[[tunnel]]
name = "gre-old"
underlay = "eth1"
remote = "203.0.113.7"
address = ["10.0.5.1/30"]
down_command = ["/usr/bin/logger", "gre-old going"]
`)
	e.mustRun(PhaseUp)
	e.commands = nil
	e.write(site1)
	out := e.mustRun(PhaseUp)
	want := "/usr/bin/logger gre-old going [GRE_HOOK_TUNNEL=gre-old GRE_HOOK_UNDERLAY=eth1 GRE_HOOK_PHASE=down]"
	if len(e.commands) != 1 || e.commands[0] != want {
		t.Errorf("commands run: %q, want [%q]\n%s", e.commands, want, out)
	}
	diff(t, "state after the edit", e.dump(), site1State)
}

// threeWatched is a default_route tunnel with keepalive on each of eth1,
// eth2, eth3, in that order in the config.
const threeWatched = `
[[tunnel]]
name = "gre-a"
underlay = "eth1"
remote = "203.0.113.5"
address = ["10.9.0.2/30"]
default_route = true
mss = "off"
keepalive = { interval = 1, retries = 3 }

[[tunnel]]
name = "gre-b"
underlay = "eth2"
remote = "192.0.2.9"
address = ["10.8.0.2/30"]
default_route = true
mss = "off"
keepalive = { interval = 1, retries = 3 }

[[tunnel.route]]
to = "192.168.60.0/24"

[[tunnel]]
name = "gre-c"
underlay = "eth3"
remote = "192.0.3.9"
address = ["10.7.0.2/30"]
default_route = true
mss = "off"
keepalive = { interval = 1, retries = 3 }
`

// TestDefaultRouteInvariant runs seeded random sequences of up, down, a
// peer found dead or alive again, and the admin changing the main
// default, on three underlays with a default_route tunnel each, and checks
// after every step against a model:
//   - the main table's default is byte for byte the original or the
//     admin's latest: gre-hook never touches it;
//   - gre-hook's table holds exactly the default routes of the tunnels
//     that are up and whose peer is alive, each at its config place;
//   - the rules exist iff some default_route tunnel is up (dead or not);
//   - traffic takes the first live tunnel, else the main default, and the
//     tunnels' own marked packets never enter a tunnel;
//   - after every tunnel is down, nothing of gre-hook's is left.
func TestDefaultRouteInvariant(t *testing.T) {
	underlays := []string{"eth1", "eth2", "eth3"}
	name := map[string]string{"eth1": "gre-a", "eth2": "gre-b", "eth3": "gre-c"}
	routeOf := map[string]string{
		"eth1": "route 0.0.0.0/0 via 10.9.0.1 dev gre-a table 18247 metric 1 proto 176",
		"eth2": "route 0.0.0.0/0 via 10.8.0.1 dev gre-b table 18247 metric 2 proto 176",
		"eth3": "route 0.0.0.0/0 via 10.7.0.1 dev gre-c table 18247 metric 3 proto 176",
	}
	for seed := int64(1); seed <= 60; seed++ {
		seed := seed
		t.Run("seed"+itoa(int(seed)), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			e := newTwoUnderlays(t)
			e.fk.Net.AddDevice("eth3", 1500)
			e.fk.Net.AddDeviceAddr("eth3", netip.MustParsePrefix("192.0.3.1/24"))
			e.write(threeWatched)
			before := e.dump()

			up, dead := map[string]bool{}, map[string]bool{}
			main := origDefault
			var steps []string
			for step := 0; step < 30; step++ {
				u := underlays[rng.Intn(3)]
				switch op := rng.Intn(9); {
				case op < 3:
					steps = append(steps, "up "+u)
					e.mustOn(u, PhaseUp)
					up[u] = true
				case op < 5:
					steps = append(steps, "down "+u)
					e.mustOn(u, PhaseDown)
					up[u], dead[u] = false, false
				case op < 7:
					steps = append(steps, "dead "+u)
					e.set(u, name[u], false)
					dead[u] = up[u]
				case op < 8:
					steps = append(steps, "alive "+u)
					e.set(u, name[u], true)
					dead[u] = false
				default:
					gw := "198.51.100." + itoa(200+rng.Intn(50))
					steps = append(steps, "admin via "+gw)
					e.fk.Net.AddForeignRoute(plan.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr(gw), Dev: "eth1"}, fake.ProtoStatic)
					main = "route 0.0.0.0/0 via " + gw + " dev eth1 proto 4"
				}
				at := strings.Join(steps, ", ")
				if got := e.mainDefault(); got != main {
					t.Fatalf("after %s:\nmain default %q\nwant %q", at, got, main)
				}
				var table []string
				via, anyUp := "eth1", false
				for _, u := range underlays {
					anyUp = anyUp || up[u]
					if up[u] && !dead[u] {
						table = append(table, routeOf[u])
						if via == "eth1" {
							via = name[u]
						}
					}
				}
				var got []string
				for _, l := range strings.Split(e.defaultRoute(), "\n") {
					if strings.Contains(l, " table 18247 ") {
						got = append(got, l)
					}
				}
				sort.Strings(table)
				if strings.Join(got, "\n") != strings.Join(table, "\n") {
					t.Fatalf("after %s:\ntable 18247\n%s\nwant\n%s", at, strings.Join(got, "\n"), strings.Join(table, "\n"))
				}
				if want := map[bool]string{true: ourRules, false: ""}[anyUp]; e.rules() != want {
					t.Fatalf("after %s:\nrules %q\nwant %q", at, e.rules(), want)
				}
				if got := e.via("8.8.8.8", 0); got != via {
					t.Fatalf("after %s: traffic leaves by %q, want %q", at, got, via)
				}
				if b := e.has(bRoute); b != (up["eth2"] && !dead["eth2"]) {
					t.Fatalf("after %s: gre-b's route there %v\n%s", at, b, e.dump())
				}
				for _, remote := range []string{"203.0.113.5", "192.0.2.9", "192.0.3.9"} {
					if got := e.via(remote, mark); strings.HasPrefix(got, "gre-") {
						t.Fatalf("after %s: marked packets to %s go into %s", at, remote, got)
					}
				}
			}
			for _, u := range underlays {
				e.mustOn(u, PhaseDown)
			}
			want := strings.Replace(before, origDefault, main, 1)
			diff(t, "after "+strings.Join(steps, ", ")+" and all down", e.dump(), sortLines(want))
		})
	}
}
