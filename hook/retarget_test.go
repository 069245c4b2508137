package hook

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/gre-hook/gre-hook/hook/fake"
	"github.com/gre-hook/gre-hook/hook/plan"
)

var _ EndpointSetter = (*fake.Net)(nil)

const pinnedConfig = `
[[tunnel]]
name = "gre-site2"
underlay = "eth1"
remote = "site2.test"
address = ["10.0.0.1/30"]
default_route = true
[[tunnel.route]]
to = "192.168.2.0/24"
`

func TestRetargetRemote(t *testing.T) {
	e := newEnv(t)
	e.names(map[string][]string{"site2.test": {"203.0.113.1"}})
	e.write(pinnedConfig)
	e.mustRun(PhaseUp)
	before, _ := linkNamed(e.fk.Net, "gre-site2")
	adds, dels := e.fk.Net.Calls("AddLink"), e.fk.Net.Calls("DelLink")+e.fk.Net.Calls("DelLinks")
	dumpBefore := e.dump()

	var log strings.Builder
	if err := Retarget(bg(), e.sys, "eth1", "gre-site2", netip.Addr{}, netip.MustParseAddr("203.0.113.9"), &log); err != nil {
		t.Fatal(err)
	}
	want := "gre-hook: + ip link set gre-site2 type gre local 198.51.100.1 remote 203.0.113.9  # gre-site2 on eth1, in place, was remote 203.0.113.1 (site2.test); " +
		"pin ip route replace 203.0.113.9/32 via 198.51.100.254 dev eth1 proto 176\n"
	if log.String() != want {
		t.Errorf("log:\n%s\nwant:\n%s", log.String(), want)
	}
	after, _ := linkNamed(e.fk.Net, "gre-site2")
	if after.Index != before.Index || e.fk.Net.Calls("AddLink") != adds || e.fk.Net.Calls("DelLink")+e.fk.Net.Calls("DelLinks") != dels {
		t.Errorf("the link was re-created: index %d -> %d", before.Index, after.Index)
	}
	// Only the link's remote and the pin differ.
	wantDump := strings.NewReplacer(
		"remote 203.0.113.1 ", "remote 203.0.113.9 ",
		"route 203.0.113.1/32 via", "route 203.0.113.9/32 via").Replace(dumpBefore)
	diff(t, "kernel after retarget", e.dump(), wantDump)

	rec, _ := e.sys.Store.Load("eth1")
	r := rec.Find("gre-site2")
	if r.Remote != netip.MustParseAddr("203.0.113.9") || r.Pin == nil || r.Pin.Dst != netip.MustParsePrefix("203.0.113.9/32") || r.RemoteName != "site2.test" {
		t.Errorf("record entry: %+v pin %+v", r, r.Pin)
	}

	// Again: nothing to do, nothing logged.
	log.Reset()
	if err := Retarget(bg(), e.sys, "eth1", "gre-site2", netip.Addr{}, netip.MustParseAddr("203.0.113.9"), &log); err != nil || log.Len() != 0 {
		t.Errorf("second retarget: %v %q", err, log.String())
	}
	// An up that resolves the name to the new address agrees.
	e.names(map[string][]string{"site2.test": {"203.0.113.9"}})
	if out := e.mustRun(PhaseUp); out != "" {
		t.Errorf("up after retarget changed things:\n%s", out)
	}
	// And down removes the moved pin: the machine is as before.
	e.mustRun(PhaseDown)
	diff(t, "after down", e.dump(), baseline)
}

