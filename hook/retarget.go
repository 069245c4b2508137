package hook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"

	"github.com/gre-hook/gre-hook/hook/addrpolicy"
	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/rtnl"
	"github.com/gre-hook/gre-hook/hook/state"
	"golang.org/x/sys/unix"
)

// EndpointSetter is a Net that can change a GRE link's local and remote
// in place. *rtnl.Handle and the fake kernel implement it.
type EndpointSetter interface {
	SetEndpoints(name string, local, remote netip.Addr) error
}

// Retarget moves a tunnel gre-hook brought up to new endpoints without
// deleting and re-creating it: its index, addresses, routes and MSS rule
// stay. A zero local or remote keeps the current one. With default_route,
// the pinned host route to the remote moves along: the new pin goes in
// before the link changes, so the tunnel's own packets never route into
// it, and the old one goes after. The record follows, and one line is
// logged (to log, or sys.Log if nil). It runs under the run lock, like up
// and down, and is a no-op when the link already has these endpoints.
//
// gre-hook watch calls it when a remote's name resolves to a new address,
// and when the underlay address a local = "auto" tunnel uses goes away.
func Retarget(ctx context.Context, sys *System, underlay, tunnel string, local, remote netip.Addr, log io.Writer) error {
	if log == nil {
		log = sys.Log
	}
	fail := func(err error) error {
		return fmt.Errorf("moving tunnel %q on %s: %w", tunnel, underlay, err)
	}
	es, ok := sys.Net.(EndpointSetter)
	if !ok {
		return fail(errors.New("this kernel access cannot change a tunnel in place"))
	}
	unlock, err := state.Lock(sys.Store.Dir, sys.LockWait)
	if err != nil {
		return fail(err)
	}
	defer unlock()
	rec, err := sys.Store.Load(underlay)
	if err != nil {
		return fail(err)
	}
	e := rec.Find(tunnel)
	if e == nil || e.Unresolved {
		return fail(errors.New("gre-hook's record does not list it as up"))
	}
	link, err := linkNamed(sys.Net, tunnel)
	switch {
	case err != nil:
		return fail(err)
	case link == nil:
		return fail(fmt.Errorf("link %s does not exist", tunnel))
	case link.Alias != plan.Alias(underlay) || !link.GRE:
		return fail(fmt.Errorf("link %s is not gre-hook's GRE tunnel on %s (kind %s, alias %q)", tunnel, underlay, kindOf(*link), link.Alias))
	}
	if !local.IsValid() {
		local = link.Local
	}
	if !remote.IsValid() {
		remote = link.Remote
	}
	local, remote = local.Unmap(), remote.Unmap()
	if local.Is6() != link.Local.Is6() || remote.Is6() != link.Remote.Is6() {
		return fail(fmt.Errorf("local %s remote %s: a %s tunnel's endpoints are of the family it was made with (local %s remote %s)",
			local, remote, link.Kind, link.Local, link.Remote))
	}
	if err := movePolicy(sys.Net, link, local, remote); err != nil {
		return fail(err)
	}
	// The kernel flushes every route through an underlay that loses its
	// last address (a PPP reconnect, a DHCP renumbering), the pin
	// included: then the pin is put back through the underlay's path now.
	var routes map[int][]rtnl.Route
	pinGone := false
	if e.Pin != nil {
		rs, err := sys.Net.Routes(familyOf(remote))
		if err != nil {
			return fail(err)
		}
		routes = map[int][]rtnl.Route{familyOf(remote): rs}
		have := findRoute(routes, e.Pin.Plan(), true)
		pinGone = have == nil || have.Dev != e.Pin.Dev || have.Gw != e.Pin.Gw
	}
	if local == link.Local && remote == link.Remote && !pinGone {
		if e.Local != local || e.Remote != remote {
			e.Local, e.Remote = local, remote
			return sys.Store.Save(rec)
		}
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}

	// The pin follows the remote, through the same gateway when it is
	// still there, else through the underlay's path now. A route to the
	// new remote someone else made is theirs, and takes the pin's place,
	// as at up.
	var newPin *state.Route
	var noPath error
	movePin := e.Pin != nil && (e.Pin.Dst.Addr() != remote || pinGone)
	if movePin {
		p := *e.Pin
		p.Dst = netip.PrefixFrom(remote, remote.BitLen())
		if pinGone {
			path, ok := underlayPath(routes[familyOf(remote)], underlay, remote, e.Pin.Gw)
			if !ok {
				noPath = fmt.Errorf("%w: %s has no route to %s yet (no gateway?)", ErrNoPinPath, underlay, remote)
			}
			p.Gw, p.Dev = path.Gateway, underlay
		}
		switch {
		case noPath != nil:
			// The record keeps the pin it had: down and gc find it gone,
			// and the watcher tries again.
			movePin = false
		case findRoute(routes, p.Plan(), false) == nil:
			if err := sys.Net.ReplaceRoute(kernelRoute(p.Plan(), plan.RouteProtocol)); err != nil {
				return fail(fmt.Errorf("%s: %w", plan.ReplaceRouteCmd(p.Plan()), err))
			}
			newPin = &p
		}
	}
	if local == link.Local && remote == link.Remote {
		// Only the pin was missing.
		return repinned(sys, rec, e, newPin, noPath, tunnel, underlay, log)
	}
	if err := es.SetEndpoints(tunnel, local, remote); err != nil {
		if newPin != nil {
			sys.Net.DelRoute(kernelRoute(newPin.Plan(), plan.RouteProtocol))
		}
		return fail(fmt.Errorf("%s: %w", endpointsCmd(link.Name, link.Kind, local, remote), err))
	}
	var warn string
	if movePin && !pinGone && (newPin == nil || newPin.Dst != e.Pin.Dst) {
		if err := sys.Net.DelRoute(kernelRoute(e.Pin.Plan(), plan.RouteProtocol)); err != nil {
			warn = fmt.Sprintf("; removing the old pin: %v", err)
		}
	}

	was := fmt.Sprintf("remote %s", link.Remote)
	if local != link.Local {
		was = fmt.Sprintf("local %s remote %s", link.Local, link.Remote)
	}
	name := ""
	if e.RemoteName != "" {
		name = " (" + e.RemoteName + ")"
	}
	pin := ""
	switch {
	case noPath != nil:
		pin = fmt.Sprintf("; WARNING: the pin to the remote is gone and %v: the tunnel's packets may follow its own routes into it until a route to %s through %s comes (gre-hook watch tries again)",
			noPath, remote, underlay)
	case newPin != nil && pinGone:
		pin = fmt.Sprintf("; the pin was gone, pinned again: %s", plan.ReplaceRouteCmd(newPin.Plan()))
	case newPin != nil:
		pin = fmt.Sprintf("; pin %s", plan.ReplaceRouteCmd(newPin.Plan()))
	case movePin:
		pin = "; pin dropped: another route to the remote exists"
	}
	fmt.Fprintf(log, "gre-hook: + %s  # %s on %s, in place, was %s%s%s%s\n",
		endpointsCmd(tunnel, link.Kind, local, remote), tunnel, underlay, was, name, pin, warn)

	e.Local, e.Remote = local, remote
	if movePin {
		e.Pin = newPin
	}
	if err := sys.Store.Save(rec); err != nil {
		return fail(fmt.Errorf("the tunnel moved, but %w", err))
	}
	if noPath != nil {
		return fail(noPath)
	}
	return nil
}

