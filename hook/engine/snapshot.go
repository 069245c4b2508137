package engine

import (
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/gre-hook/gre-hook/hook/addrpolicy"
	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/rtnl"
)

// Snapshot is the kernel state a run reads once at its start, so that its
// cost does not grow with the square of the number of tunnels. The diff
// compares the plan with it.
type Snapshot struct {
	Links  map[string]rtnl.Link
	addrs  map[int][]rtnl.Addr
	Routes map[int][]rtnl.Route // by family
	// sysctls holds the /proc/sys values readSysctls read for the
	// tunnels that reflect keepalives, and conf.default's.
	sysctls map[string]string
}

// TakeSnapshot reads the kernel's links, addresses and routes.
func TakeSnapshot(n Net) (*Snapshot, error) {
	s := &Snapshot{Links: map[string]rtnl.Link{}, addrs: map[int][]rtnl.Addr{}}
	links, err := n.Links()
	if err != nil {
		return nil, err
	}
	for _, l := range links {
		s.Links[l.Name] = l
	}
	addrs, err := n.Addrs()
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		s.addrs[a.Index] = append(s.addrs[a.Index], a)
	}
	// Both families, always: a config edit may have dropped the last IPv6
	// route, and the stale one must still be found.
	if s.Routes, err = readRoutes(n); err != nil {
		return nil, err
	}
	return s, nil
}

// readRoutes reads the routes of both families, by family.
func readRoutes(n Net) (map[int][]rtnl.Route, error) {
	routes := map[int][]rtnl.Route{}
	for _, f := range []int{4, 6} {
		rs, err := n.Routes(f)
		if err != nil {
			return nil, err
		}
		routes[f] = rs
	}
	return routes, nil
}

// FamilyOf is a's family, 4 or 6.
func FamilyOf(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

// UnderlayOf reads what the plan needs to know about the underlay.
func UnderlayOf(s *Snapshot, name string) (plan.Underlay, error) {
	l, ok := s.Links[name]
	if !ok {
		return plan.Underlay{}, fmt.Errorf("underlay %s does not exist", name)
	}
	u := plan.Underlay{Name: name, MTU: l.MTU, Up: l.Up}
	// In the order local = "auto" takes them, the unusable left out.
	ls := localsOf(s.addrs[l.Index])
	u.Addrs = append(addrpolicy.OrderLocals(ls, 4, netip.Addr{}), addrpolicy.OrderLocals(ls, 6, netip.Addr{})...)
	return u, nil
}

// findRoute returns the route with r's key (destination, table, metric)
// that is gre-hook's (ours) or someone else's (!ours), or nil.
func findRoute(routes map[int][]rtnl.Route, r plan.Route, ours bool) *rtnl.Route {
	for _, have := range routes[FamilyOf(r.Dst.Addr())] {
		if have.Dst == r.Dst && have.Table == r.Table && have.Metric == r.Metric && (have.Protocol == plan.RouteProtocol) == ours {
			h := have
			return &h
		}
	}
	return nil
}

// routesVia returns the routes through dev that its addresses do not
// bring back by themselves.
func routesVia(routes map[int][]rtnl.Route, dev string) []rtnl.Route {
	var out []rtnl.Route
	for _, f := range []int{4, 6} {
		for _, r := range routes[f] {
			if r.Dev == dev && r.Protocol != unix.RTPROT_KERNEL {
				out = append(out, r)
			}
		}
	}
	return out
}

// withoutRoutesVia returns routes less those through dev, as the kernel
// holds them once dev is deleted. routes itself is left as it is.
func withoutRoutesVia(routes map[int][]rtnl.Route, dev string) map[int][]rtnl.Route {
	out := make(map[int][]rtnl.Route, len(routes))
	for f, rs := range routes {
		var keep []rtnl.Route
		for _, r := range rs {
			if r.Dev != dev {
				keep = append(keep, r)
			}
		}
		out[f] = keep
	}
	return out
}
