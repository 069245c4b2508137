package hook

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gre-hook/gre-hook/hook/fake"
	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/rtnl"
	"github.com/gre-hook/gre-hook/hook/state"
)

func TestDownAfterConfigDeleted(t *testing.T) {
	for _, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			e.write(c.text)
			e.mustRun(PhaseUp)
			if err := os.Remove(e.cfg); err != nil {
				t.Fatal(err)
			}
			e.mustRun(PhaseDown)
			diff(t, "state after down without a config", e.dump(), baseline)
			if e.record() != "" {
				t.Errorf("record left:\n%s", e.record())
			}
		})
	}
}

// TestDownAfterRecordLost: links are found by alias, rules by comment.
// (A lost record cannot say which default route was replaced, so the
// default-route config is left out.)
func TestDownAfterRecordLost(t *testing.T) {
	for _, c := range configs[:3] {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			e.write(c.text)
			e.mustRun(PhaseUp)
			if err := os.Remove(filepath.Join(e.sys.Store.Dir, "eth1.json")); err != nil {
				t.Fatal(err)
			}
			e.mustRun(PhaseDown)
			diff(t, "state after down without a record", e.dump(), baseline)
		})
	}
}

// TestDownAfterRecordAndConfigEdited: the record is lost and the config
// names other tunnels; down must still find the links by their alias.
func TestDownAfterRecordLostAndConfigEdited(t *testing.T) {
	e := newEnv(t)
	e.write(many)
	e.mustRun(PhaseUp)
	os.Remove(filepath.Join(e.sys.Store.Dir, "eth1.json"))
	e.write(site1Edited)
	e.mustRun(PhaseDown)
	diff(t, "state after down", e.dump(), baseline)
}

func TestDefaultRouteTakeover(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(n *fake.Net)
	}{
		{"static default", func(n *fake.Net) {}},
		{"dhcp default with metric 100", func(n *fake.Net) {
			n.RemoveRoute(netip.MustParsePrefix("0.0.0.0/0"))
			n.AddForeignRoute(plan.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("198.51.100.254"), Dev: "eth1", Metric: 100}, fake.ProtoDHCP)
		}},
		{"dhcp default with metric 0", func(n *fake.Net) {
			n.RemoveRoute(netip.MustParsePrefix("0.0.0.0/0"))
			n.AddForeignRoute(plan.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("198.51.100.254"), Dev: "eth1"}, fake.ProtoDHCP)
		}},
		{"default in another table too", func(n *fake.Net) {
			n.AddForeignRoute(plan.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("198.51.100.253"), Dev: "eth1", Table: 7}, fake.ProtoBoot)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			tc.setup(e.fk.Net)
			before := e.dump()
			e.write(defaultRoute)
			e.mustRun(PhaseUp)
			got := e.dump()
			if !strings.Contains(got, "route 0.0.0.0/0 via 10.9.0.1 dev gre-vpn table 18247 metric 1 proto 176\n") {
				t.Errorf("no default route via the tunnel in gre-hook's table:\n%s", got)
			}
			// The main table is as it was: no pin, the same default.
			if mainRoutes(got) != mainRoutes(before) {
				t.Errorf("the main table's routes changed:\n%s\nwas\n%s", mainRoutes(got), mainRoutes(before))
			}
			// A second up must keep the remembered route, not forget it.
			if out := e.mustRun(PhaseUp); out != "" {
				t.Errorf("second up logged:\n%s", out)
			}
			e.mustRun(PhaseDown)
			diff(t, "state after down", e.dump(), before)
		})
	}
}

