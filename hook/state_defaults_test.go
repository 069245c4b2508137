package hook

import (
	"context"
	"errors"
	"math/rand"
	"net/netip"
	"os"
	"path/filepath"
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

// defaultRoute returns the fake kernel's default route lines.
func (e *env) defaultRoute() string {
	var out []string
	for _, l := range strings.Split(e.dump(), "\n") {
		if strings.HasPrefix(l, "route 0.0.0.0/0 ") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

const (
	origDefault = "route 0.0.0.0/0 via 198.51.100.254 dev eth1 proto 4"
	aDefault    = "route 0.0.0.0/0 via 10.9.0.1 dev gre-a proto 176"
	bDefault    = "route 0.0.0.0/0 via 10.8.0.1 dev gre-b proto 176"
)

// Two default_route tunnels on two underlays, taken down in either order:
// the router always keeps a default route, the right one.
func TestTwoDefaultRouteTunnels(t *testing.T) {
	for _, order := range [][]string{{"eth2", "eth1"}, {"eth1", "eth2"}} {
		t.Run("down "+strings.Join(order, " then "), func(t *testing.T) {
			e := newTwoUnderlays(t)
			e.mustOn("eth1", PhaseUp)
			if got := e.defaultRoute(); got != aDefault {
				t.Fatalf("after up eth1: %s", got)
			}
			e.mustOn("eth2", PhaseUp)
			if got := e.defaultRoute(); got != bDefault {
				t.Fatalf("after up eth2: %s", got)
			}
			// Re-running up on either (ifreload) keeps the newest.
			e.mustOn("eth1", PhaseUp)
			e.mustOn("eth2", PhaseUp)
			if got := e.defaultRoute(); got != bDefault {
				t.Fatalf("after a second up of both: %s", got)
			}
			e.mustOn(order[0], PhaseDown)
			want := aDefault
			if order[0] == "eth1" {
				want = bDefault
			}
			if got := e.defaultRoute(); got != want {
				t.Fatalf("after down %s: %q, want %q", order[0], got, want)
			}
			e.mustOn(order[1], PhaseDown)
			if got := e.defaultRoute(); got != origDefault {
				t.Fatalf("after down %s: %q, want %q", order[1], got, origDefault)
			}
		})
	}
}

// gc of one of two default_route tunnels hands the default to the other.
func TestGCHandsDefaultOn(t *testing.T) {
	e := newTwoUnderlays(t)
	e.mustOn("eth1", PhaseUp)
	e.mustOn("eth2", PhaseUp)
	e.write(strings.SplitN(twoDefaults, "[[tunnel]]\nname = \"gre-b\"", 2)[0])
	e.log.Reset()
	if err := gc(t, Request{Config: e.cfg, AllowInsecure: true}, e.sys); err != nil {
		t.Fatalf("gc: %v\n%s", err, e.log.String())
	}
	if got := e.defaultRoute(); got != aDefault {
		t.Fatalf("after gc of gre-b: %q", got)
	}
	e.mustOn("eth1", PhaseDown)
	if got := e.defaultRoute(); got != origDefault {
		t.Fatalf("after down eth1: %q", got)
	}
}

// A default route the admin set after up is never overwritten by down.
func TestDownKeepsAdminDefault(t *testing.T) {
	e := newTwoUnderlays(t)
	e.mustOn("eth1", PhaseUp)
	admin := plan.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("198.51.100.253"), Dev: "eth1"}
	e.fk.Net.AddForeignRoute(admin, fake.ProtoStatic)
	// A re-run of up leaves the admin's route too.
	e.mustOn("eth1", PhaseUp)
	want := "route 0.0.0.0/0 via 198.51.100.253 dev eth1 proto 4"
	if got := e.defaultRoute(); got != want {
		t.Fatalf("after up again: %q", got)
	}
	var buf strings.Builder
	if drift, err := statusOf(t, Request{Iface: "eth1", Config: e.cfg, AllowInsecure: true}, e.sys, &buf); err != nil || drift {
		t.Errorf("status calls the admin's default route drift (%v):\n%s", err, buf.String())
	}
	e.mustOn("eth1", PhaseDown)
	if got := e.defaultRoute(); got != want {
		t.Fatalf("after down: %q, want the admin's %q", got, want)
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
// deleting anything there: only it knows the replaced default route.
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
	if !strings.Contains(out, "no record says which route it replaced") {
		t.Errorf("a down that loses the default route does not say so:\n%s", out)
	}
}

// A rollback that cannot put the replaced default route back keeps it in
// the record, so a later down still can.
func TestIncompleteRollbackKeepsReplacedRoute(t *testing.T) {
	e := newEnv(t)
	e.write(strings.Replace(defaultRoute, "default_route = true", "default_route = true\nup_command = [\"/bin/false\"]", 1))
	e.sys.Command = func(context.Context, []string, []string) error {
		// The undo of the default route is the next route replace.
		e.fk.Net.FailNth("ReplaceRoute", 1)
		return errors.New("exit status 1")
	}
	out, err := e.run(PhaseUp)
	if err == nil || !strings.Contains(err.Error(), "rollback incomplete") {
		t.Fatalf("up: %v\n%s", err, out)
	}
	e.fk.Net.Disarm()
	if !strings.Contains(e.record(), `"gw": "198.51.100.254"`) {
		t.Fatalf("the record lost the replaced default route:\n%s", e.record())
	}
	e.mustRun(PhaseDown)
	if got := e.defaultRoute(); got != origDefault {
		t.Errorf("after down: %q, want %q", got, origDefault)
	}
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

// threeDefaults is a default_route tunnel on each of eth1, eth2, eth3.
const threeDefaults = twoDefaults + `
[[tunnel]]
name = "gre-c"
underlay = "eth3"
remote = "192.0.3.9"
address = ["10.7.0.2/30"]
default_route = true
mss = "off"
`

// TestDefaultRouteInvariant runs seeded random sequences of up, down and
// by-hand default routes on three underlays, each with a default_route
// tunnel, and checks the default route after every step against a model
// of the rule in defaults.go:
//   - an up of a tunnel that is down takes the default over; the route it
//     replaces, if gre-hook did not set it, becomes the one to restore,
//     and the tunnels it had overridden drop out;
//   - a down of the tunnel whose default is in force hands it to the
//     tunnel still in the running that took it over last, else restores;
//   - a route set by hand stays until an up takes it over.
func TestDefaultRouteInvariant(t *testing.T) {
	names := map[string]string{"eth1": "gre-a", "eth2": "gre-b", "eth3": "gre-c"}
	routeOf := map[string]string{
		"eth1": "route 0.0.0.0/0 via 10.9.0.1 dev gre-a proto 176",
		"eth2": "route 0.0.0.0/0 via 10.8.0.1 dev gre-b proto 176",
		"eth3": "route 0.0.0.0/0 via 10.7.0.1 dev gre-c proto 176",
	}
	underlays := []string{"eth1", "eth2", "eth3"}
	for seed := int64(1); seed <= 40; seed++ {
		seed := seed
		t.Run("seed"+itoa(int(seed)), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			e := newTwoUnderlays(t)
			e.fk.Net.AddDevice("eth3", 1500)
			e.fk.Net.AddDeviceAddr("eth3", netip.MustParsePrefix("192.0.3.1/24"))
			e.write(threeDefaults)

			up := map[string]bool{}
			var stack []string // tunnels in the running, oldest first
			cur, base := origDefault, origDefault
			var steps []string
			for step := 0; step < 25; step++ {
				switch op := rng.Intn(5); {
				case op < 2:
					u := underlays[rng.Intn(3)]
					steps = append(steps, "up "+u)
					e.mustOn(u, PhaseUp)
					if !up[u] {
						up[u] = true
						if !strings.Contains(cur, "proto 176") {
							base, stack = cur, nil
						}
						stack = append(stack, u)
						cur = routeOf[u]
					}
				case op < 4:
					u := underlays[rng.Intn(3)]
					steps = append(steps, "down "+u)
					e.mustOn(u, PhaseDown)
					if up[u] {
						up[u] = false
						for i, s := range stack {
							if s == u {
								stack = append(stack[:i:i], stack[i+1:]...)
								break
							}
						}
						if cur == routeOf[u] {
							cur = base
							if len(stack) > 0 {
								cur = routeOf[stack[len(stack)-1]]
							}
						}
					}
				default:
					gw := "198.51.100." + itoa(200+rng.Intn(50))
					steps = append(steps, "admin via "+gw)
					e.fk.Net.AddForeignRoute(plan.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr(gw), Dev: "eth1"}, fake.ProtoStatic)
					cur = "route 0.0.0.0/0 via " + gw + " dev eth1 proto 4"
				}
				if got := e.defaultRoute(); got != cur {
					t.Fatalf("after %s:\n got %q\nwant %q", strings.Join(steps, ", "), got, cur)
				}
			}
			for _, u := range underlays {
				e.mustOn(u, PhaseDown)
			}
			if strings.Contains(e.dump(), "proto 176") || strings.Count(e.defaultRoute(), "\n") > 0 || e.defaultRoute() == "" {
				t.Errorf("after %s and all down:\n%s", strings.Join(steps, ", "), e.dump())
			}
			_ = names
		})
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
