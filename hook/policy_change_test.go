package hook

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/gre-hook/gre-hook/hook/fake"
	"github.com/gre-hook/gre-hook/hook/internal/fixture"
	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/rtnl"
)

// The [policy] table (POLICY-ROUTING.md): the table, the rules'
// priorities and the fwmark, one for the router. These tests check custom
// values, and a change of them while tunnels are up, on the fake kernel,
// with the kernel checked after every single change a run makes.

// polA is a policy with all three values other than the defaults.
const polA = "[policy]\ntable = 100\npriority = 1000\nfwmark = 0x10\n"

const (
	aDefaultA = "route 0.0.0.0/0 via 10.9.0.1 dev gre-a table 100 metric 1 proto 176"
	bDefaultA = "route 0.0.0.0/0 via 10.8.0.1 dev gre-b table 100 metric 2 proto 176"
	rulesA    = "rule 4 1000: lookup main suppress_prefixlength 0 proto 176\nrule 4 1001: not fwmark 0x10 lookup 100 proto 176"
)

// observed is the fake kernel with a check run after every change a run
// makes to it, so that no state in between goes unseen.
type observed struct {
	*fake.Net
	after func(op string)
}

func (o *observed) did(op string, err error) error {
	if err == nil && o.after != nil {
		o.after(op)
	}
	return err
}

func (o *observed) AddLink(l rtnl.Link) error { return o.did("AddLink", o.Net.AddLink(l)) }
func (o *observed) SetTunnel(l rtnl.Link) error {
	return o.did("SetTunnel "+l.Name, o.Net.SetTunnel(l))
}
func (o *observed) SetFwMark(n string, m uint32) error {
	return o.did("SetFwMark "+n, o.Net.SetFwMark(n, m))
}
func (o *observed) SetMTU(n string, m int) error { return o.did("SetMTU", o.Net.SetMTU(n, m)) }
func (o *observed) SetMulticast(n string, b bool) error {
	return o.did("SetMulticast", o.Net.SetMulticast(n, b))
}
func (o *observed) SetUp(n string) error   { return o.did("SetUp", o.Net.SetUp(n)) }
func (o *observed) DelLink(n string) error { return o.did("DelLink "+n, o.Net.DelLink(n)) }
func (o *observed) DelLinks(ns []string) []error {
	errs := o.Net.DelLinks(ns)
	o.did("DelLinks", nil)
	return errs
}
func (o *observed) AddAddr(d string, a rtnl.Addr) error { return o.did("AddAddr", o.Net.AddAddr(d, a)) }
func (o *observed) DelAddr(d string, p netip.Prefix) error {
	return o.did("DelAddr", o.Net.DelAddr(d, p))
}
func (o *observed) ReplaceRoute(r rtnl.Route) error {
	return o.did("ReplaceRoute "+r.Dst.String()+" table "+itoa(int(r.Table)), o.Net.ReplaceRoute(r))
}
func (o *observed) DelRoute(r rtnl.Route) error {
	return o.did("DelRoute "+r.Dst.String()+" table "+itoa(int(r.Table)), o.Net.DelRoute(r))
}

// Apply makes each op through the calls above, so that each is checked.
func (o *observed) Apply(ops []rtnl.Op) []error { return fake.Each(o, ops) }
func (o *observed) AddRule(r rtnl.Rule) error {
	return o.did("AddRule "+itoa(int(r.Priority)), o.Net.AddRule(r))
}
func (o *observed) DelRule(r rtnl.Rule) error {
	return o.did("DelRule "+itoa(int(r.Priority)), o.Net.DelRule(r))
}

// remotes are the outer destinations of the tunnels of twoDefaults and
// threeWatched.
var remotes = map[string]string{"gre-a": "203.0.113.5", "gre-b": "192.0.2.9", "gre-c": "192.0.3.9"}

