package hook

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gre-hook/gre-hook/hook/internal/fixture"
)

// names makes the env resolve names from a table; a name mapped to nil
// hangs until the run's deadline.
func (e *env) names(table map[string][]string) {
	e.sys.ResolveWait = 300 * time.Millisecond
	e.sys.Resolve = func(ctx context.Context, name string) ([]netip.Addr, error) {
		ss, ok := table[name]
		if !ok {
			return nil, errors.New("no such host")
		}
		if ss == nil {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		var out []netip.Addr
		for _, s := range ss {
			out = append(out, netip.MustParseAddr(s))
		}
		return out, nil
	}
}

var namedConfig = fixture.Config(fixture.Site2().Set("remote", `"site2.test"`)) + `
[[tunnel]]
name = "gre-site3"
underlay = "eth1"
remote = "site3.test"
address = ["10.0.3.1/30"]
`

func TestRemoteNameResolves(t *testing.T) {
	e := newEnv(t)
	e.names(map[string][]string{"site2.test": {"2001:db8::2", "203.0.113.1"}, "site3.test": {"203.0.113.3"}})
	e.write(namedConfig)
	e.mustRun(PhaseUp)
	dump := e.dump()
	for _, want := range []string{
		"link gre-site2 gre local 198.51.100.1 remote 203.0.113.1 ",
		"link gre-site3 gre local 198.51.100.1 remote 203.0.113.3 ",
		"route 192.168.2.0/24 via 10.0.0.2 dev gre-site2 proto 176",
	} {
		if !strings.Contains(dump, want) {
			t.Errorf("kernel lacks %q:\n%s", want, dump)
		}
	}
	rec, err := e.sys.Store.Load("eth1")
	if err != nil {
		t.Fatal(err)
	}
	if r := rec.Find("gre-site2"); r == nil || r.Remote != netip.MustParseAddr("203.0.113.1") || r.RemoteName != "site2.test" || r.Local != netip.MustParseAddr("198.51.100.1") {
		t.Errorf("record entry: %+v", r)
	}
	var st strings.Builder
	if drift, err := statusOf(t, e.req(PhaseUp), e.sys, &st); err != nil || drift ||
		!strings.Contains(st.String(), "gre-site2 on eth1: up, remote site2.test (203.0.113.1)\n") {
		t.Errorf("status: drift %v err %v\n%s", drift, err, st.String())
	}
	st.Reset()
	if _, err := jsonStatusOf(t, e.req(PhaseUp), e.sys, &st); err != nil ||
		!strings.Contains(st.String(), `"remote_name": "site2.test",`) || !strings.Contains(st.String(), `"remote": "203.0.113.1"`) {
		t.Errorf("status --json: %v\n%s", err, st.String())
	}
	// Again: nothing to do.
	if out := e.mustRun(PhaseUp); out != "" {
		t.Errorf("second up logged:\n%s", out)
	}

	// A dry run shows the name and its address.
	e.log.Reset()
	req := e.req(PhaseUp)
	req.DryRun = true
	e.fk.Net.DelLinks([]string{"gre-site2", "gre-site3"})
	if err := run(req, e.sys); err != nil {
		t.Fatal(err)
	}
	if out := e.log.String(); !strings.Contains(out, "# gre-site2: remote site2.test (203.0.113.1)\n") ||
		!strings.Contains(out, "# gre-site3: remote site3.test (203.0.113.3)\n") {
		t.Errorf("dry run does not show the names:\n%s", out)
	}
}

// A name that does not answer holds the run for the wait, not longer; the
// other tunnel comes up, the run succeeds with a warning, and the record
// says the tunnel waits for its name.
func TestRemoteNameUnresolved(t *testing.T) {
	e := newEnv(t)
	e.names(map[string][]string{"site2.test": nil, "site3.test": {"203.0.113.3"}})
	e.write(namedConfig)
	start := time.Now()
	out, err := e.run(PhaseUp)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("up took %s with a 300ms resolve wait", took)
	}
	if err != nil {
		t.Fatalf("up failed: %v\n%s", err, out)
	}
	want := `gre-hook: warning: tunnel "gre-site2": remote site2.test does not resolve (resolving site2.test: timed out after 300ms): the tunnel is not brought up now. ` +
		"gre-hook watch brings it up when the name resolves; without watch it stays down until the next up of eth1\n"
	if !strings.Contains(out, want) {
		t.Errorf("log lacks\n%s\ngot:\n%s", want, out)
	}
	dump := e.dump()
	if strings.Contains(dump, "gre-site2") || !strings.Contains(dump, "link gre-site3 gre local 198.51.100.1 remote 203.0.113.3") {
		t.Errorf("kernel:\n%s", dump)
	}
	rec, _ := e.sys.Store.Load("eth1")
	if r := rec.Find("gre-site2"); r == nil || !r.Unresolved || r.RemoteName != "site2.test" {
		t.Errorf("record entry for the unresolved tunnel: %+v", r)
	}

	// status shows it as not up.
	var st strings.Builder
	drift, err := statusOf(t, e.req(PhaseUp), e.sys, &st)
	if err != nil || !drift || !strings.Contains(st.String(), "gre-site2 on eth1: unresolved") {
		t.Errorf("status: drift %v err %v\n%s", drift, err, st.String())
	}

	// It resolves now: the next up brings it up, and nothing else changes.
	e.names(map[string][]string{"site2.test": {"203.0.113.1"}, "site3.test": {"203.0.113.3"}})
	out = e.mustRun(PhaseUp)
	if !strings.Contains(out, "ip tunnel add gre-site2") || strings.Contains(out, "gre-site3") {
		t.Errorf("second up:\n%s", out)
	}
	rec, _ = e.sys.Store.Load("eth1")
	if r := rec.Find("gre-site2"); r == nil || r.Unresolved || r.Remote != netip.MustParseAddr("203.0.113.1") {
		t.Errorf("record entry: %+v", r)
	}

	// DNS fails again: the tunnel keeps the address it has.
	e.names(map[string][]string{"site3.test": {"203.0.113.3"}})
	out = e.mustRun(PhaseUp)
	if !strings.Contains(out, `tunnel "gre-site2": resolving site2.test: no such host; keeping 203.0.113.1, the address the last up used`) ||
		strings.Contains(out, "+ ") {
		t.Errorf("up with DNS down:\n%s", out)
	}
	e.mustRun(PhaseDown)
	diff(t, "after down", e.dump(), baseline)
	if r := e.record(); r != "" {
		t.Errorf("record left: %s", r)
	}
}

