package hook

import (
	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/state"
)

// merged returns the record for the planned state, keeping what the old
// record remembers about replaced default routes. A pin route that
// someone else already holds (s says) is theirs, not the tunnel's.
func merged(underlay string, old *state.Record, want []plan.Tunnel, s *snapshot) *state.Record {
	rec := &state.Record{Version: state.Version, Underlay: underlay}
	for _, t := range want {
		e := state.Tunnel{Name: t.Link.Name, Down: t.Down, Local: t.Link.Local, Remote: t.Link.Remote, RemoteName: t.RemoteName}
		if t.Pin != nil && findRoute(s.routes, *t.Pin, false) == nil {
			p := state.FromPlan(*t.Pin, 0)
			e.Pin = &p
		}
		for _, d := range t.Defaults {
			e.Defaults = append(e.Defaults, state.FromPlan(d, 0))
		}
		if prev := old.Find(t.Link.Name); prev != nil && len(t.Defaults) > 0 {
			e.Replaced = prev.Replaced
			e.Seq = prev.Seq
			e.Displaced = prev.Displaced
		}
		for _, m := range t.MSS {
			e.MSS = append(e.MSS, m.Family)
		}
		rec.Tunnels = append(rec.Tunnels, e)
	}
	return rec
}

// union returns a record listing every tunnel of a and b, b's entry
// winning, used as the intent written before changes.
func union(a, b *state.Record) *state.Record {
	out := &state.Record{Version: state.Version, Underlay: b.Underlay}
	out.Tunnels = append(out.Tunnels, b.Tunnels...)
	if a != nil {
		for _, t := range a.Tunnels {
			if b.Find(t.Name) == nil {
				out.Tunnels = append(out.Tunnels, t)
			}
		}
	}
	return out
}

func restoreRecord(underlay string, rec *state.Record) *state.Record {
	if rec == nil {
		return &state.Record{Underlay: underlay}
	}
	return rec
}
