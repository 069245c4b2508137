package peer

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/gre-hook/gre-hook/hook/addrpolicy"
	"github.com/gre-hook/gre-hook/hook/engine"
	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/rtnl"
	"github.com/gre-hook/gre-hook/hook/state"
)

// EndpointSetter is a Net that can change a GRE link's local and remote
// in place. *rtnl.Handle and the fake kernel implement it.
type EndpointSetter interface {
	SetEndpoints(name string, local, remote netip.Addr) error
}

// Retarget moves a tunnel gre-hook brought up to new endpoints without
// deleting and re-creating it: its index, addresses, routes and MSS rule
// stay. A zero local or remote keeps the current one. Its outer packets
// carry gre-hook's fwmark and find the new remote through the main table
// (POLICY-ROUTING.md): no route needs to move. The record follows, and one line is
// logged. It runs under the run lock, like up
// and down, and is a no-op when the link already has these endpoints.
//
// gre-hook watch calls it when a remote's name resolves to a new address,
// and when the underlay address a local = "auto" tunnel uses goes away.
func Retarget(ctx context.Context, sys *engine.System, underlay, tunnel string, local, remote netip.Addr) error {
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
	link, err := engine.LinkNamed(sys.Net, tunnel)
	switch {
	case err != nil:
		return fail(err)
	case link == nil:
		return fail(fmt.Errorf("link %s does not exist", tunnel))
	case link.Alias != plan.Alias(underlay) || !link.GRE:
		return fail(fmt.Errorf("link %s is not gre-hook's GRE tunnel on %s (kind %s, alias %q)", tunnel, underlay, engine.KindOf(*link), link.Alias))
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
	if e.Pin != nil {
		// The previous release's form: its pin would not follow, and the
		// tunnel's packets would route into its main-table default.
		return fail(fmt.Errorf("its record has the previous release's pin to the remote; run `gre-hook up --iface %s` first, which moves it to policy routing", underlay))
	}
	if local == link.Local && remote == link.Remote {
		if e.Local != local || e.Remote != remote {
			moveEntry(e, local, remote)
			return sys.Store.Save(rec)
		}
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	if err := es.SetEndpoints(tunnel, local, remote); err != nil {
		return fail(fmt.Errorf("%s: %w", endpointsCmd(link.Name, link.Kind, local, remote), err))
	}
	was := fmt.Sprintf("remote %s", link.Remote)
	if local != link.Local {
		was = fmt.Sprintf("local %s remote %s", link.Local, link.Remote)
	}
	name := ""
	if e.RemoteName != "" {
		name = " (" + e.RemoteName + ")"
	}
	fmt.Fprintf(sys.Log, "gre-hook: + %s  # %s on %s, in place, was %s%s\n",
		endpointsCmd(tunnel, link.Kind, local, remote), tunnel, underlay, was, name)

	moveEntry(e, local, remote)
	if err := sys.Store.Save(rec); err != nil {
		return fail(fmt.Errorf("the tunnel moved, but %w", err))
	}
	return nil
}

// moveEntry gives a record's entry its new endpoints. Its peer is another
// now: no reply of the old one stays, though a dead tunnel stays dead (and
// since when) until the new peer answers.
func moveEntry(e *state.Tunnel, local, remote netip.Addr) {
	e.Local, e.Remote = local, remote
	e.LastReply = nil
}

// movePolicy refuses, by the address policy up applies, a new endpoint
// no tunnel may have: the watcher's answers are checked again here, under
// the lock, against the router's addresses now.
func movePolicy(n engine.Net, link *rtnl.Link, local, remote netip.Addr) error {
	if local != link.Local {
		if why := addrpolicy.Endpoint(local, engine.FamilyOf(local)); why != "" {
			return fmt.Errorf("local %s %s", local, why)
		}
	}
	if remote != link.Remote {
		own, err := engine.OwnAddrs(n)
		if err != nil {
			return err
		}
		if why := own.Remote(remote, engine.FamilyOf(remote)); why != "" {
			return fmt.Errorf("remote %s %s", remote, why)
		}
	}
	return nil
}

// endpointsCmd is the ip command that changes a tunnel's endpoints.
func endpointsCmd(name, kind string, local, remote netip.Addr) string {
	return fmt.Sprintf("ip link set %s type %s local %s remote %s", name, kind, local, remote)
}

var _ EndpointSetter = (*rtnl.Handle)(nil)