// mainRoutes is the lines of routes in the main table not through a
// tunnel.
func mainRoutes(dump string) string {
	var out []string
	for _, l := range strings.Split(dump, "\n") {
		if strings.HasPrefix(l, "route ") && !strings.Contains(l, " table ") && !strings.Contains(l, " dev gre-") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestDefaultRouteDropped: taking default_route out of the config takes
// the tunnel's route out of gre-hook's table, and the rules with it.
func TestDefaultRouteDropped(t *testing.T) {
	e := newEnv(t)
	e.write(defaultRoute)
	e.mustRun(PhaseUp)
	e.write(strings.Replace(defaultRoute, "default_route = true", "", 1))
	e.mustRun(PhaseUp)
	want := golden(t, strings.Replace(defaultRoute, "default_route = true", "", 1))
	diff(t, "state after dropping default_route", e.dump(), want)
	e.mustRun(PhaseDown)
	diff(t, "state after down", e.dump(), baseline)
}

func TestForeignLinkRefused(t *testing.T) {
	e := newEnv(t)
	e.fk.Net.AddForeignLink(rtnl.Link{Name: "gre-site2", Kind: "dummy", MTU: 1500})
	before := e.dump()
	e.write(site1)
	out, err := e.run(PhaseUp)
	if err == nil {
		t.Fatal("up succeeded over a foreign link")
	}
	if !strings.Contains(err.Error(), "a link named gre-site2 already exists (kind dummy") {
		t.Errorf("error does not name the link: %v", err)
	}
	if out != "" {
		t.Errorf("refused up logged changes:\n%s", out)
	}
	diff(t, "state after refused up", e.dump(), before)
	if e.record() != "" {
		t.Errorf("refused up left a record:\n%s", e.record())
	}
	// Down must not touch the foreign link either.
	e.mustRun(PhaseDown)
	diff(t, "state after down", e.dump(), before)
}

func TestLinkOfOtherUnderlayRefused(t *testing.T) {
	e := newEnv(t)
	e.fk.Net.AddForeignLink(rtnl.Link{Name: "gre-site2", Kind: "gre", GRE: true, Alias: "gre-hook:eth9", MTU: 1476})
	before := e.dump()
	e.write(site1)
	_, err := e.run(PhaseUp)
	if err == nil || !strings.Contains(err.Error(), "belongs to gre-hook's tunnels on eth9") {
		t.Fatalf("got %v, want an error naming eth9", err)
	}
	diff(t, "state after refused up", e.dump(), before)
}

func TestForeignRouteRefused(t *testing.T) {
	e := newEnv(t)
	e.fk.Net.AddForeignRoute(plan.Route{Dst: netip.MustParsePrefix("192.168.2.0/24"), Gw: netip.MustParseAddr("198.51.100.9"), Dev: "eth1"}, fake.ProtoStatic)
	before := e.dump()
	e.write(site1)
	out, err := e.run(PhaseUp)
	if err == nil {
		t.Fatal("up replaced a foreign route")
	}
	want := `bringing up tunnels on eth1: tunnel "gre-site2": route 192.168.2.0/24: another route with that destination, table and metric exists (via 198.51.100.9 dev eth1, proto 4) and gre-hook did not create it`
	if err.Error() != want {
		t.Errorf("error:\n got %s\nwant %s", err, want)
	}
	if out != "" {
		t.Errorf("refused up logged changes:\n%s", out)
	}
	diff(t, "state after refused up", e.dump(), before)
}

func TestUnderlayMissingOrDown(t *testing.T) {
	e := newEnv(t)
	e.write(strings.Replace(site1, `underlay = "eth1"`, `underlay = "eth2"`, 1))
	e.fk.Net.AddDevice("eth2", 1500)
	e.fk.Net.Mutate("eth2", func(l *rtnl.Link) { l.Up = false })
	before := e.dump()
	e.sys.Store.Dir = filepath.Join(t.TempDir(), "run")
	err := run(Request{Iface: "eth2", Phase: PhaseUp, Config: e.cfg, AllowInsecure: true}, e.sys)
	if err == nil || !strings.Contains(err.Error(), "the underlay is down") {
		t.Errorf("got %v, want the underlay is down", err)
	}
	diff(t, "state", e.dump(), before)
}

// injections are the steps of site1's bring-up, and of the edits between
// the configs, that can fail.
var injections = []struct {
	op  string
	nth int
	v6  bool
}{
	{"AddLink", 1, false},
	{"AddLink", 2, false},
	{"AddLink", 3, false},
	{"AddAddr", 1, false},
	{"AddAddr", 2, false},
	{"AddAddr", 3, false},
	{"SetUp", 1, false},
	{"SetUp", 3, false},
	{"ReplaceRoute", 1, false},
	{"ReplaceRoute", 2, false},
	{"ReplaceRoute", 3, false},
	{"DelLink", 1, false},
	{"DelAddr", 1, false},
	{"DelRoute", 1, false},
	{"SetMTU", 1, false},
	{"SetTunnel", 1, false},
	{"Restore", 1, false},
	{"Restore", 1, true},
}

func inject(e *env, op string, nth int, v6 bool) {
	switch {
	case op == "Restore" && v6:
		e.fk.V6.FailNth(op, nth)
	case op == "Restore":
		e.fk.V4.FailNth(op, nth)
	default:
		e.fk.Net.FailNth(op, nth)
	}
}

// TestUpRollsBack fails each step of an up, from nothing and from another
// config, and checks the machine and the record are as they were.
func TestUpRollsBack(t *testing.T) {
	for _, from := range []struct{ name, text string }{{"empty", ""}, {"site1", site1}, {"many", many}} {
		for _, to := range configs {
			if to.name == from.name {
				continue
			}
			for _, in := range injections {
				name := from.name + "_to_" + to.name + "_" + in.op + "#" + string(rune('0'+in.nth))
				if in.v6 {
					name += "_v6"
				}
				t.Run(name, func(t *testing.T) {
					e := newEnv(t)
					if from.text != "" {
						e.write(from.text)
						e.mustRun(PhaseUp)
					}
					before, rec := e.dump(), e.record()
					e.write(to.text)
					calls := e.fk.Net.Calls(in.op)
					inject(e, in.op, in.nth, in.v6)
					out, err := e.run(PhaseUp)
					if err == nil {
						reached := e.fk.Net.Calls(in.op)-calls >= in.nth && !in.v6 && in.op != "Restore"
						e.fk.Net.Disarm()
						e.fk.V4.Disarm()
						e.fk.V6.Disarm()
						switch {
						case !reached:
							// The step was not reached: nothing to check but success.
							diff(t, "state after up", e.dump(), golden(t, to.text))
						case strings.HasPrefix(in.op, "Del") && strings.Contains(out, "warning: removing tunnels no longer configured on eth1"):
							// Removing tunnels the config dropped is done after
							// the new ones are up, and only warns; the record
							// keeps what is left for down.
							if !strings.Contains(e.record(), `"name": "`) {
								t.Errorf("record lost the leftovers:\n%s", e.record())
							}
						default:
							t.Fatalf("up succeeded though %s call %d failed\n%s", in.op, in.nth, out)
						}
						e.mustRun(PhaseDown)
						diff(t, "state after down", e.dump(), baseline)
						return
					}
					if !errors.Is(err, fake.ErrInjected) {
						t.Errorf("error does not wrap the cause: %v", err)
					}
					if !strings.HasSuffix(err.Error(), "; rolled back") {
						t.Errorf("error does not say rolled back: %v", err)
					}
					diff(t, "state after rollback", e.dump(), before)
					if got := e.record(); got != rec {
						t.Errorf("record after rollback:\n%s\nwant:\n%s", got, rec)
					}
					// And the machine still works: up converges, down cleans.
					e.mustRun(PhaseUp)
					diff(t, "state after a later up", e.dump(), golden(t, to.text))
					e.mustRun(PhaseDown)
					diff(t, "state after down", e.dump(), baseline)
				})
			}
		}
	}
}

func TestDownContinuesPastFailures(t *testing.T) {
	e := newEnv(t)
	e.write(many)
	e.mustRun(PhaseUp)
	e.fk.Net.FailNth("DelLink", 2) // gre-v6
	e.fk.V4.FailNth("Restore", 1)
	_, err := e.run(PhaseDown)
	if err == nil {
		t.Fatal("down succeeded despite failures")
	}
	msg := err.Error()
	for _, want := range []string{"ip link del gre-v6", "removing iptables mangle chain GRE-HOOK", fake.ErrInjected.Error()} {
		if !strings.Contains(msg, want) {
			t.Errorf("down error does not mention %q: %v", want, err)
		}
	}
	got := e.dump()
	for _, gone := range []string{"link gre-site2", "link tap-lab", "ip6tables"} {
		if strings.Contains(got, gone) {
			t.Errorf("down stopped at the first failure: %q is left:\n%s", gone, got)
		}
	}
	if !strings.Contains(got, "link gre-v6") {
		t.Errorf("gre-v6 gone although its delete failed:\n%s", got)
	}
	if e.record() == "" {
		t.Error("a failed down dropped the record; a retry could not find what is left")
	}
	// A retry finishes the job.
	e.mustRun(PhaseDown)
	diff(t, "state after a second down", e.dump(), baseline)
	if e.record() != "" {
		t.Errorf("record left:\n%s", e.record())
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	e := newEnv(t)
	e.write(many)
	if !strings.HasPrefix(e.dryRun(), "ip tunnel add gre-site2 mode gre remote 203.0.113.1 local 198.51.100.1 ttl 255\n") {
		t.Errorf("dry run printed:\n%s", e.log.String())
	}
	diff(t, "state after a dry run", e.dump(), baseline)
	if e.record() != "" || len(e.commands) != 0 {
		t.Errorf("dry run wrote a record or ran commands")
	}
}

func TestLockedRunChangesNothing(t *testing.T) {
	e := newEnv(t)
	e.write(site1)
	unlock, err := state.Lock(e.sys.Store.Dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	e.sys.LockWait = 50 * time.Millisecond
	if _, err := e.run(PhaseUp); !errors.Is(err, state.ErrLocked) {
		t.Errorf("up while locked: %v", err)
	}
	diff(t, "state", e.dump(), baseline)
}