// newBare is newTwoUnderlays on a router whose main table has no default
// route, only a route to gre-a's remote: while a policy moves, traffic
// has a default route only if a tunnel's stays in force at every moment.
func newBare(t *testing.T) *env {
	e := newTwoUnderlays(t)
	e.fk.Net.RemoveRoute(netip.MustParsePrefix("0.0.0.0/0"))
	e.fk.Net.AddForeignRoute(plan.Route{Dst: netip.MustParsePrefix("203.0.113.0/24"), Gw: netip.MustParseAddr("198.51.100.254"), Dev: "eth1"}, fake.ProtoStatic)
	e.before = e.dump()
	return e
}

// watch has check called, with the operation, after every change the
// runs make from now on; check may call e.fail.
func (e *env) watch(check func(op string)) {
	e.sys.Net = &observed{Net: e.fk.Net, after: check}
}

// paths checks the two things that must hold at every moment: each
// tunnel's outer packets, with the mark its link has now, leave by an
// underlay and not into a tunnel (a loop); and, when tunnelled is set,
// traffic to the internet leaves through a tunnel.
func (e *env) paths(op string, tunnelled bool) {
	e.t.Helper()
	links, _ := e.fk.Net.Links()
	for _, l := range links {
		remote, ok := remotes[l.Name]
		if !ok {
			continue
		}
		if got := e.via(remote, l.FwMark); got == "" || strings.HasPrefix(got, "gre-") {
			e.t.Fatalf("after %s: %s's outer packets (fwmark %#x) to %s go out of %q\n%s", op, l.Name, l.FwMark, remote, got, e.dump())
		}
	}
	if got := e.via("8.8.8.8", 0); tunnelled && !strings.HasPrefix(got, "gre-") {
		e.t.Fatalf("after %s: traffic to the internet goes out of %q, not a tunnel\n%s", op, got, e.dump())
	}
}

// recordPolicy is the policy an underlay's record says is in force.
func (e *env) recordPolicy(underlay string) string {
	e.t.Helper()
	rec, err := e.sys.Store.Load(underlay)
	if err != nil || rec == nil {
		e.t.Fatalf("record of %s: %v", underlay, err)
	}
	return rec.Applied().String()
}

