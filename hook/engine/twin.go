package engine

import (
	"fmt"

	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/rtnl"
	"github.com/gre-hook/gre-hook/hook/state"
)

// twinStep is the step that deletes, before t's link is made, a link of
// gre-hook's on the same underlay that the config no longer has and that
// the kernel would take for t's twin: same kind, local, remote and input
// key. The kernel keys GRE tunnels by those, so it refuses the new link with
// EEXIST while the old one is there; a tunnel renamed with its endpoints
// unchanged is that case. The removal of tunnels no longer configured comes
// last in a run, too late for this one.
//
// The undo makes the old link again with its addresses and routes, so a
// rollback puts the old tunnel back as it was. The teardown of the stale
// tunnel that ends the run then finds its link gone (the step takes it out
// of the snapshot) and does the rest: its record entry, default routes and
// down_command. routes is the kernel's routes as the steps before leave
// them; rec is the underlay's record.
//
// A twin that holds a default route (or the pin to its remote) is not
// removed first: its default would go with its link before the new tunnel
// could take the default over, and the record's note of the route it
// replaced would stay with the old entry. The step then fails the run,
// before any change of this tunnel, saying so.
func twinStep(t *plan.Tunnel, want []plan.Tunnel, s *Snapshot, routes map[int][]rtnl.Route, rec *state.Record) (Step, bool) {
	w := t.Link
	if have, ok := s.Links[w.Name]; ok && linkMatches(have, w) {
		return Step{}, false // no new link
	}
	for _, o := range s.Links {
		if !o.GRE || o.Name == w.Name || o.Kind != string(w.Mode) || o.Local != w.Local || o.Remote != w.Remote || o.IKey != w.IKey ||
			o.Alias != w.Alias || configured(want, o.Name) {
			continue
		}
		old, addrs, via := o, s.addrs[o.Index], routesVia(routes, o.Name)
		if holdsDefault(rec.Find(old.Name), via) {
			return Step{Tunnel: w.Name, self: true, bare: true,
				Why: because(w.Name, "stale link %s has the same local, remote and key and holds the default route", old.Name),
				change: func(x *Executor) error {
					return fmt.Errorf("tunnel %q: stale tunnel %s has the same local %s, remote %s and key %d, which the kernel allows one tunnel, "+
						"and holds the default route, so it is not removed first; take the underlay's tunnels down and up "+
						"(`gre-hook --iface %s --phase down`, then up)", w.Name, old.Name, w.Local, w.Remote, w.IKey, x.Underlay)
				}}, true
		}
		return Step{
			Tunnel:  w.Name,
			Cmds:    []string{plan.DelLinkCmd(old.Name)},
			Why:     because(w.Name, "stale link %s has the same local %s, remote %s and key %d, which the kernel allows one tunnel", old.Name, w.Local, w.Remote, w.IKey),
			prepare: func(x *Executor) { delete(x.Snap.Links, old.Name) },
			change:  func(x *Executor) error { return x.Sys.Net.DelLink(old.Name) },
			undoCmd: "recreate " + old.Name + " as it was",
			undo:    func(x *Executor) error { return recreate(x.Sys.Net, old, addrs, via) },
			// The kernel deletes the link's routes with it.
			dropsRoutesVia: old.Name,
		}, true
	}
	return Step{}, false
}

// configured reports whether want has a tunnel named name.
func configured(want []plan.Tunnel, name string) bool {
	for _, t := range want {
		if t.Link.Name == name {
			return true
		}
	}
	return false
}

// holdsDefault reports whether a tunnel holds a default route or the pin
// to its remote, by its record entry (nil: none) or the routes through it.
func holdsDefault(e *state.Tunnel, via []rtnl.Route) bool {
	if e != nil && (len(e.Defaults) > 0 || e.Pin != nil) {
		return true
	}
	for _, r := range via {
		if r.Dst.Bits() == 0 {
			return true
		}
	}
	return false
}
