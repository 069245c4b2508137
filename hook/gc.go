package hook

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/gre-hook/gre-hook/hook/config"
	"github.com/gre-hook/gre-hook/hook/engine"
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

// runGC removes every object of gre-hook's that the config and a completed
// bring-up do not both account for: a tunnel is kept only if its config
// has it on that underlay, the underlay exists, and the underlay's record
// lists it. Its config is the one its record names (the config of the
// stanza that brought it up), else the one this run reads. It finds
// objects by the marks the kernel keeps (link alias, route protocol, rule
// comment), so it works without records too. An underlay whose record or
// recorded config cannot be read is left alone and reported. cfg is the
// config req names.
func runGC(ctx context.Context, req Request, cfg *config.Config, sys *System) error {
	l := newLogger(req, sys)
	if !req.DryRun {
		unlock, err := state.Lock(sys.Store.Dir, sys.LockWait)
		if err != nil {
			return err
		}
		defer unlock()
	}
	recs, broken, err := sys.Store.All()
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	for _, u := range engine.SortedKeys(recs) {
		distrust(recs[u], req, l)
	}
	g := &gcRun{req: req, sys: sys, l: l, recs: recs, broken: broken, srcs: newSources(req, cfg), protected: map[string]bool{}}
	for _, u := range engine.SortedKeys(broken) {
		g.errs = append(g.errs, broken[u])
	}
	if g.snap, err = engine.TakeSnapshot(sys.Net); err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	// protected underlays are left alone: what explains them is unknown.
	for u := range broken {
		g.protected[u] = true
	}
	for _, u := range engine.SortedKeys(recs) {
		if _, err := g.srcs.forRecord(recs[u]); err != nil {
			g.protected[u] = true
			g.errs = append(g.errs, fmt.Errorf("leaving the tunnels on %s alone: %w", u, err))
		} else if src := recs[u].Source; src != "" && src != sourceOf(req) {
			l.Note("%s: judged by %s, the config its tunnels came from", u, describeSource(src))
		}
	}
	victims, unlisted := g.victims()
	g.rules()
	lg := engine.LedgerOf(sys.Store, recs)
	for _, u := range engine.SortedKeys(victims) {
		vs := victims[u]
		sort.Slice(vs, func(i, j int) bool { return vs[i].Name < vs[j].Name })
		td := &engine.Teardown{Sys: sys, Log: l, Dry: req.DryRun, Underlay: u, Links: g.snap.Links, Routes: g.snap.Routes, Ledger: lg, Unlisted: unlisted}
		td.RunDown(vs)
		g.errs = append(g.errs, td.Tunnels(vs)...)
	}
	g.pins()
	kept := g.kept()
	g.policyRules(kept)
	if !req.DryRun {
		g.save(lg, kept)
	}
	if len(g.errs) > 0 {
		return fmt.Errorf("gc: %w", engine.Join(g.errs))
	}
	if !l.Changed {
		l.Note("gc: nothing to remove")
	}
	return nil
}

// gcRun is one gc: the records, the kernel, and the errors so far; it
// carries on past each.
type gcRun struct {
	req    Request
	sys    *System
	l      *engine.Logger
	recs   map[string]*state.Record
	broken map[string]error
	snap   *engine.Snapshot
	srcs   *sources
	// protected underlays are left alone: what explains them is unknown.
	protected map[string]bool
	errs      []error
}

// explained reports whether a tunnel stays: its underlay is left alone,
// or the underlay exists, its config has the tunnel and its record lists
// it.
func (g *gcRun) explained(underlay, tunnel string) bool {
	if g.protected[underlay] {
		return true
	}
	if _, ok := g.snap.Links[underlay]; !ok {
		return false
	}
	c, _ := g.srcs.forRecord(g.recs[underlay])
	if c == nil || !hasTunnel(c, underlay, tunnel) {
		return false
	}
	return g.recs[underlay].Find(tunnel) != nil
}

