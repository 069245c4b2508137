package rtnl

import (
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/gre-hook/gre-hook/hook/plan"
)

// attrs parses the route attributes of a serialized RTM_*ROUTE request.
func attrs(t *testing.T, b []byte) (unix.RtMsg, map[uint16][]byte) {
	t.Helper()
	b = b[unix.SizeofNlMsghdr:]
	msg := unix.RtMsg{Family: b[0], Dst_len: b[1], Src_len: b[2], Tos: b[3], Table: b[4], Protocol: b[5], Scope: b[6], Type: b[7]}
	out := map[uint16][]byte{}
	b = b[unix.SizeofRtMsg:]
	for len(b) >= 4 {
		l := int(nl.NativeEndian().Uint16(b))
		typ := nl.NativeEndian().Uint16(b[2:])
		if l < 4 || l > len(b) {
			t.Fatalf("bad attribute length %d", l)
		}
		out[typ] = b[4:l]
		b = b[(l+3)&^3:]
	}
	return msg, out
}

func u32(b []byte) uint32 { return nl.NativeEndian().Uint32(b) }

// Tables and metrics are the kernel's uint32s all the way to the wire:
// values from 2^31 up must not be lost, as they were through an int on
// 32-bit targets.
func TestRouteRequestCarriesWideTableAndMetric(t *testing.T) {
	h := &Handle{names: map[int]string{7: "gre1"}, index: map[string]int{"gre1": 7}}
	r := plan.Route{Dst: netip.MustParsePrefix("192.168.2.0/24"), Gw: netip.MustParseAddr("10.0.0.2"), Dev: "gre1", Table: 3000000000, Metric: 4000000000}
	req, err := h.routeRequest(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, r, 176)
	if err != nil {
		t.Fatal(err)
	}
	msg, a := attrs(t, req.Serialize())
	if msg.Family != unix.AF_INET || msg.Dst_len != 24 || msg.Protocol != 176 || msg.Type != unix.RTN_UNICAST || msg.Table != unix.RT_TABLE_UNSPEC {
		t.Errorf("rtmsg %+v", msg)
	}
	if got := u32(a[unix.RTA_TABLE]); got != 3000000000 {
		t.Errorf("RTA_TABLE %d", got)
	}
	if got := u32(a[unix.RTA_PRIORITY]); got != 4000000000 {
		t.Errorf("RTA_PRIORITY %d", got)
	}
	if got := u32(a[unix.RTA_OIF]); got != 7 {
		t.Errorf("RTA_OIF %d", got)
	}
	if got, _ := netip.AddrFromSlice(a[unix.RTA_GATEWAY]); got != r.Gw {
		t.Errorf("RTA_GATEWAY %s", got)
	}

	// Table 0 is main, carried in the header; metric 0 is left out; a
	// delete is scoped nowhere, as ip route del sends it.
	r = plan.Route{Dst: netip.MustParsePrefix("::/0"), Gw: netip.MustParseAddr("fd00::1")}
	req, err = h.routeRequest(unix.RTM_DELROUTE, 0, r, 176)
	if err != nil {
		t.Fatal(err)
	}
	msg, a = attrs(t, req.Serialize())
	if msg.Family != unix.AF_INET6 || msg.Table != unix.RT_TABLE_MAIN || msg.Scope != unix.RT_SCOPE_NOWHERE || msg.Dst_len != 0 {
		t.Errorf("rtmsg %+v", msg)
	}
	if _, ok := a[unix.RTA_TABLE]; ok {
		t.Error("RTA_TABLE sent for the main table")
	}
	if _, ok := a[unix.RTA_PRIORITY]; ok {
		t.Error("RTA_PRIORITY sent for metric 0")
	}
}

func TestTableNumbers(t *testing.T) {
	for _, tc := range []struct {
		kernel int
		want   uint32
	}{
		{254, 0},
		{0, 0},
		{100, 100},
		{3000000000, 3000000000},
		// What netlink hands a 32-bit build for table 3000000000.
		{int(int32(-1294967296)), 3000000000},
	} {
		if got := FromKernelTable(tc.kernel); got != tc.want {
			t.Errorf("FromKernelTable(%d) = %d, want %d", tc.kernel, got, tc.want)
		}
	}
	if KernelTable(0) != unix.RT_TABLE_MAIN || KernelTable(7) != 7 {
		t.Error("KernelTable")
	}
}