func TestRemoteNameWrongFamily(t *testing.T) {
	e := newEnv(t)
	e.names(map[string][]string{"site2.test": {"2001:db8::2"}, "site3.test": {"203.0.113.3"}})
	e.write(namedConfig)
	out := e.mustRun(PhaseUp)
	want := `gre-hook: warning: tunnel "gre-site2": remote site2.test has no IPv4 address, which mode gre needs (it resolves to 2001:db8::2 only)`
	if !strings.Contains(out, want) {
		t.Errorf("log lacks\n%s\ngot:\n%s", want, out)
	}
	if strings.Contains(e.dump(), "gre-site2") {
		t.Errorf("gre-site2 exists:\n%s", e.dump())
	}
}

// Several addresses: a later up keeps the one in use while the name still
// has it.
func TestRemoteNameStable(t *testing.T) {
	e := newEnv(t)
	e.names(map[string][]string{"site2.test": {"203.0.113.1", "203.0.113.5"}, "site3.test": {"203.0.113.3"}})
	e.write(namedConfig)
	e.mustRun(PhaseUp)
	e.names(map[string][]string{"site2.test": {"203.0.113.5", "203.0.113.1"}, "site3.test": {"203.0.113.3"}})
	if out := e.mustRun(PhaseUp); out != "" {
		t.Errorf("an up with the addresses reordered changed things:\n%s", out)
	}
}
