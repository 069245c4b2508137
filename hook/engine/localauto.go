package engine

import (
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/gre-hook/gre-hook/hook/addrpolicy"
	"github.com/gre-hook/gre-hook/hook/config"
	"github.com/gre-hook/gre-hook/hook/rtnl"
	"github.com/gre-hook/gre-hook/hook/state"
)

// localsOf are the addresses of an underlay as the address policy judges
// them for local = "auto", in the kernel's order.
func localsOf(as []rtnl.Addr) []addrpolicy.Local {
	out := make([]addrpolicy.Local, 0, len(as))
	for _, a := range as {
		scope := unix.RT_SCOPE_UNIVERSE
		if !a.Global {
			scope = unix.RT_SCOPE_LINK
		}
		out = append(out, addrpolicy.Local{Addr: a.Prefix.Addr(), Scope: scope, Flags: a.Flags, PreferredLft: a.PreferredLft, Known: a.HasLft})
	}
	return out
}

// AutoLocals gives each local = "auto" tunnel the underlay address the
// one selection rule picks (addrpolicy.PickLocal, which the watcher's
// follower applies too): the local the record says it has while the
// underlay still has it, stable, else the oldest stable address. A
// tunnel with none keeps its local unset, and the plan says why.
func AutoLocals(tunnels []config.Tunnel, s *Snapshot, underlay string, rec *state.Record) []config.Tunnel {
	l, ok := s.Links[underlay]
	if !ok {
		return tunnels
	}
	cands := localsOf(s.addrs[l.Index])
	out := make([]config.Tunnel, len(tunnels))
	for i, t := range tunnels {
		out[i] = t
		if t.Local.IsValid() || !t.Remote.IsValid() {
			continue
		}
		var prefer netip.Addr
		if e := rec.Find(t.Name); e != nil && !e.Unresolved {
			prefer = e.Local
		}
		// Never the remote itself: with no other address, local stays
		// automatic and plan.Up refuses, saying why.
		var others []addrpolicy.Local
		for _, c := range cands {
			if c.Addr.Unmap() != t.Remote.Unmap() {
				others = append(others, c)
			}
		}
		if a, ok := addrpolicy.PickLocal(others, FamilyOf(t.Remote), prefer); ok {
			out[i].Local = a
		}
	}
	return out
}

// OwnAddrs is what the address policy needs to know of the router's own
// addresses, read from the kernel.
func OwnAddrs(n Net) (addrpolicy.Own, error) {
	var own addrpolicy.Own
	as, err := n.Addrs()
	if err != nil {
		return own, err
	}
	for _, a := range as {
		own.Prefixes = append(own.Prefixes, a.Prefix)
		if a.Broadcast.IsValid() {
			own.Broadcasts = append(own.Broadcasts, a.Broadcast)
		}
	}
	return own, nil
}
