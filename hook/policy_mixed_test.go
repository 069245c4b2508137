package hook

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gre-hook/gre-hook/hook/engine"
	"github.com/gre-hook/gre-hook/hook/internal/fixture"
	"github.com/gre-hook/gre-hook/hook/plan"
)

// A move of the policy is left half done (a crash, a record that could
// not be saved) and then another record cannot be read, so no move can
// finish it. What an up may apply then is the policy the kernel is in,
// whatever the records say: another one's rules would send the outer
// packets of links still marked for the old one into a tunnel.

// threeUp has gre-a, gre-b and gre-c up on eth1, eth2 and eth3 under the
// default policy, gre-c's remote reached by main's default route (so that
// only the rules keep its outer packets out of the tunnels), every change
// from then on checked for loops, and eth3's record unreadable.
func threeUp(t *testing.T) *env {
	e := newThree(t)
	e.fk.Net.RemoveRoute(netip.MustParsePrefix("192.0.3.0/24"))
	if err := os.WriteFile(filepath.Join(e.sys.Store.Dir, "eth3.json"), []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.watch(func(op string) { e.paths(op, true) })
	return e
}

// newThree has gre-a, gre-b and gre-c up on eth1, eth2 and eth3 under the
// default policy.
func newThree(t *testing.T) *env {
	e := newTwoUnderlays(t)
	e.fk.Net.AddDevice("eth3", 1500)
	e.fk.Net.AddDeviceAddr("eth3", netip.MustParsePrefix("192.0.3.1/24"))
	e.write(threeWatched)
	for _, u := range []string{"eth1", "eth2", "eth3"} {
		e.mustOn(u, PhaseUp)
	}
	return e
}

// saveUnder rewrites an underlay's record as if it had been moved to the
// policy of cfg, leaving the kernel as it is.
func (e *env) saveUnder(underlay, cfg string) {
	e.t.Helper()
	rec, err := e.sys.Store.Load(underlay)
	if err != nil || rec == nil {
		e.t.Fatalf("record of %s: %v", underlay, err)
	}
	e.write(cfg + threeWatched)
	pol := plan.PolicyOf(mustLoad(e.t, Request{Config: e.cfg}).Policy)
	if err := e.sys.Store.Save(engine.MovedRecord(rec, pol, false)); err != nil {
		e.t.Fatal(err)
	}
}

// eth1's record says the new policy, eth2's the old one, as the kernel
// still is: up on eth1 keeps the kernel's, says why, and loops nothing.
func TestPolicyHalfMovedRecordAhead(t *testing.T) {
	e := threeUp(t)
	e.saveUnder("eth1", polA)
	before := e.dump()
	e.write(polA + threeWatched)
	out := e.mustOn("eth1", PhaseUp)
	fixture.MustContain(t, "up", out, "warning: the config's [policy] (table 100, rules at priorities 1000 and 1001, fwmark 0x10) is not applied: the record of eth3 cannot be read")
	diff(t, "after the up", e.dump(), before)
	if got := e.recordPolicy("eth1"); got != plan.DefaultPolicy.String() {
		t.Errorf("the record of eth1 says %s, the kernel is in %s", got, plan.DefaultPolicy)
	}
}

// The kernel holds both policies (a move stopped between re-marking two
// links): no policy is safe to apply, so up refuses and changes nothing.
func TestPolicyHalfMovedKernelRefused(t *testing.T) {
	e := threeUp(t)
	if err := e.fk.Net.SetFwMark("gre-a", 0x10); err != nil {
		t.Fatal(err)
	}
	before, records := e.dump(), e.records()
	for _, cfg := range []string{"", polA} {
		e.write(cfg + threeWatched)
		for _, dry := range []bool{false, true} {
			out, err := e.on("eth1", PhaseUp, func(r *Request) { r.DryRun = dry })
			if err == nil || !strings.Contains(err.Error(), "the record of eth3 cannot be read") || !strings.Contains(err.Error(), "nothing was changed") {
				t.Errorf("config %q, dry run %v: up gave %v\n%s", cfg, dry, err, out)
			}
		}
	}
	diff(t, "after the refused ups", e.dump(), before)
	if e.records() != records {
		t.Errorf("the records changed:\n%s\nwere\n%s", e.records(), records)
	}
	var buf strings.Builder
	drift, err := statusOf(t, Request{Config: e.cfg, AllowInsecure: true}, e.sys, &buf)
	if err != nil || !drift || !strings.Contains(buf.String(), "the record of eth3 cannot be read") || strings.Contains(buf.String(), "up would run") {
		t.Errorf("status: drift %v, %v, and no command up would run, as it changes nothing\n%s", drift, err, buf.String())
	}
}

// The move finished in the kernel but eth2's record kept the old policy:
// up on eth1 applies the new one, which the kernel is in, and rewrites
// eth2's record to say so, so that eth2's down takes its default route
// from the table it is in.
func TestPolicyHalfMovedRecordBehind(t *testing.T) {
	e := newThree(t)
	old, err := os.ReadFile(filepath.Join(e.sys.Store.Dir, "eth2.json"))
	if err != nil {
		t.Fatal(err)
	}
	e.write(polA + threeWatched)
	e.mustOn("eth1", PhaseUp)
	for path, data := range map[string][]byte{"eth2.json": old, "eth3.json": []byte("{garbage")} {
		if err := os.WriteFile(filepath.Join(e.sys.Store.Dir, path), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e.watch(func(op string) { e.paths(op, true) })
	before := e.dump()
	note := "the records of eth2 said another policy routing than the kernel's, table 100, rules at priorities 1000 and 1001, fwmark 0x10; they are rewritten to say so"
	fixture.MustContain(t, "--dry-run", e.mustOn("eth1", PhaseUp, func(r *Request) { r.DryRun = true }), "# "+note)
	if got := e.recordPolicy("eth2"); got == "table 100, rules at priorities 1000 and 1001, fwmark 0x10" {
		t.Errorf("the dry run rewrote the record of eth2")
	}
	out := e.mustOn("eth1", PhaseUp)
	fixture.MustContain(t, "up", out, "warning: "+note)
	diff(t, "after the up", e.dump(), before)
	if got, want := e.recordPolicy("eth2"), "table 100, rules at priorities 1000 and 1001, fwmark 0x10"; got != want {
		t.Errorf("the record of eth2 says %s, want %s\n%s", got, want, out)
	}
	e.mustOn("eth2", PhaseDown)
	if got := e.lines("gre-b"); got != "" {
		t.Errorf("gre-b left after its down:\n%s", got)
	}
}

// When the records all say the config's policy but the kernel holds a
// link of gre-hook's under another, up moves it, and --dry-run and the
// verbose log say from what.
func TestPolicyMoveFromTheKernelNamed(t *testing.T) {
	e := newTwoUnderlays(t)
	e.mustOn("eth1", PhaseUp)
	e.mustOn("eth2", PhaseUp)
	if err := e.fk.Net.SetFwMark("gre-b", 0x10); err != nil {
		t.Fatal(err)
	}
	from := "# policy routing moves, on every underlay, from what the kernel holds under another (gre-b marked 0x10) to table 18247, rules at priorities 32700 and 32701, fwmark 0x4747\n"
	out := e.mustOn("eth1", PhaseUp, func(r *Request) { r.DryRun = true })
	fixture.MustContain(t, "--dry-run", out, from, "ip link set gre-b type gre fwmark 0x4747\n")
	out = e.mustOn("eth1", PhaseUp, func(r *Request) { r.Verbose = true })
	fixture.MustContain(t, "up", out, "policy routing moves, on every underlay, from what the kernel holds under another (gre-b marked 0x10) to table 18247")
	if got := e.lines("link gre-b", "fwmark 0x4747 "); got == "" {
		t.Errorf("gre-b not re-marked:\n%s", e.dump())
	}
}

// A config's [policy] that is not applied, because another record cannot
// be read, is drift for status with --json as without: the JSON has no
// line for it, so the exit code is all it says.
func TestPolicyNotAppliedIsDriftInJSON(t *testing.T) {
	e := newBare(t)
	e.mustOn("eth1", PhaseUp)
	e.mustOn("eth2", PhaseUp)
	if err := os.WriteFile(filepath.Join(e.sys.Store.Dir, "eth2.json"), []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.write(polA + twoDefaults)
	req := Request{Config: e.cfg, AllowInsecure: true, Iface: "eth1"}
	for _, asJSON := range []bool{false, true} {
		var buf strings.Builder
		if drift, err := NewEngine(e.sys).Status(req, mustLoad(t, req), &buf, asJSON); err != nil || !drift || !strings.Contains(buf.String(), "the record of eth2 cannot be read") {
			t.Errorf("status (json %v): drift %v, %v\n%s", asJSON, drift, err, buf.String())
		}
	}
}