func TestRetargetLocal(t *testing.T) {
	e := newEnv(t)
	e.names(map[string][]string{"site2.test": {"203.0.113.1"}})
	e.write(pinnedConfig)
	e.mustRun(PhaseUp)
	e.fk.Net.AddDeviceAddr("eth1", netip.MustParsePrefix("198.51.100.7/24"))
	var log strings.Builder
	if err := Retarget(bg(), e.sys, "eth1", "gre-site2", netip.MustParseAddr("198.51.100.7"), netip.Addr{}, &log); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "ip link set gre-site2 type gre local 198.51.100.7 remote 203.0.113.1  # gre-site2 on eth1, in place, was local 198.51.100.1 remote 203.0.113.1") ||
		strings.Contains(log.String(), "pin") || strings.Count(log.String(), "\n") != 1 {
		t.Errorf("log: %s", log.String())
	}
	l, _ := linkNamed(e.fk.Net, "gre-site2")
	if l.Local != netip.MustParseAddr("198.51.100.7") || !strings.Contains(e.dump(), "route 203.0.113.1/32 via 198.51.100.254 dev eth1 proto 176") {
		t.Errorf("link %+v\n%s", l, e.dump())
	}
	rec, _ := e.sys.Store.Load("eth1")
	if r := rec.Find("gre-site2"); r.Local != netip.MustParseAddr("198.51.100.7") {
		t.Errorf("record: %+v", r)
	}
}

func TestRetargetRefuses(t *testing.T) {
	e := newEnv(t)
	e.names(map[string][]string{"site2.test": {"203.0.113.1"}})
	e.write(pinnedConfig)
	for _, c := range []struct {
		tunnel, remote, want string
	}{
		{"gre-site2", "203.0.113.9", `moving tunnel "gre-site2" on eth1: gre-hook's record does not list it as up`},
	} {
		err := Retarget(bg(), e.sys, "eth1", c.tunnel, netip.Addr{}, netip.MustParseAddr(c.remote), nil)
		if err == nil || err.Error() != c.want {
			t.Errorf("got %v, want %s", err, c.want)
		}
	}
	e.mustRun(PhaseUp)
	err := Retarget(bg(), e.sys, "eth1", "gre-site2", netip.Addr{}, netip.MustParseAddr("2001:db8::9"), nil)
	if err == nil || !strings.Contains(err.Error(), "endpoints are of the family it was made with") {
		t.Errorf("family change: %v", err)
	}
	// A failing change leaves the kernel and the record as they were.
	dump, rec := e.dump(), e.record()
	e.fk.Net.FailNth("SetEndpoints", 1)
	if err := Retarget(bg(), e.sys, "eth1", "gre-site2", netip.Addr{}, netip.MustParseAddr("203.0.113.9"), nil); err == nil {
		t.Error("no error from a failing change")
	}
	diff(t, "kernel after a failed retarget", e.dump(), dump)
	diff(t, "record after a failed retarget", e.record(), rec)
}

