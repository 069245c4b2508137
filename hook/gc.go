package hook

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"sort"
	"strings"

	"github.com/gre-hook/gre-hook/hook/config"
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

// GC removes every object of gre-hook's that the config and a completed
// bring-up do not both account for: a tunnel is kept only if its config
// has it on that underlay, the underlay exists, and the underlay's record
// lists it. Its config is the one its record names (the config of the
// stanza that brought it up), else the one this run reads. GC finds
// objects by the marks the kernel keeps (link alias, route protocol, rule
// comment), so it works without records too. An underlay whose record or
// recorded config cannot be read is left alone and reported. cfg is the
// config req names.
func GC(ctx context.Context, req Request, cfg *config.Config, sys *System) error {
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
	for _, u := range sortedKeys(recs) {
		distrust(recs[u], req, l)
	}
	var errs []error
	for _, u := range sortedKeys(broken) {
		errs = append(errs, broken[u])
	}
	snap, err := takeSnapshot(sys.Net)
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	srcs := newSources(req, cfg)
	// protected underlays are left alone: what explains them is unknown.
	protected := map[string]bool{}
	for u := range broken {
		protected[u] = true
	}
	for _, u := range sortedKeys(recs) {
		if _, err := srcs.forRecord(recs[u]); err != nil {
			protected[u] = true
			errs = append(errs, fmt.Errorf("leaving the tunnels on %s alone: %w", u, err))
		} else if src := recs[u].Source; src != "" && src != sourceOf(req) {
			l.note("%s: judged by %s, the config its tunnels came from", u, describeSource(src))
		}
	}
	explained := func(underlay, tunnel string) bool {
		if protected[underlay] {
			return true
		}
		if _, ok := snap.links[underlay]; !ok {
			return false
		}
		c, _ := srcs.forRecord(recs[underlay])
		if c == nil || !hasTunnel(c, underlay, tunnel) {
			return false
		}
		return recs[underlay].Find(tunnel) != nil
	}

	// Victims by underlay: from records and from link aliases.
	victims := map[string][]state.Tunnel{}
	unlisted := map[string]bool{}
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
			unlisted[lk.Name] = true
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
		if _, err := mss.Sync(b, allChains[f], mine, nil, l.change); err != nil {
			errs = append(errs, err)
		}
	}

	lg := ledgerOf(sys.Store, recs)
	for _, u := range sortedKeys(victims) {
		vs := victims[u]
		sort.Slice(vs, func(i, j int) bool { return vs[i].Name < vs[j].Name })
		td := &teardown{sys: sys, l: l, dry: req.DryRun, underlay: u, links: snap.links, routes: snap.routes, ledger: lg, unlisted: unlisted}
		td.runDown(vs)
		errs = append(errs, td.tunnels(vs)...)
	}

	// Pins whose tunnel is gone and whose record was lost: routes of ours
	// on a device that is not one of our tunnels, unclaimed by any record.
	pinned := map[string]bool{}
	for _, lk := range snap.links {
		// An underlay left alone keeps its tunnels' pins too.
		if u := strings.TrimPrefix(lk.Alias, plan.AliasPrefix); u != lk.Alias && protected[u] && lk.Remote.IsValid() {
			pinned[netip.PrefixFrom(lk.Remote, lk.Remote.BitLen()).String()] = true
		}
	}
	for u, rec := range recs {
		for _, t := range rec.Tunnels {
			if t.Pin != nil && explained(u, t.Name) {
				pinned[t.Pin.Dst.String()] = true
			}
		}
	}
	pins := &teardown{sys: sys, l: l, dry: req.DryRun, links: snap.links}
	for _, f := range []int{4, 6} {
		for _, r := range snap.routes[f] {
			if r.Protocol != plan.RouteProtocol || pinned[r.Dst.String()] || r.IsDefault() {
				continue
			}
			if lk, ok := snap.links[r.Dev]; ok && strings.HasPrefix(lk.Alias, plan.AliasPrefix) {
				continue // goes with its tunnel, or stays with it
			}
			if err := pins.delRoute(state.FromPlan(planRoute(r), 0)); err != nil {
				errs = append(errs, err)
			}
		}
	}

	// gre-hook's rules stay while a record that stays lists a default
	// route of their family; an underlay left alone keeps its own.
	kept := map[string]*state.Record{}
	for u, rec := range recs {
		k := &state.Record{Underlay: u}
		for _, t := range rec.Tunnels {
			if explained(u, t.Name) {
				k.Tunnels = append(k.Tunnels, t)
			}
		}
		kept[u] = k
	}
	need := needsRules(kept)
	if len(broken) > 0 {
		need = map[int]bool{4: true, 6: true}
	}
	rules := &teardown{sys: sys, l: l, dry: req.DryRun, links: snap.links}
	errs = append(errs, rules.dropRules(need)...)

	if !req.DryRun {
		for u, rec := range recs {
			var keep []state.Tunnel
			for _, t := range rec.Tunnels {
				if explained(u, t.Name) {
					keep = append(keep, t)
				}
			}
			if len(keep) == len(rec.Tunnels) && !lg.dirty[u] {
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

func hasTunnel(c *config.Config, underlay, name string) bool {
	for _, t := range c.For(underlay) {
		if t.Name == name {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// sources loads, once each, the configs that records name.
type sources struct {
	req    Request
	own    string
	cfg    *config.Config
	loaded map[string]*config.Config
	errs   map[string]error
}

func newSources(req Request, cfg *config.Config) *sources {
	return &sources{req: req, own: sourceOf(req), cfg: cfg, loaded: map[string]*config.Config{}, errs: map[string]error{}}
}

// forRecord returns the config that explains rec's tunnels: the one the
// record names, or this run's where it names none (or there is no
// record). A named config that no longer exists explains nothing.
func (s *sources) forRecord(rec *state.Record) (*config.Config, error) {
	if rec == nil || rec.Source == "" || rec.Source == s.own {
		return s.cfg, nil
	}
	src := rec.Source
	if c, ok := s.loaded[src]; ok {
		return c, s.errs[src]
	}
	req := s.req
	req.Config = ""
	if src != state.DefaultSource {
		req.Config = src
		if _, err := os.Lstat(src); errors.Is(err, fs.ErrNotExist) {
			s.loaded[src] = &config.Config{}
			return s.loaded[src], nil
		}
	}
	c, err := LoadConfig(req)
	if err != nil {
		err = fmt.Errorf("reading %s, the config the tunnels came from: %w", describeSource(src), err)
	}
	s.loaded[src], s.errs[src] = c, err
	return c, err
}
