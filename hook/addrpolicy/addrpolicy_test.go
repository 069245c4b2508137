package addrpolicy

import (
	"fmt"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

func TestRemote(t *testing.T) {
	own := Own{
		Prefixes:   []netip.Prefix{netip.MustParsePrefix("192.0.2.1/24"), netip.MustParsePrefix("2001:db8::1/64"), netip.MustParsePrefix("198.51.100.9/32")},
		Broadcasts: []netip.Addr{netip.MustParseAddr("203.0.113.127")},
	}
	for _, c := range []struct {
		addr   string
		family int
		why    string
	}{
		{"203.0.113.7", 4, ""},
		{"10.0.0.1", 4, ""},
		{"2001:db8:1::7", 6, ""},
		{"::ffff:203.0.113.7", 4, ""},
		{"0.0.0.0", 4, "is the unspecified address: a tunnel with it takes GRE from, or sends it to, any address"},
		{"::", 6, "is the unspecified address: a tunnel with it takes GRE from, or sends it to, any address"},
		{"127.0.0.1", 4, "is a loopback address, this host itself"},
		{"127.1.2.3", 4, "is a loopback address, this host itself"},
		{"::1", 6, "is a loopback address, this host itself"},
		{"224.0.0.5", 4, "is a multicast address"},
		{"224.0.0.1", 4, "is a multicast address"},
		{"ff02::1", 6, "is a multicast address"},
		{"255.255.255.255", 4, "is the limited broadcast address"},
		{"169.254.1.1", 4, "is a link-local address, which a tunnel cannot be bound to"},
		{"fe80::1", 6, "is a link-local address, which a tunnel cannot be bound to"},
		{"203.0.113.7", 6, "is not an IPv6 address"},
		{"2001:db8:1::7", 4, "is not an IPv4 address"},
		{"192.0.2.1", 4, "is an address of this router"},
		{"198.51.100.9", 4, "is an address of this router"},
		{"2001:db8::1", 6, "is an address of this router"},
		{"192.0.2.255", 4, "is the broadcast address of 192.0.2.0/24, a subnet of this router"},
		{"203.0.113.127", 4, "is the broadcast address of a subnet of this router"},
		{"192.0.2.2", 4, ""}, // a neighbour on the router's own subnet
	} {
		a := netip.MustParseAddr(c.addr)
		if got := own.Remote(a, c.family); got != c.why {
			t.Errorf("Remote(%s, IPv%d) = %q, want %q", c.addr, c.family, got, c.why)
		}
	}
}

func TestEndpointKnowsNothingOfTheRouter(t *testing.T) {
	for _, s := range []string{"192.0.2.1", "192.0.2.255"} {
		if why := Endpoint(netip.MustParseAddr(s), 4); why != "" {
			t.Errorf("Endpoint(%s) = %q, want accepted", s, why)
		}
	}
}

func TestName(t *testing.T) {
	loop := "always names this host itself, a loopback address (RFC 6761), which cannot be a tunnel's remote"
	for _, c := range []struct{ name, why string }{
		{"localhost", loop},
		{"LocalHost.", loop},
		{"db.localhost", loop},
		{"peer.example.net", ""},
		{"localhost.example.net", ""},
		{"mylocalhost", ""},
	} {
		if got := Name(c.name); got != c.why {
			t.Errorf("Name(%q) = %q, want %q", c.name, got, c.why)
		}
	}
}

func TestRemotes(t *testing.T) {
	own := Own{Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/24")}}
	as := []netip.Addr{netip.MustParseAddr("0.0.0.0"), netip.MustParseAddr("::1"), netip.MustParseAddr("203.0.113.9"),
		netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("203.0.113.8")}
	ok, refused := own.Remotes(as, 4)
	if want := "[203.0.113.9 203.0.113.8]"; fmt.Sprint(ok) != want {
		t.Errorf("accepted %v, want %s", ok, want)
	}
	want := "0.0.0.0 is the unspecified address: a tunnel with it takes GRE from, or sends it to, any address; " +
		"127.0.0.1 is a loopback address, this host itself; 192.0.2.1 is an address of this router"
	if got := JoinRefusals(refused); got != want {
		t.Errorf("refused %q\nwant    %q", got, want)
	}
}

func TestStableAndPickLocal(t *testing.T) {
	g := unix.RT_SCOPE_UNIVERSE
	forever := 0xffffffff
	l := func(s string, flags, pref int) Local {
		return Local{Addr: netip.MustParseAddr(s), Scope: g, Flags: flags, PreferredLft: pref, Known: true}
	}
	// As the kernel lists IPv6 addresses: newest first.
	v6 := []Local{
		l("2001:db8::5", unix.IFA_F_TENTATIVE, forever),
		l("2001:db8::4", unix.IFA_F_DADFAILED|unix.IFA_F_TENTATIVE, forever),
		l("2001:db8::3", unix.IFA_F_TEMPORARY, 3600),
		l("2001:db8::2", 0, 0),
		l("2001:db8::1", unix.IFA_F_PERMANENT, forever),
		l("2001:db8::6", unix.IFA_F_DEPRECATED, forever),
		{Addr: netip.MustParseAddr("fe80::1"), Scope: unix.RT_SCOPE_LINK},
	}
	whys := map[string]string{
		"2001:db8::5": "is tentative (duplicate address detection is not over)",
		"2001:db8::4": "failed duplicate address detection",
		"2001:db8::3": "is a temporary (privacy) address",
		"2001:db8::2": "is deprecated (preferred lifetime 0)",
		"2001:db8::1": "",
		"2001:db8::6": "is deprecated (preferred lifetime 0)",
		"fe80::1":     "is not of global scope",
	}
	for _, x := range v6 {
		if got := Stable(x); got != whys[x.Addr.String()] {
			t.Errorf("Stable(%s) = %q, want %q", x.Addr, got, whys[x.Addr.String()])
		}
	}
	if a, ok := PickLocal(v6, 6, netip.Addr{}); !ok || a.String() != "2001:db8::1" {
		t.Errorf("PickLocal(v6) = %s %v, want 2001:db8::1", a, ok)
	}
	// A second stable address, newer: the oldest still wins, unless the
	// one in use is the newer.
	v6 = append([]Local{l("2001:db8::9", 0, forever)}, v6...)
	if a, _ := PickLocal(v6, 6, netip.Addr{}); a.String() != "2001:db8::1" {
		t.Errorf("PickLocal(v6 with a newer) = %s, want the oldest, 2001:db8::1", a)
	}
	if a, _ := PickLocal(v6, 6, netip.MustParseAddr("2001:db8::9")); a.String() != "2001:db8::9" {
		t.Errorf("PickLocal(v6, prefer ::9) = %s, want the one in use", a)
	}
	if a, _ := PickLocal(v6, 6, netip.MustParseAddr("2001:db8::3")); a.String() != "2001:db8::1" {
		t.Errorf("PickLocal(v6, prefer the temporary ::3) = %s, want 2001:db8::1: a temporary is never kept", a)
	}
	if got := OrderLocals(v6, 6, netip.Addr{}); fmt.Sprint(got) != "[2001:db8::1 2001:db8::9]" {
		t.Errorf("OrderLocals = %v", got)
	}
	// IPv4: the primary first; the secondary bit is not "temporary".
	v4 := []Local{l("192.0.2.1", 0, forever), l("192.0.2.2", unix.IFA_F_SECONDARY, forever), l("127.0.0.1", 0, forever)}
	if a, _ := PickLocal(v4, 4, netip.Addr{}); a.String() != "192.0.2.1" {
		t.Errorf("PickLocal(v4) = %s, want the primary", a)
	}
	if a, _ := PickLocal(v4, 4, netip.MustParseAddr("192.0.2.2")); a.String() != "192.0.2.2" {
		t.Errorf("PickLocal(v4, prefer secondary) = %s", a)
	}
	if _, ok := PickLocal(v4[2:], 4, netip.Addr{}); ok {
		t.Error("PickLocal took a loopback address")
	}
}