// A renumbering that takes the underlay's last address before the new one
// comes (a PPP reconnect, a DHCP lease lost): the kernel flushes every
// route through the underlay, the pin included. Moving the local must pin
// the remote again through the underlay's path now, never through the
// tunnel's own default route.
func TestRetargetRepinsAfterRenumbering(t *testing.T) {
	const pin = "route 203.0.113.1/32 via %s dev eth1 proto 176"
	setup := func(t *testing.T, to string) (*env, strings.Builder) {
		e := newEnv(t)
		e.names(map[string][]string{"site2.test": {"203.0.113.1"}})
		e.write(pinnedConfig)
		e.mustRun(PhaseUp)
		e.fk.Net.DropDeviceAddr("eth1", netip.MustParsePrefix("198.51.100.1/24"))
		if strings.Contains(e.dump(), "route 203.0.113.1/32") {
			t.Fatalf("the fake kept the pin:\n%s", e.dump())
		}
		e.fk.Net.AddDeviceAddr("eth1", netip.MustParsePrefix(to))
		return e, strings.Builder{}
	}
	pinOf := func(e *env) string {
		rec, _ := e.sys.Store.Load("eth1")
		r := rec.Find("gre-site2")
		if len(r.Replaced) != 1 || r.Replaced[0].Gw != netip.MustParseAddr("198.51.100.254") {
			t.Errorf("the record lost the replaced default route: %+v", r.Replaced)
		}
		if r.Pin == nil {
			return "none"
		}
		return r.Pin.Gw.String()
	}

	t.Run("same subnet, the old gateway on the link", func(t *testing.T) {
		e, log := setup(t, "198.51.100.7/24")
		if err := Retarget(bg(), e.sys, "eth1", "gre-site2", netip.MustParseAddr("198.51.100.7"), netip.Addr{}, &log); err != nil {
			t.Fatal(err)
		}
		if want := "the pin was gone, pinned again: ip route replace 203.0.113.1/32 via 198.51.100.254 dev eth1 proto 176"; !strings.Contains(log.String(), want) {
			t.Errorf("log: %s\nwant: %s", log.String(), want)
		}
		if !strings.Contains(e.dump(), fmt.Sprintf(pin, "198.51.100.254")) {
			t.Errorf("kernel:\n%s", e.dump())
		}
		if g := pinOf(e); g != "198.51.100.254" {
			t.Errorf("recorded pin via %s", g)
		}
		// Down puts the replaced default route back.
		e.mustRun(PhaseDown)
		if d := e.dump(); !strings.Contains(d, "route 0.0.0.0/0 via 198.51.100.254 dev eth1") || strings.Contains(d, "203.0.113.1/32") {
			t.Errorf("after down:\n%s", d)
		}
	})

	t.Run("new subnet, its gateway's route a moment later", func(t *testing.T) {
		e, log := setup(t, "100.64.0.2/24")
		err := Retarget(bg(), e.sys, "eth1", "gre-site2", netip.MustParseAddr("100.64.0.2"), netip.Addr{}, &log)
		if !errors.Is(err, ErrNoPinPath) {
			t.Fatalf("got %v, want ErrNoPinPath", err)
		}
		if want := `WARNING: the pin to the remote is gone and no path to pin the remote through: eth1 has no route to 203.0.113.1 yet`; !strings.Contains(log.String(), want) {
			t.Errorf("log: %s\nwant: %s", log.String(), want)
		}
		if l, _ := linkNamed(e.fk.Net, "gre-site2"); l.Local != netip.MustParseAddr("100.64.0.2") {
			t.Errorf("the local did not move: %+v", l)
		}
		if g := pinOf(e); g != "198.51.100.254" {
			t.Errorf("recorded pin via %s, want the old one kept until a new one is made", g)
		}
		// Again, still no route: the same error, nothing logged.
		log.Reset()
		if err := Retarget(bg(), e.sys, "eth1", "gre-site2", netip.Addr{}, netip.Addr{}, &log); !errors.Is(err, ErrNoPinPath) || log.Len() != 0 {
			t.Errorf("retry without a route: %v %q", err, log.String())
		}
		// The DHCP client's default route, with a metric beside the tunnel's.
		e.fk.Net.AddForeignRoute(plan.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("100.64.0.254"), Dev: "eth1", Metric: 1024}, 16)
		if err := Retarget(bg(), e.sys, "eth1", "gre-site2", netip.Addr{}, netip.Addr{}, &log); err != nil {
			t.Fatal(err)
		}
		if want := "# gre-site2 on eth1: the pin to its remote was gone, pinned again: ip route replace 203.0.113.1/32 via 100.64.0.254 dev eth1 proto 176\n"; !strings.HasSuffix(log.String(), want) {
			t.Errorf("log: %s\nwant: %s", log.String(), want)
		}
		if !strings.Contains(e.dump(), fmt.Sprintf(pin, "100.64.0.254")) {
			t.Errorf("kernel:\n%s", e.dump())
		}
		if g := pinOf(e); g != "100.64.0.254" {
			t.Errorf("recorded pin via %s", g)
		}
		// Nothing more to do.
		log.Reset()
		if err := Retarget(bg(), e.sys, "eth1", "gre-site2", netip.Addr{}, netip.Addr{}, &log); err != nil || log.Len() != 0 {
			t.Errorf("again: %v %q", err, log.String())
		}
	})
}