// lines is the dump's lines that contain all of subs.
func (e *env) lines(subs ...string) string {
	var out []string
next:
	for _, l := range strings.Split(e.dump(), "\n") {
		for _, s := range subs {
			if !strings.Contains(l, s) {
				continue next
			}
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// Custom values: the links carry the mark, the default route is in the
// table, the rules at the priorities; --dry-run and status show them, and
// down leaves nothing.
func TestPolicyCustomValues(t *testing.T) {
	e := newTwoUnderlays(t)
	e.write(polA + twoDefaults)
	out := e.mustOn("eth1", PhaseUp, func(r *Request) { r.DryRun = true })
	fixture.MustContain(t, "--dry-run", out,
		"# policy routing: table 100, rules at priorities 1000 and 1001, fwmark 0x10\n",
		"ip link set gre-a type gre fwmark 0x10\n",
		"ip route replace default via 10.9.0.1 dev gre-a table 100 metric 1 proto 176\n",
		"ip rule add priority 1000 lookup main suppress_prefixlength 0 proto 176\n",
		"ip rule add priority 1001 not fwmark 0x10 lookup 100 proto 176\n",
	)
	if strings.Contains(out, "18247") || strings.Contains(out, "0x4747") || strings.Contains(out, "3270") {
		t.Errorf("--dry-run shows a default value:\n%s", out)
	}
	e.mustOn("eth1", PhaseUp)
	e.mustOn("eth2", PhaseUp)
	if got, want := e.defaultRoute(), bDefaultA+"\n"+aDefaultA+"\n"+origDefault; got != want {
		t.Errorf("default routes\n%s\nwant\n%s", got, want)
	}
	if got := e.rules(); got != rulesA {
		t.Errorf("rules\n%s\nwant\n%s", got, rulesA)
	}
	if got := e.lines("link gre-", "fwmark 0x10 "); strings.Count(got, "\n") != 1 {
		t.Errorf("links without fwmark 0x10:\n%s", e.dump())
	}
	if got := e.via("8.8.8.8", 0); got != "gre-a" {
		t.Errorf("traffic goes out of %q", got)
	}
	for _, tun := range []string{"gre-a", "gre-b"} {
		if got := e.via(remotes[tun], 0x10); strings.HasPrefix(got, "gre-") {
			t.Errorf("%s's outer packets go into %s", tun, got)
		}
	}
	for _, u := range []string{"eth1", "eth2"} {
		if got := e.recordPolicy(u); got != "table 100, rules at priorities 1000 and 1001, fwmark 0x10" {
			t.Errorf("record of %s: policy %s", u, got)
		}
	}
	if out := e.mustOn("eth1", PhaseUp) + e.mustOn("eth2", PhaseUp); out != "" {
		t.Errorf("a second up changed things:\n%s", out)
	}

	var buf strings.Builder
	if drift, err := statusOf(t, Request{Config: e.cfg, AllowInsecure: true}, e.sys, &buf); err != nil || drift {
		t.Errorf("status: drift %v, %v\n%s", drift, err, buf.String())
	}
	if !strings.Contains(buf.String(), "policy routing: table 100, rules at priorities 1000 and 1001, fwmark 0x10\n") {
		t.Errorf("status does not show the policy in use:\n%s", buf.String())
	}
	buf.Reset()
	if _, err := jsonStatusOf(t, Request{Config: e.cfg, AllowInsecure: true}, e.sys, &buf); err != nil {
		t.Fatal(err)
	}
	var sts []TunnelStatus
	if err := json.Unmarshal([]byte(buf.String()), &sts); err != nil {
		t.Fatal(err)
	}
	for _, st := range sts {
		if st.Policy == nil || *st.Policy != (plan.Policy{Table: 100, Priority: 1000, Mark: 0x10}) {
			t.Errorf("status --json of %s: policy %v\n%s", st.Tunnel, st.Policy, buf.String())
		}
	}

	e.mustOn("eth1", PhaseDown)
	e.mustOn("eth2", PhaseDown)
	diff(t, "after down", e.dump(), e.before)
}

// A change of policy while tunnels are up on two underlays: the next up,
// of either, moves all of them, the links' marks, the default routes and
// the rules, and at no moment in between does traffic leave by anything
// but a tunnel, or an outer packet go into a tunnel. Twice: on a router
// whose main table has a default route, by which gre-a's outer packets
// find their remote (so only the marks keep them out of the tunnels'
// table), and on one whose main table has none (so traffic has a default
// route only while a tunnel's is in force). The other underlay's record
// follows; its own up then has nothing to do.
func TestPolicyChangeWhileUp(t *testing.T) {
	for _, bare := range []bool{false, true} {
		t.Run(map[bool]string{false: "main default", true: "no main default"}[bare], func(t *testing.T) {
			policyChangeWhileUp(t, bare)
		})
	}
}

func policyChangeWhileUp(t *testing.T, bare bool) {
	for _, tc := range []struct{ name, from, to, toRules string }{
		{"defaults to all three", "", polA, rulesA},
		{"all three to defaults", polA, "", ourRules},
		{"table only", "", "[policy]\ntable = 100\n", "rule 4 32700: lookup main suppress_prefixlength 0 proto 176\nrule 4 32701: not fwmark 0x4747 lookup 100 proto 176"},
		{"fwmark only", "", "[policy]\nfwmark = 0x10\n", "rule 4 32700: lookup main suppress_prefixlength 0 proto 176\nrule 4 32701: not fwmark 0x10 lookup 18247 proto 176"},
		{"priority only, lower", "", "[policy]\npriority = 100\n", "rule 4 100: lookup main suppress_prefixlength 0 proto 176\nrule 4 101: not fwmark 0x4747 lookup 18247 proto 176"},
		{"priority by one", "", "[policy]\npriority = 32701\n", "rule 4 32701: lookup main suppress_prefixlength 0 proto 176\nrule 4 32702: not fwmark 0x4747 lookup 18247 proto 176"},
		{"all three, priority higher", "[policy]\npriority = 5\n", "[policy]\ntable = 7\npriority = 30000\nfwmark = 0xffffffff\n", "rule 4 30000: lookup main suppress_prefixlength 0 proto 176\nrule 4 30001: not fwmark 0xffffffff lookup 7 proto 176"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, main := newTwoUnderlays(t), origDefault
			if bare {
				e, main = newBare(t), ""
			}
			e.write(tc.from + twoDefaults)
			e.mustOn("eth1", PhaseUp)
			e.mustOn("eth2", PhaseUp)
			changes := 0
			e.watch(func(op string) {
				changes++
				e.paths(op, true)
			})
			e.write(tc.to + twoDefaults)
			out := e.mustOn("eth1", PhaseUp, func(r *Request) { r.Verbose = true })
			if changes == 0 || !strings.Contains(out, "policy routing moves") {
				t.Fatalf("the up changed nothing (%d changes):\n%s", changes, out)
			}
			cfg := mustLoad(t, Request{Config: e.cfg})
			pol := plan.PolicyOf(cfg.Policy)
			if got := e.rules(); got != tc.toRules {
				t.Errorf("rules\n%s\nwant\n%s\n%s", got, tc.toRules, out)
			}
			table := " table " + itoa(int(pol.Table)) + " "
			want := "route 0.0.0.0/0 via 10.8.0.1 dev gre-b" + table + "metric 2 proto 176\nroute 0.0.0.0/0 via 10.9.0.1 dev gre-a" + table + "metric 1 proto 176"
			if main != "" {
				want += "\n" + main
			}
			if got := e.defaultRoute(); got != want {
				t.Errorf("default routes\n%s\nwant\n%s\n%s", got, want, out)
			}
			mark := fmt.Sprintf(" fwmark %#x ", pol.Mark)
			if got := e.lines("link gre-", mark); strings.Count(got, "\n") != 1 {
				t.Errorf("links not all with%s:\n%s", mark, e.dump())
			}
			for _, u := range []string{"eth1", "eth2"} {
				if got := e.recordPolicy(u); got != pol.String() {
					t.Errorf("record of %s: policy %s, want %s", u, got, pol)
				}
			}
			if e.mainDefault() != main {
				t.Errorf("the main default is %q, was %q", e.mainDefault(), main)
			}
			// The other underlay is in the new form: its up, and another
			// of the first, have nothing to do.
			if out := e.mustOn("eth2", PhaseUp) + e.mustOn("eth1", PhaseUp); out != "" {
				t.Errorf("ups after the move changed things:\n%s", out)
			}
			var buf strings.Builder
			if drift, err := statusOf(t, Request{Config: e.cfg, AllowInsecure: true}, e.sys, &buf); err != nil || drift {
				t.Errorf("status after the move: drift %v, %v\n%s", drift, err, buf.String())
			}
			e.sys.Net = e.fk.Net
			e.mustOn("eth1", PhaseDown)
			e.mustOn("eth2", PhaseDown)
			diff(t, "after down", e.dump(), e.before)
		})
	}
}

// Before the move, status and --dry-run say the policy in use, the one
// the config asks for, and what up would run; neither changes anything.
func TestPolicyChangeShown(t *testing.T) {
	e := newBare(t)
	e.mustOn("eth1", PhaseUp)
	e.mustOn("eth2", PhaseUp)
	e.write(polA + twoDefaults)
	before := e.dump()
	var buf strings.Builder
	drift, err := statusOf(t, Request{Config: e.cfg, AllowInsecure: true}, e.sys, &buf)
	if err != nil || !drift {
		t.Errorf("status: drift %v, %v", drift, err)
	}
	fixture.MustContain(t, "status", buf.String(),
		"policy routing: table 18247, rules at priorities 32700 and 32701, fwmark 0x4747\n",
		"  - the config asks for table 100, rules at priorities 1000 and 1001, fwmark 0x10: up on any underlay moves every underlay to it\n",
		"policy routing: up would run:\n",
		"  ip link set gre-b type gre fwmark 0x10\n",
		"  ip route replace default via 10.8.0.1 dev gre-b table 100 metric 2 proto 176\n",
		"  ip rule del priority 32701 not fwmark 0x4747 lookup 18247 proto 176\n",
	)
	out := e.mustOn("eth2", PhaseUp, func(r *Request) { r.DryRun = true })
	fixture.MustContain(t, "--dry-run", out,
		"# policy routing moves, on every underlay, from table 18247, rules at priorities 32700 and 32701, fwmark 0x4747 to table 100, rules at priorities 1000 and 1001, fwmark 0x10\n",
		"ip link set gre-a type gre fwmark 0x10\n",
		"ip link set gre-b type gre fwmark 0x10\n",
		"ip route del default via 10.9.0.1 dev gre-a table 18247 metric 1\n",
		"ip rule add priority 1001 not fwmark 0x10 lookup 100 proto 176\n",
	)
	diff(t, "after status and --dry-run", e.dump(), before)
	if e.recordPolicy("eth1") != plan.DefaultPolicy.String() {
		t.Errorf("the dry run changed the record")
	}
}

// A down after the config's policy changed, and before any up, removes
// exactly what was made under the old one; the other underlay keeps the
// old policy, intact, until its own up moves it.
func TestPolicyChangeThenDown(t *testing.T) {
	e := newBare(t)
	e.mustOn("eth1", PhaseUp)
	e.mustOn("eth2", PhaseUp)
	afterB := golden2(t, "eth2")
	e.write(polA + twoDefaults)
	e.watch(func(op string) { e.paths(op, true) })
	e.mustOn("eth1", PhaseDown)
	diff(t, "after down of eth1", e.dump(), afterB)
	e.mustOn("eth2", PhaseUp)
	if got := e.defaultRoute(); got != bDefaultA {
		t.Errorf("default routes after up of eth2: %s", got)
	}
	if got := e.rules(); got != rulesA {
		t.Errorf("rules after up of eth2: %s", got)
	}
	e.sys.Net = e.fk.Net
	e.mustOn("eth2", PhaseDown)
	diff(t, "after down of both", e.dump(), e.before)
}

// golden2 is the state of newBare with only underlay u up, by default.
func golden2(t *testing.T, u string) string {
	t.Helper()
	e := newBare(t)
	e.mustOn(u, PhaseUp)
	return e.dump()
}

// gc after a change removes what the config no longer has and leaves the
// rest under the policy in force; the next up moves it; gc of the rest
// leaves nothing.
func TestPolicyChangeGC(t *testing.T) {
	e := newBare(t)
	e.mustOn("eth1", PhaseUp)
	e.mustOn("eth2", PhaseUp)
	e.write(polA + strings.SplitN(twoDefaults, "[[tunnel]]\nname = \"gre-b\"", 2)[0])
	e.mustGC()
	diff(t, "after gc of gre-b", e.dump(), golden2(t, "eth1"))
	e.mustOn("eth1", PhaseUp)
	if e.defaultRoute() != aDefaultA || e.rules() != rulesA {
		t.Errorf("after up:\n%s", e.dump())
	}
	e.write(polA)
	e.mustGC()
	diff(t, "after gc of both", e.dump(), e.before)
}

// A dead peer's withdrawn default moves with the rest, in the record: it
// comes back, when the peer answers, into the new table.
func TestPolicyChangeDeadTunnel(t *testing.T) {
	e := newWatched(t)
	e.mustOn("eth1", PhaseUp)
	e.mustOn("eth2", PhaseUp)
	e.set("eth2", "gre-b", false)
	e.write(polA + watchedTwo)
	e.mustOn("eth1", PhaseUp)
	if e.lines(" via ", "dev gre-b") != "" {
		t.Errorf("the dead tunnel's routes came back:\n%s", e.lines(" via ", "dev gre-b"))
	}
	var tables []uint32
	for _, r := range e.entry("eth2", "gre-b").Withdrawn {
		tables = append(tables, r.Table)
	}
	if len(tables) != 2 || tables[0] != 0 || tables[1] != 100 {
		t.Errorf("withdrawn routes' tables %v, want the LAN route in main and the default in 100", tables)
	}
	e.set("eth2", "gre-b", true)
	if !e.has(bDefaultA) || e.lines("table 18247") != "" {
		t.Errorf("after the peer answers:\n%s", e.dump())
	}
}

// A move that fails at any of its changes rolls back to the old policy,
// with the kernel as it was and the records as they were, and with the
// paths whole at every moment of the way there and back; the next up
// moves it all.
func TestPolicyChangeRollback(t *testing.T) {
	for _, op := range []string{"AddRule", "ReplaceRoute", "SetFwMark", "DelRule", "DelRoute"} {
		for nth := 1; ; nth++ {
			e := newBare(t)
			e.mustOn("eth1", PhaseUp)
			e.mustOn("eth2", PhaseUp)
			before, recs := e.dump(), e.records()
			e.write(polA + twoDefaults)
			e.watch(func(what string) { e.paths(what, true) })
			e.fk.Net.FailNth(op, nth)
			out, err := e.on("eth1", PhaseUp)
			if err == nil {
				if nth == 1 {
					t.Errorf("the move makes no %s", op)
				}
				break
			}
			if !strings.Contains(err.Error(), "rolled back") {
				t.Fatalf("%s #%d fails: %v\n%s", op, nth, err, out)
			}
			diff(t, op+" #"+itoa(nth)+" fails: the kernel", e.dump(), before)
			if got := e.records(); got != recs {
				t.Errorf("%s #%d fails: records\n%s\nwant\n%s", op, nth, got, recs)
			}
			e.fk.Net.Disarm()
			e.mustOn("eth1", PhaseUp)
			if e.rules() != rulesA || !e.has(aDefaultA) || !e.has(bDefaultA) {
				t.Errorf("%s #%d: the up after the failure:\n%s", op, nth, e.dump())
			}
		}
	}
}

// records is every record file, for comparisons.
func (e *env) records() string {
	e.t.Helper()
	var b strings.Builder
	for _, u := range []string{"eth1", "eth2", "eth3"} {
		data, err := os.ReadFile(filepath.Join(e.sys.Store.Dir, u+".json"))
		if err == nil {
			b.WriteString(u + ":\n" + string(data))
		}
	}
	return b.String()
}

// A change must reach every underlay at once: with another record that
// cannot be read, up keeps the policy in force, and says why.
func TestPolicyChangeUnreadableRecord(t *testing.T) {
	e := newBare(t)
	e.mustOn("eth1", PhaseUp)
	e.mustOn("eth2", PhaseUp)
	path := filepath.Join(e.sys.Store.Dir, "eth2.json")
	if err := os.WriteFile(path, []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := e.dump()
	e.write(polA + twoDefaults)
	out := e.mustOn("eth1", PhaseUp)
	if !strings.Contains(out, "warning: the config's [policy] (table 100, rules at priorities 1000 and 1001, fwmark 0x10) is not applied: the record of eth2 cannot be read") {
		t.Errorf("no warning:\n%s", out)
	}
	diff(t, "after the up", e.dump(), before)
	if e.recordPolicy("eth1") != plan.DefaultPolicy.String() {
		t.Errorf("the record of eth1 says %s", e.recordPolicy("eth1"))
	}
}

// An underlay whose tunnels came from another config is moved too (the
// policy is the router's), and the up says that config's own up will
// move them back unless it has the same [policy].
func TestPolicyChangeOtherConfig(t *testing.T) {
	e := newBare(t)
	onlyB := "[[tunnel]]\nname = \"gre-b\"" + strings.SplitN(twoDefaults, "[[tunnel]]\nname = \"gre-b\"", 2)[1]
	other := filepath.Join(t.TempDir(), "other.toml")
	if err := os.WriteFile(other, []byte(onlyB), 0o644); err != nil {
		t.Fatal(err)
	}
	e.write(strings.SplitN(twoDefaults, "[[tunnel]]\nname = \"gre-b\"", 2)[0])
	e.mustOn("eth1", PhaseUp)
	e.mustOn("eth2", PhaseUp, func(r *Request) { r.Config = other })
	e.write(polA + strings.SplitN(twoDefaults, "[[tunnel]]\nname = \"gre-b\"", 2)[0])
	out := e.mustOn("eth1", PhaseUp)
	if !strings.Contains(out, "warning: the tunnels on eth2 came from "+other+", whose policy routing is table 18247, rules at priorities 32700 and 32701, fwmark 0x4747: its next up moves every underlay back; give both configs the same [policy]") {
		t.Errorf("no warning:\n%s", out)
	}
	if !e.has(bDefaultA) || e.rules() != rulesA {
		t.Errorf("eth2 not moved:\n%s", e.dump())
	}
}

// TestPolicyInvariant runs seeded random sequences of up, down, a peer
// found dead or alive, and a change of the config's [policy], on three
// underlays with a default_route tunnel each, with or without a default
// route in main, and checks the kernel after every single change a run
// makes and against a model after every step:
//   - no tunnel's outer packets, with the mark its link has at that
//     moment, ever go into a tunnel;
//   - during an up or down that leaves a live tunnel's default in force
//     before and after, traffic leaves through a tunnel at every moment;
//   - after each step: the policy in force is the config's as of the last
//     up (every up applies it, on every underlay); its table holds exactly
//     the default routes of the live tunnels that are up, at their config
//     place; its rules exist iff a tunnel is up; every link has its mark;
//     the records say so; main's default is untouched;
//   - after every tunnel is down, nothing of gre-hook's is left.
func TestPolicyInvariant(t *testing.T) {
	policies := []string{"", polA, "[policy]\ntable = 7\n", "[policy]\nfwmark = 0x20\npriority = 32000\n"}
	underlays := []string{"eth1", "eth2", "eth3"}
	name := map[string]string{"eth1": "gre-a", "eth2": "gre-b", "eth3": "gre-c"}
	gw := map[string]string{"eth1": "10.9.0.1", "eth2": "10.8.0.1", "eth3": "10.7.0.1"}
	place := map[string]int{"eth1": 1, "eth2": 2, "eth3": 3}
	for seed := int64(1); seed <= 40; seed++ {
		seed := seed
		t.Run("seed"+itoa(int(seed)), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			e, main := newTwoUnderlays(t), origDefault
			if seed%2 == 0 {
				e, main = newBare(t), ""
			}
			e.fk.Net.AddDevice("eth3", 1500)
			e.fk.Net.AddDeviceAddr("eth3", netip.MustParsePrefix("192.0.3.1/24"))
			before := e.dump()
			cfgPol, applied := 0, 0
			e.write(policies[cfgPol] + threeWatched)
			up, dead := map[string]bool{}, map[string]bool{}
			var steps []string
			tunnelled := false
			e.watch(func(op string) {
				e.t.Helper()
				e.paths(op+" in "+strings.Join(steps, ", "), tunnelled)
			})
			live := func(except string) bool {
				for _, u := range underlays {
					if u != except && up[u] && !dead[u] {
						return true
					}
				}
				return false
			}
			for step := 0; step < 30; step++ {
				u := underlays[rng.Intn(3)]
				switch op := rng.Intn(10); {
				case op < 3:
					steps = append(steps, "up "+u)
					tunnelled = live("")
					e.mustOn(u, PhaseUp)
					up[u], applied = true, cfgPol
				case op < 5:
					steps = append(steps, "down "+u)
					tunnelled = live(u)
					e.mustOn(u, PhaseDown)
					up[u], dead[u] = false, false
				case op < 6:
					steps = append(steps, "dead "+u)
					tunnelled = false
					e.set(u, name[u], false)
					dead[u] = up[u]
				case op < 7:
					steps = append(steps, "alive "+u)
					tunnelled = false
					e.set(u, name[u], true)
					dead[u] = false
				default:
					cfgPol = rng.Intn(len(policies))
					steps = append(steps, "policy "+itoa(cfgPol))
					e.write(policies[cfgPol] + threeWatched)
				}
				at := strings.Join(steps, ", ")
				pol := plan.PolicyOf(mustLoad(t, Request{Config: e.cfg}).Policy)
				if applied != cfgPol {
					e.write(policies[applied] + threeWatched)
					pol = plan.PolicyOf(mustLoad(t, Request{Config: e.cfg}).Policy)
					e.write(policies[cfgPol] + threeWatched)
				}
				if got := e.mainDefault(); got != main {
					t.Fatalf("after %s: main default %q, want %q", at, got, main)
				}
				var table, rules []string
				anyUp := false
				for _, u := range underlays {
					anyUp = anyUp || up[u]
					if up[u] && !dead[u] {
						table = append(table, fmt.Sprintf("route 0.0.0.0/0 via %s dev %s table %d metric %d proto 176", gw[u], name[u], pol.Table, place[u]))
					}
					if up[u] {
						if got := e.lines("link "+name[u]+" ", fmt.Sprintf(" fwmark %#x ", pol.Mark)); got == "" {
							t.Fatalf("after %s: %s has not fwmark %#x\n%s", at, name[u], pol.Mark, e.dump())
						}
						if got := e.recordPolicy(u); got != pol.String() {
							t.Fatalf("after %s: the record of %s says %s, want %s", at, u, got, pol)
						}
					}
				}
				sort.Strings(table)
				if got := e.lines("route 0.0.0.0/0 ", " table "); got != strings.Join(table, "\n") {
					t.Fatalf("after %s: gre-hook's default routes\n%s\nwant\n%s", at, got, strings.Join(table, "\n"))
				}
				if anyUp {
					for _, r := range pol.Rules(4) {
						rules = append(rules, "rule "+describeRuleLine(r))
					}
				}
				if got := e.rules(); got != strings.Join(rules, "\n") {
					t.Fatalf("after %s: rules\n%s\nwant\n%s", at, got, strings.Join(rules, "\n"))
				}
			}
			tunnelled = false
			for _, u := range underlays {
				e.mustOn(u, PhaseDown)
			}
			diff(t, "after "+strings.Join(steps, ", ")+" and all down", e.dump(), before)
		})
	}
}

// describeRuleLine is a rule of gre-hook's as the fake kernel's dump
// shows it.
func describeRuleLine(r plan.Rule) string {
	s := fmt.Sprintf("4 %d:", r.Priority)
	if r.Mark != 0 {
		s += fmt.Sprintf(" not fwmark %#x", r.Mark)
	}
	if r.Table == 0 {
		s += " lookup main suppress_prefixlength 0"
	} else {
		s += fmt.Sprintf(" lookup %d", r.Table)
	}
	return s + " proto 176"
}

// mustContain fails the test for each of wants that out, what the
// command named lacks.