// movePolicy refuses, by the address policy up applies, a new endpoint
// no tunnel may have: the watcher's answers are checked again here, under
// the lock, against the router's addresses now.
func movePolicy(n Net, link *rtnl.Link, local, remote netip.Addr) error {
	if local != link.Local {
		if why := addrpolicy.Endpoint(local, familyOf(local)); why != "" {
			return fmt.Errorf("local %s %s", local, why)
		}
	}
	if remote != link.Remote {
		own, err := OwnAddrs(n)
		if err != nil {
			return err
		}
		if why := own.Remote(remote, familyOf(remote)); why != "" {
			return fmt.Errorf("remote %s %s", remote, why)
		}
	}
	return nil
}

// ErrNoPinPath is Retarget's error when a default_route tunnel's pin is
// gone from the kernel and its underlay has no route to the remote to pin
// it through again: the watcher tries again later.
var ErrNoPinPath = errors.New("no path to pin the remote through")

// repinned ends a Retarget that found only e's pin missing: newPin took
// its place, or noPath says why none could.
func repinned(sys *System, rec *state.Record, e *state.Tunnel, newPin *state.Route, noPath error, tunnel, underlay string, log io.Writer) error {
	if noPath != nil {
		return fmt.Errorf("tunnel %q on %s: the pin to its remote is gone: %w", tunnel, underlay, noPath)
	}
	if newPin != nil {
		fmt.Fprintf(log, "gre-hook: + %s  # %s on %s: the pin to its remote was gone, pinned again: %s\n",
			plan.ReplaceRouteCmd(newPin.Plan()), tunnel, underlay, plan.ReplaceRouteCmd(newPin.Plan()))
	} else {
		fmt.Fprintf(log, "gre-hook: %s on %s: the pin to its remote was gone; another route to the remote exists, which takes its place\n", tunnel, underlay)
	}
	e.Pin = newPin
	if err := sys.Store.Save(rec); err != nil {
		return fmt.Errorf("tunnel %q on %s: pinned again, but %w", tunnel, underlay, err)
	}
	return nil
}

// underlayPath is the path to dst through underlay alone, from routes
// (the kernel's, of dst's family): the longest prefix among the main
// table's routes through underlay, gre-hook's own left out, lowest metric
// first; failing that, gw if a route through underlay still reaches it
// directly (a renumbering within the subnet, whose client could not add
// its default route back at the key gre-hook's holds). Not the kernel's
// route lookup with the underlay as output device: where no route
// matches, that one assumes dst is on the link, and a pin without a
// gateway would send the tunnel's packets nowhere.
func underlayPath(routes []rtnl.Route, underlay string, dst, gw netip.Addr) (plan.Path, bool) {
	var best *rtnl.Route
	for i := range routes {
		r := &routes[i]
		if r.Table != 0 || r.Dev != underlay || r.Protocol == plan.RouteProtocol || !r.Dst.Contains(dst) ||
			(r.Type != 0 && r.Type != unix.RTN_UNICAST) {
			continue
		}
		if best == nil || r.Dst.Bits() > best.Dst.Bits() || r.Dst.Bits() == best.Dst.Bits() && r.Metric < best.Metric {
			best = r
		}
	}
	if best != nil {
		return plan.Path{Gateway: best.Gw, Dev: underlay}, true
	}
	if !gw.IsValid() {
		return plan.Path{}, false
	}
	for _, r := range routes {
		if r.Table == 0 && r.Dev == underlay && !r.Gw.IsValid() && r.Dst.Contains(gw) && (r.Type == 0 || r.Type == unix.RTN_UNICAST) {
			return plan.Path{Gateway: gw, Dev: underlay}, true
		}
	}
	return plan.Path{}, false
}

// endpointsCmd is the ip command that changes a tunnel's endpoints.
func endpointsCmd(name, kind string, local, remote netip.Addr) string {
	return fmt.Sprintf("ip link set %s type %s local %s remote %s", name, kind, local, remote)
}

var _ EndpointSetter = (*rtnl.Handle)(nil)
