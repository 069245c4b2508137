package hook

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/gre-hook/gre-hook/hook/engine"
	"github.com/gre-hook/gre-hook/hook/gre"
	"github.com/gre-hook/gre-hook/hook/rtnl"
)

// Edits of a live tunnel: what the kernel changes in place keeps the
// link's index, which smcroute and pimd key their VIFs by; only a new
// kind makes the link again. The up_command hears of new links, addresses
// and the multicast flag, not of changes in place.

// site1Notify is site1 with an up_command.
var site1Notify = strings.Replace(site1, `mss = "pmtu"`, "mss = \"pmtu\"\nup_command = [\"/usr/local/bin/mc-reload\"]", 1)

// site1Retuned is site1Notify with a new ttl, mtu and remote.
var site1Retuned = strings.NewReplacer(`remote = "203.0.113.1"`, `remote = "203.0.113.9"`, "ttl = 255", "ttl = 64\nmtu = 1400").Replace(site1Notify)

func (e *env) index(name string) int {
	e.t.Helper()
	l, err := engine.LinkNamed(e.fk.Net, name)
	if err != nil || l == nil {
		e.t.Fatalf("link %s: %v", name, err)
	}
	return l.Index
}

func TestEditInPlace(t *testing.T) {
	e := newEnv(t)
	e.write(site1Notify)
	e.mustRun(PhaseUp)
	index := e.index("gre-site2")
	if len(e.commands) != 1 {
		t.Fatalf("the first up ran %v", e.commands)
	}
	e.commands = nil

	e.write(site1Retuned)
	diff(t, "dry run", e.dryRun(), `ip link set gre-site2 type gre remote 203.0.113.9 ttl 64  # in place, was remote 203.0.113.1 ttl 255
ip link set gre-site2 mtu 1400
`)
	diff(t, "log", e.mustRun(PhaseUp), `gre-hook: + ip link set gre-site2 type gre remote 203.0.113.9 ttl 64  # in place, was remote 203.0.113.1 ttl 255
gre-hook: + ip link set gre-site2 mtu 1400
`)
	if i := e.index("gre-site2"); i != index {
		t.Errorf("gre-site2 was made again: index %d -> %d", index, i)
	}
	diff(t, "kernel after the edit", e.dump(), golden(t, site1Retuned))
	if len(e.commands) != 0 {
		t.Errorf("a change in place ran the up_command: %v", e.commands)
	}
	rec, _ := e.sys.Store.Load("eth1")
	if r := rec.Find("gre-site2"); r == nil || r.Remote.String() != "203.0.113.9" {
		t.Errorf("record: %+v", r)
	}
	if out := e.mustRun(PhaseUp); out != "" {
		t.Errorf("a second up logged:\n%s", out)
	}

	// New addresses are news for the daemons.
	e.write(strings.Replace(site1Retuned, "10.0.0.1/30", "10.0.0.5/30", 1))
	if out := e.mustRun(PhaseUp); !strings.Contains(out, "/usr/local/bin/mc-reload") {
		t.Errorf("no up_command after an address change:\n%s", out)
	}
	if len(e.commands) != 1 || e.index("gre-site2") != index {
		t.Errorf("commands %v, index %d -> %d", e.commands, index, e.index("gre-site2"))
	}

	// A new kind is not: the link is made again, and the dry run says why.
	e.commands = nil
	tap := strings.Replace(site1Retuned, `mode = "gre"`, `mode = "gretap"`, 1)
	e.write(tap)
	if out := e.dryRun(); !strings.HasPrefix(out, "ip link del gre-site2  # mode gretap, was gre: the kernel cannot change a link's kind\nip link add gre-site2 type gretap ") {
		t.Errorf("dry run of a new mode:\n%s", out)
	}
	e.mustRun(PhaseUp)
	if e.index("gre-site2") == index || len(e.commands) != 1 {
		t.Errorf("a new mode: index %d (was %d), commands %v", e.index("gre-site2"), index, e.commands)
	}
	diff(t, "kernel after a new mode", e.dump(), golden(t, tap))
	e.mustRun(PhaseDown)
	diff(t, "after down", e.dump(), baseline)
}

// Every kind changes in place; keys, tos and pmtudisc too.
func TestEditInPlaceEveryKind(t *testing.T) {
	e := newEnv(t)
	e.write(many)
	e.mustRun(PhaseUp)
	before := map[string]int{}
	for _, n := range []string{"gre-site2", "gre-v6", "tap-lab"} {
		before[n] = e.index(n)
	}
	edited := strings.NewReplacer(
		`remote = "203.0.113.1"`, "remote = \"203.0.113.1\"\nkey = 9\ntos = 16",
		"key = 42", "ikey = 43\nokey = 44\nttl = 32",
		"ikey = 7\nokey = 8", "key = 77",
		"pmtudisc = false\nttl = 0", "pmtudisc = true\nttl = 3",
	).Replace(many)
	e.write(edited)
	out := e.mustRun(PhaseUp)
	for _, want := range []string{
		"ip link set gre-site2 type gre tos 0x10 key 9  # in place, was tos 0x0 nokey\n",
		"ip link set gre-v6 type ip6gre ttl 32 ikey 43 okey 44  # in place, was ttl 255 key 42\n",
		"ip link set tap-lab type gretap ttl 3 pmtudisc key 77  # in place, was ttl 0 nopmtudisc ikey 7 okey 8\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %q:\n%s", want, out)
		}
	}
	for n, i := range before {
		if e.index(n) != i {
			t.Errorf("%s was made again", n)
		}
	}
	diff(t, "kernel after the edit", e.dump(), golden(t, edited))
	if out := e.mustRun(PhaseUp); out != "" {
		t.Errorf("a second up logged:\n%s", out)
	}
}

