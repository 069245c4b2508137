package engine

import (
	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/state"
)

// Merged returns the record for the planned state (want, before a dead
// tunnel's routes are withdrawn from it: the record lists what the tunnel
// has when alive). What the old record keeps in the previous release's
// form stays until the run has moved it to the new form (diffLegacy).
func Merged(underlay string, old *state.Record, want []plan.Tunnel) *state.Record {
	rec := &state.Record{Version: state.Version, Underlay: underlay}
	for _, t := range want {
		e := state.Tunnel{Name: t.Link.Name, Down: t.Down, Local: t.Link.Local, Remote: t.Link.Remote, RemoteName: t.RemoteName}
		for _, r := range t.Routes {
			e.Routes = append(e.Routes, state.FromPlan(r, 0))
		}
		for _, d := range t.Defaults {
			e.Defaults = append(e.Defaults, state.FromPlan(d, 0))
		}
		if prev := old.Find(t.Link.Name); prev != nil && prev.Legacy() {
			e.Defaults = append(e.Defaults, prev.LegacyDefaults()...)
			e.Pin, e.Replaced, e.Seq, e.Displaced = prev.Pin, prev.Replaced, prev.Seq, prev.Displaced
			e.Fallbacks, e.LegacyWithdrawn = prev.Fallbacks, prev.LegacyWithdrawn
		}
		for _, m := range t.MSS {
			e.MSS = append(e.MSS, m.Family)
		}
		e.Guard = t.Reflect
		rec.Tunnels = append(rec.Tunnels, e)
	}
	return rec
}

// Union returns a record listing every tunnel of a and b, b's entry
// winning, used as the intent written before changes. A guard either
// lists stays listed: a run cut short before its write still leaves it in
// the kernel, and the next run must read its chain to remove it.
func Union(a, b *state.Record) *state.Record {
	out := &state.Record{Version: state.Version, Underlay: b.Underlay, Policy: b.Policy}
	if a != nil {
		// The policy in force until the run is done.
		out.Policy = a.Policy
	}
	out.Tunnels = append(out.Tunnels, b.Tunnels...)
	if a != nil {
		for _, t := range a.Tunnels {
			if e := out.Find(t.Name); e == nil {
				out.Tunnels = append(out.Tunnels, t)
			} else if t.Guard {
				e.Guard = true
			}
		}
	}
	return out
}

// RestoreRecord is the record a complete rollback saves: rec as the run
// found it, or an empty one for underlay where there was none.
func RestoreRecord(underlay string, rec *state.Record) *state.Record {
	if rec == nil {
		return &state.Record{Underlay: underlay}
	}
	return rec
}
