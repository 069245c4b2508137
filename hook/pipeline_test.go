package hook

import (
	"errors"
	"strings"
	"testing"

	"github.com/gre-hook/gre-hook/hook/fake"
	"github.com/gre-hook/gre-hook/hook/internal/fixture"
)

// New tunnels go to the kernel a phase at a time: every link, then every
// address and link state, then every route, each phase one pipeline.
func TestUpPipelinesNewTunnels(t *testing.T) {
	e := newEnv(t)
	e.write(many)
	out := e.mustRun(PhaseUp)
	if got := e.fk.Net.Calls("Apply"); got != 3 {
		t.Errorf("%d pipelines for three new tunnels, want 3 (links, addresses and states, routes):\n%s", got, out)
	}
	first := func(s string) int { return strings.Index(out, s) }
	links := []string{"ip tunnel add gre-site2", "ip -6 tunnel add gre-v6", "ip link add tap-lab"}
	for _, l := range links {
		if first(l) < 0 {
			t.Fatalf("no %q in\n%s", l, out)
		}
	}
	if a := first("ip addr add"); a < first(links[2]) {
		t.Errorf("an address before the last link:\n%s", out)
	}
	if r, u := first("ip route replace"), strings.LastIndex(out, " up\n"); r < u {
		t.Errorf("a route before the last link is up:\n%s", out)
	}
	// What --dry-run and status print is in the order up runs.
	e.mustRun(PhaseDown)
	if c := cmds(out); !strings.Contains(e.dryRun(), c) || c == "" {
		diff(t, "--dry-run's commands against up's", e.log.String(), c)
	}
}

// cmds is the commands of a run's log ("gre-hook: + CMD"), one a line.
func cmds(log string) string {
	var out strings.Builder
	for _, l := range strings.SplitAfter(log, "\n") {
		if strings.HasPrefix(l, "gre-hook: + ") {
			out.WriteString(strings.TrimPrefix(l, "gre-hook: + "))
		}
	}
	return out.String()
}

// A change that fails in the middle of a pipeline: the kernel made the
// ones after it too, and the rollback takes back exactly what was made,
// those included, leaving the machine as it was.
func TestPipelineFailureInTheMiddleRollsBackWhatWasMade(t *testing.T) {
	for _, tc := range []struct {
		op  string
		nth int
	}{
		{"AddLink", 2},      // gre-v6: gre-site2 and tap-lab are made
		{"AddAddr", 2},      // the second of four addresses
		{"SetUp", 2},        // the second link's
		{"ReplaceRoute", 1}, // the first of three routes
	} {
		t.Run(tc.op, func(t *testing.T) {
			e := newEnv(t)
			e.write(many)
			e.fk.Net.FailNth(tc.op, tc.nth)
			calls := e.fk.Net.Calls(tc.op)
			out, err := e.run(PhaseUp)
			if !errors.Is(err, fake.ErrInjected) {
				t.Fatalf("up: %v, want the injected failure\n%s", err, out)
			}
			if e.fk.Net.Calls(tc.op)-calls <= tc.nth {
				t.Errorf("%s called %d times: the pipeline stopped at the failure", tc.op, e.fk.Net.Calls(tc.op)-calls)
			}
			diff(t, "state after the rolled-back up", e.dump(), baseline)
			if rec := e.record(); rec != "" {
				t.Errorf("record left:\n%s", rec)
			}
		})
	}
}

// The socket fails after a pipeline went out, and its answers from one
// request on are lost: the kernel made those changes, or some of them,
// and nobody can say which. The rollback undoes each as if made (an
// undo that finds nothing, as for an address the kernel in fact refused,
// is no failure): the links a lost pipeline made go, gre-site2's LAN comes
// back to it, and the machine and the record are as the up before left
// them.
func TestLostAnswersRollBackAsIfMade(t *testing.T) {
	// gre-site2's LAN moves to the new gre-v6, and gre-site2 gets another.
	moved := strings.Replace(strings.Replace(many, fixture.Config(fixture.Site2()), fixture.Config(fixture.Site2().Routing("192.168.3.0/24")), 1),
		"to = \"192.168.10.0/24\"\ntable = 100\nmetric = 5\n", "to = \"192.168.2.0/24\"\n", 1)
	if moved == many || !strings.Contains(moved, "192.168.3.0/24") {
		t.Fatal("the edit of the config did not take")
	}
	for _, tc := range []struct {
		name, op string
		nth      int
		refuse   bool // the lost one was in fact refused
		fresh    bool // no up before: every link is made in one pipeline
	}{
		{"routes, one taken over from another tunnel", "ReplaceRoute", 1, false, false},
		{"addresses, the lost one refused", "AddAddr", 2, true, false},
		{"links, on a fresh machine", "AddLink", 2, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			if !tc.fresh {
				e.write(fixture.Config(fixture.Site2()))
				e.mustRun(PhaseUp)
			}
			before := e.dump()
			rec := e.record()
			e.write(moved)
			e.fk.Net.LoseAnswers(tc.op, tc.nth)
			if tc.refuse {
				e.fk.Net.FailNth(tc.op, tc.nth)
			}
			out, err := e.run(PhaseUp)
			if !errors.Is(err, fake.ErrAnswerLost) {
				t.Fatalf("up: %v, want the lost answers\n%s", err, out)
			}
			if strings.Contains(out, "undoing") || strings.Contains(err.Error(), "undoing") {
				t.Errorf("the rollback failed to undo something:\n%v\n%s", err, out)
			}
			diff(t, "state after the rolled-back up", e.dump(), before)
			diff(t, "record after the rolled-back up", e.record(), rec)
		})
	}
}