// A failure after a change in place, or in it, puts the old attributes
// back on the same link, and the record as it was.
func TestEditInPlaceRollsBack(t *testing.T) {
	for _, tc := range []struct {
		name, config string
		fail         func(e *env)
	}{
		{"the change in place fails", site1Retuned, func(e *env) { e.fk.Net.FailNth("SetTunnel", 1) }},
		{"the mtu after it fails", site1Retuned, func(e *env) { e.fk.Net.FailNth("SetMTU", 1) }},
		{"the MSS rules fail", strings.Replace(site1Retuned, `mss = "pmtu"`, "mss = 1300", 1), func(e *env) { e.fk.V4.FailNth("Restore", 1) }},
		{"the up_command of a new address fails", strings.Replace(site1Retuned, "10.0.0.1/30", "10.0.0.5/30", 1), func(e *env) {
			e.sys.Command = func(context.Context, []string, []string) error { return errors.New("exit status 1") }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.write(site1Notify)
			e.mustRun(PhaseUp)
			index, dump, rec := e.index("gre-site2"), e.dump(), e.record()
			e.write(tc.config)
			tc.fail(e)
			out, err := e.run(PhaseUp)
			if err == nil || !strings.HasSuffix(err.Error(), "; rolled back") {
				t.Fatalf("up: %v\n%s", err, out)
			}
			if !strings.Contains(out, "gre-hook: + ip link set gre-site2 type gre remote 203.0.113.1 ttl 255\n") &&
				!strings.Contains(err.Error(), "ip link set gre-site2 type gre remote 203.0.113.9 ttl 64: SetTunnel: injected failure") {
				t.Errorf("the rollback did not put the attributes back:\n%s", out)
			}
			// The log names every revert, the MTU's too, once it was
			// changed (the MSS and up_command failures come after it).
			if tc.name != "the change in place fails" && tc.name != "the mtu after it fails" &&
				!strings.Contains(out, "gre-hook: + ip link set gre-site2 mtu 1476\n") {
				t.Errorf("the rollback's log does not put the mtu back:\n%s", out)
			}
			diff(t, "kernel after the rollback", e.dump(), dump)
			if i := e.index("gre-site2"); i != index {
				t.Errorf("the rollback made the link again: index %d -> %d", index, i)
			}
			if got := e.record(); got != rec {
				t.Errorf("record after the rollback:\n%s\nwant:\n%s", got, rec)
			}
			e.sys.Command = func(context.Context, []string, []string) error { return nil }
			e.mustRun(PhaseUp)
			diff(t, "kernel after a later up", e.dump(), golden(t, tc.config))
		})
	}
}

// A change in place to the endpoints of a stale link of gre-hook's (a
// tunnel dropped from the config) deletes that one first, as for a new
// link; one to those of a link gre-hook did not make fails, naming it.
func TestEditInPlaceTwin(t *testing.T) {
	two := site1 + `
[[tunnel]]
name = "gre-b"
underlay = "eth1"
remote = "203.0.113.2"
address = ["10.0.5.1/30"]
`
	e := newEnv(t)
	e.write(two)
	e.mustRun(PhaseUp)
	index := e.index("gre-b")
	onlyB := strings.Replace(strings.TrimPrefix(two, site1), "203.0.113.2", "203.0.113.1", 1)
	e.write(onlyB)
	out := e.mustRun(PhaseUp)
	if del, set := strings.Index(out, "+ ip link del gre-site2"), strings.Index(out, "+ ip link set gre-b type gre remote 203.0.113.1"); del < 0 || set < del {
		t.Errorf("log:\n%s", out)
	}
	if e.index("gre-b") != index {
		t.Error("gre-b was made again")
	}
	diff(t, "kernel", e.dump(), golden(t, onlyB))

	e.fk.Net.AddForeignLink(rtnl.Link{Params: gre.Params{Local: netip.MustParseAddr("198.51.100.1"), Remote: netip.MustParseAddr("203.0.113.3")}, Name: "foreign", Kind: "gre", GRE: true, MTU: 1476})
	dump := e.dump()
	e.write(strings.Replace(onlyB, "203.0.113.1", "203.0.113.3", 1))
	_, err := e.run(PhaseUp)
	if err == nil || !strings.Contains(err.Error(), "file exists (tunnel foreign already uses local 198.51.100.1 remote 203.0.113.3 key 0)") {
		t.Errorf("up: %v", err)
	}
	if err != nil && !strings.HasSuffix(err.Error(), "; rolled back") {
		t.Errorf("up: %v", err)
	}
	diff(t, "kernel after the refusal", e.dump(), dump)
}
