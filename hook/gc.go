package hook

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/gre-hook/gre-hook/hook/mss"
	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/state"
)

// splitComment parses a rule comment "gre-hook:UNDERLAY:TUNNEL".
func splitComment(c string) (underlay, tunnel string, ok bool) {
	if !strings.HasPrefix(c, plan.AliasPrefix) {
		return "", "", false
	}
	parts := strings.SplitN(strings.TrimPrefix(c, plan.AliasPrefix), ":", 2)
	if len(parts) != 2 {
		return "", "", false
	}
	return parts[0], parts[1], true
}

// GC removes every object of gre-hook's that the current config and a
// completed bring-up do not both account for: a tunnel is kept only if the
// config has it on that underlay, the underlay exists, and the underlay's
// record lists it. It finds objects by the marks the kernel keeps (link
// alias, route protocol, rule comment), so it works without records too.
func GC(ctx context.Context, req Request, sys *System) error {
	cfg, err := LoadConfig(req)
	if err != nil {
		return fmt.Errorf("gc: refusing to run with a broken config: %w", err)
	}
	l := &logger{w: sys.Log, verbose: req.Verbose, dry: req.DryRun}
	if !req.DryRun {
		unlock, err := state.Lock(sys.Store.Dir, sys.LockWait)
		if err != nil {
			return err
		}
		defer unlock()
	}
	recs, errs := sys.Store.All()
	snap, err := takeSnapshot(sys.Net, map[int]bool{4: true, 6: true})
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	configured := map[string]string{} // tunnel -> underlay
	for _, t := range cfg.Tunnels {
		configured[t.Name] = t.Underlay
	}
	explained := func(underlay, tunnel string) bool {
		if configured[tunnel] != underlay {
			return false
		}
		if _, ok := snap.links[underlay]; !ok {
			return false
		}
		return recs[underlay].Find(tunnel) != nil
	}

	// Victims by underlay: from records and from link aliases.
	victims := map[string][]state.Tunnel{}
	listed := map[string]bool{}
	for u, rec := range recs {
		for _, t := range rec.Tunnels {
			listed[t.Name] = true
			if !explained(u, t.Name) {
				victims[u] = append(victims[u], t)
			}
		}
	}
	for _, lk := range snap.links {
		if !strings.HasPrefix(lk.Alias, plan.AliasPrefix) || listed[lk.Name] {
			continue
		}
		u := strings.TrimPrefix(lk.Alias, plan.AliasPrefix)
		if !explained(u, lk.Name) {
			victims[u] = append(victims[u], state.Tunnel{Name: lk.Name})
		}
	}

	for _, f := range []int{4, 6} {
		b, err := sys.Tables(f)
		if err != nil {
			continue // no iptables, no rules of ours
		}
		if req.DryRun {
			b = dryTables{b, l}
		}
		mine := func(c string) bool {
			u, t, ok := splitComment(c)
			return ok && !explained(u, t)
		}
		if _, err := mss.Sync(b, mine, nil, l.change); err != nil {
			errs = append(errs, err)
		}
	}

	underlays := make([]string, 0, len(victims))
	for u := range victims {
		underlays = append(underlays, u)
	}
	sort.Strings(underlays)
	for _, u := range underlays {
		vs := victims[u]
		sort.Slice(vs, func(i, j int) bool { return vs[i].Name < vs[j].Name })
		td := &teardown{ctx: ctx, sys: sys, l: l, dry: req.DryRun, underlay: u, links: snap.links, routes: snap.routes}
		td.runDown(vs)
		errs = append(errs, td.tunnels(vs)...)
	}

	// Pins whose tunnel is gone and whose record was lost: routes of ours
	// on a device that is not one of our tunnels, unclaimed by any record.
	pinned := map[string]bool{}
	for u, rec := range recs {
		for _, t := range rec.Tunnels {
			if t.Pin != nil && explained(u, t.Name) {
				pinned[t.Pin.Dst.String()] = true
			}
		}
	}
	pins := &teardown{ctx: ctx, sys: sys, l: l, dry: req.DryRun, links: snap.links}
	for _, f := range []int{4, 6} {
		for _, r := range snap.routes[f] {
			if r.Protocol != plan.RouteProtocol || pinned[r.Dst.String()] {
				continue
			}
			if lk, ok := snap.links[r.Dev]; ok && strings.HasPrefix(lk.Alias, plan.AliasPrefix) {
				continue // goes with its tunnel, or stays with it
			}
			if err := pins.delRoute(state.FromPlan(r.Route, 0)); err != nil {
				errs = append(errs, err)
			}
		}
	}

	if !req.DryRun {
		for u, rec := range recs {
			var keep []state.Tunnel
			for _, t := range rec.Tunnels {
				if explained(u, t.Name) {
					keep = append(keep, t)
				}
			}
			if len(keep) == len(rec.Tunnels) {
				continue
			}
			rec.Tunnels = keep
			if err := sys.Store.Save(rec); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("gc: %w", join(errs))
	}
	if !l.changed {
		l.note("gc: nothing to remove")
	}
	return nil
}