// victims is what gc removes, by underlay: from the records and from the
// links' aliases; unlisted names those no record lists.
func (g *gcRun) victims() (victims map[string][]state.Tunnel, unlisted map[string]bool) {
	victims, unlisted = map[string][]state.Tunnel{}, map[string]bool{}
	listed := map[string]bool{}
	for u, rec := range g.recs {
		for _, t := range rec.Tunnels {
			listed[t.Name] = true
			if !g.explained(u, t.Name) {
				victims[u] = append(victims[u], t)
			}
		}
	}
	for _, lk := range g.snap.Links {
		if !strings.HasPrefix(lk.Alias, plan.AliasPrefix) || listed[lk.Name] {
			continue
		}
		u := strings.TrimPrefix(lk.Alias, plan.AliasPrefix)
		if !g.explained(u, lk.Name) {
			victims[u] = append(victims[u], state.Tunnel{Name: lk.Name})
			unlisted[lk.Name] = true
		}
	}
	return victims, unlisted
}

// rules removes the iptables rules of tunnels that do not stay.
func (g *gcRun) rules() {
	for _, f := range []int{4, 6} {
		b, err := g.sys.Tables(f)
		if err != nil {
			continue // no iptables, no rules of ours
		}
		if g.req.DryRun {
			b = engine.DryTables{Backend: b, Log: g.l}
		}
		mine := func(c string) bool {
			u, t, ok := splitComment(c)
			return ok && !g.explained(u, t)
		}
		if _, err := mss.Sync(b, engine.AllChains[f], mine, nil, g.l.Change); err != nil {
			g.errs = append(g.errs, err)
		}
	}
}

// pins removes the previous release's pins whose tunnel is gone and whose
// record was lost: routes of ours on a device that is not one of our
// tunnels, unclaimed by any record.
func (g *gcRun) pins() {
	pinned := map[string]bool{}
	for _, lk := range g.snap.Links {
		// An underlay left alone keeps its tunnels' pins too.
		if u := strings.TrimPrefix(lk.Alias, plan.AliasPrefix); u != lk.Alias && g.protected[u] && lk.Remote.IsValid() {
			pinned[netip.PrefixFrom(lk.Remote, lk.Remote.BitLen()).String()] = true
		}
	}
	for u, rec := range g.recs {
		for _, t := range rec.Tunnels {
			if t.Pin != nil && g.explained(u, t.Name) {
				pinned[t.Pin.Dst.String()] = true
			}
		}
	}
	pins := &engine.Teardown{Sys: g.sys, Log: g.l, Dry: g.req.DryRun, Links: g.snap.Links}
	for _, f := range []int{4, 6} {
		for _, r := range g.snap.Routes[f] {
			if r.Protocol != plan.RouteProtocol || pinned[r.Dst.String()] || r.IsDefault() {
				continue
			}
			if lk, ok := g.snap.Links[r.Dev]; ok && strings.HasPrefix(lk.Alias, plan.AliasPrefix) {
				continue // goes with its tunnel, or stays with it
			}
			if err := pins.DelRoute(state.FromPlan(engine.PlanRoute(r), 0)); err != nil {
				g.errs = append(g.errs, err)
			}
		}
	}
}

// kept is each record with only the tunnels that stay.
func (g *gcRun) kept() map[string]*state.Record {
	kept := map[string]*state.Record{}
	for u, rec := range g.recs {
		k := &state.Record{Underlay: u}
		for _, t := range rec.Tunnels {
			if g.explained(u, t.Name) {
				k.Tunnels = append(k.Tunnels, t)
			}
		}
		kept[u] = k
	}
	return kept
}

// policyRules keeps gre-hook's ip rules while a record that stays lists
// a default route of their family; an underlay left alone keeps its own.
func (g *gcRun) policyRules(kept map[string]*state.Record) {
	need := engine.NeedsRules(kept)
	if len(g.broken) > 0 {
		need = map[int]bool{4: true, 6: true}
	}
	rules := &engine.Teardown{Sys: g.sys, Log: g.l, Dry: g.req.DryRun, Links: g.snap.Links}
	g.errs = append(g.errs, rules.DropRules(need)...)
}

// save rewrites the records that lost tunnels (kept has what stays of
// each), or whose entries the ledger changed.
func (g *gcRun) save(lg *engine.Ledger, kept map[string]*state.Record) {
	for u, rec := range g.recs {
		keep := kept[u].Tunnels
		if len(keep) == len(rec.Tunnels) && !lg.Dirty[u] {
			continue
		}
		rec.Tunnels = keep
		if err := g.sys.Store.Save(rec); err != nil {
			g.errs = append(g.errs, err)
		}
	}
}

func hasTunnel(c *config.Config, underlay, name string) bool {
	for _, t := range c.For(underlay) {
		if t.Name == name {
			return true
		}
	}
	return false
}
