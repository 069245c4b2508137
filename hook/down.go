package hook

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/gre-hook/gre-hook/hook/config"
	"github.com/gre-hook/gre-hook/hook/mss"
	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/rtnl"
	"github.com/gre-hook/gre-hook/hook/state"
)

// joinErrors is errors.Join, which Go 1.19 lacks.
type joinErrors []error

func (e joinErrors) Error() string {
	s := make([]string, len(e))
	for i, err := range e {
		s[i] = err.Error()
	}
	return strings.Join(s, "; ")
}

func join(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return joinErrors(errs)
}

func down(ctx context.Context, req Request, cfg *config.Config, cfgErr error, sys *System, l *logger) error {
	var names []string
	if cfgErr == nil {
		for _, t := range cfg.For(req.Iface) {
			names = append(names, t.Name)
		}
	}
	if !sys.Store.Exists(req.Iface) && len(names) == 0 {
		if cfgErr == nil {
			// The common case for most interfaces: stay fast and silent.
			l.note("no tunnels on %s", req.Iface)
			return nil
		}
		// No record and no readable config: the kernel's marks are all
		// there is to go by, so look for them rather than give up.
		l.warn("%v; looking for gre-hook's links on %s by their marks", cfgErr, req.Iface)
	}
	// Read under the lock: an up that ran while this run waited may have
	// changed what the record lists. Without the record, what the tunnels
	// took from the kernel is unknown: an error, not a guess.
	rec, unlock, err := openRecord(req, sys, l, !req.DryRun, "taking down")
	if err != nil {
		return err
	}
	defer unlock()

	links, err := sys.Net.Links()
	if err != nil {
		return fmt.Errorf("taking down tunnels on %s: %w", req.Iface, err)
	}
	byName := map[string]rtnl.Link{}
	for _, lk := range links {
		byName[lk.Name] = lk
	}
	// Victims: what the record lists, plus any link the kernel says is
	// ours on this underlay (the record may be lost or stale).
	var victims []state.Tunnel
	seen := map[string]bool{}
	unlisted := map[string]bool{}
	if rec != nil {
		if rec.Source != "" && rec.Source != sourceOf(req) {
			l.note("%s: its tunnels came from %s; removing them as the record lists them", req.Iface, describeSource(rec.Source))
		}
		for _, t := range rec.Tunnels {
			victims = append(victims, t)
			seen[t.Name] = true
		}
	}
	for _, lk := range links {
		if lk.Alias == plan.Alias(req.Iface) && !seen[lk.Name] {
			victims = append(victims, state.Tunnel{Name: lk.Name})
			seen[lk.Name] = true
			unlisted[lk.Name] = true
		}
	}
	if err := findPins(sys, rec, victims, byName); err != nil {
		return fmt.Errorf("taking down tunnels on %s: %w", req.Iface, err)
	}

	var errs []error
	chains := recordChains(rec)
	if rec == nil {
		chains = allChains
	}
	td := &teardown{sys: sys, l: l, dry: req.DryRun, underlay: req.Iface, links: byName,
		ledger: newLedger(sys.Store, "", nil), unlisted: unlisted}
	td.runDown(victims)
	errs = append(errs, td.rules(chains, rec != nil)...)
	errs = append(errs, td.tunnels(victims)...)
	// The tunnels' default routes in gre-hook's table went with their
	// links; the rules go with the last of them.
	if others, unreadable := othersOf(sys.Store, req.Iface); unreadable != "" {
		l.warn("%s", keepRulesNote(unreadable))
	} else {
		errs = append(errs, td.dropRules(needsRules(others))...)
	}
	if req.DryRun {
		return join(errs)
	}
	errs = append(errs, td.ledger.save()...)
	if len(errs) == 0 {
		if err := sys.Store.Remove(req.Iface); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("taking down tunnels on %s: %w", req.Iface, join(errs))
	}
	if !l.changed {
		l.note("nothing of gre-hook's left on %s", req.Iface)
	}
	return nil
}

// teardown removes what gre-hook created, carrying on past failures.
type teardown struct {
	sys      *System
	l        *logger
	dry      bool
	underlay string
	links    map[string]rtnl.Link
	// routes is the kernel's routes, read when first needed; nil until
	// then. Decisions about the default route keep it current.
	routes map[int][]rtnl.Route
	ledger *ledger
	// unlisted names victims that no record lists: found by their marks.
	unlisted map[string]bool
}

// runDown runs the down_command of each victim whose link still exists
// and is gre-hook's for this underlay: a command from a record is run as
// root, and a record alone is not proof the tunnel is ours. A failure is
// reported but does not stop the teardown.
func (td *teardown) runDown(victims []state.Tunnel) {
	for _, t := range victims {
		if len(t.Down) == 0 {
			continue
		}
		if lk, ok := td.links[t.Name]; !ok || lk.Alias != plan.Alias(td.underlay) {
			continue
		}
		td.l.change(strings.Join(t.Down, " "))
		if td.dry {
			continue
		}
		// Teardown must finish even if the run was asked to stop.
		if err := td.sys.Command(context.Background(), t.Down, commandEnv(t.Name, td.underlay, PhaseDown)); err != nil {
			td.l.warn("tunnel %q: down_command: %v", t.Name, err)
		}
	}
}

// rules removes the underlay's rules from the chains of each family.
// strict says the record knows there are rules, so a missing iptables is
// an error.
func (td *teardown) rules(chains map[int][]mss.Chain, strict bool) []error {
	var errs []error
	prefix := plan.Comment(td.underlay, "")
	for _, f := range []int{4, 6} {
		if len(chains[f]) == 0 {
			continue
		}
		b, err := td.sys.Tables(f)
		if err != nil {
			if strict {
				errs = append(errs, err)
			}
			continue
		}
		if td.dry {
			b = dryTables{b, td.l}
		}
		if _, err := mss.Sync(b, chains[f], func(c string) bool { return strings.HasPrefix(c, prefix) }, nil, td.l.change); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// kernelRoutes returns the route snapshot, reading it on first use.
func (td *teardown) kernelRoutes() (map[int][]rtnl.Route, error) {
	if td.routes == nil {
		routes, err := readRoutes(td.sys.Net)
		if err != nil {
			return nil, err
		}
		td.routes = routes
	}
	return td.routes, nil
}

// lostDefaults returns the previous release's main-table default routes
// through the victim's link when no record lists the victim: the kernel
// deletes them with the link, and the successor rule must still run.
// Defaults in gre-hook's table just go with the link.
func (td *teardown) lostDefaults(t state.Tunnel) ([]state.Route, error) {
	if _, ok := td.links[t.Name]; !ok {
		return nil, nil
	}
	routes, err := td.kernelRoutes()
	if err != nil {
		return nil, err
	}
	var out []state.Route
	for _, f := range []int{4, 6} {
		for _, r := range routes[f] {
			if r.Protocol == plan.RouteProtocol && r.IsDefault() && r.Table == 0 && r.Dev == t.Name {
				out = append(out, state.FromPlan(planRoute(r), 0))
			}
		}
	}
	return out, nil
}

// releaseDefaults lets go of the main-table default routes tunnel t of the
// previous release installed, following the rule in legacy.go. gone names every tunnel this run
// removes: none of them may take the default over.
func (td *teardown) releaseDefaults(t *state.Tunnel, defaults []state.Route, gone map[string]bool, lost bool) []error {
	if len(defaults) == 0 {
		return nil
	}
	routes, err := td.kernelRoutes()
	if err != nil {
		return []error{fmt.Errorf("tunnel %q: %w", t.Name, err)}
	}
	var errs []error
	for _, d := range defaults {
		cur := routeAt(routes, d.Plan())
		dec := td.ledger.decide(t, d, cur, td.links, gone)
		if dec.note != "" {
			td.l.note("%s", dec.note)
		}
		if dec.warn != "" {
			td.l.warn("%s", dec.warn)
		}
		switch {
		case dec.put != nil:
			p := dec.put.Plan()
			cmd := plan.RestoreRouteCmd(p, dec.put.Protocol)
			td.l.change(cmd)
			if !td.dry {
				if err := td.sys.Net.ReplaceRoute(kernelRoute(p, dec.put.Protocol)); err != nil {
					errs = append(errs, fmt.Errorf("tunnel %q: %s: %w", t.Name, cmd, err))
					continue
				}
			}
			setRouteAt(routes, p, &rtnl.Route{Dst: p.Dst, Gw: p.Gw, Dev: p.Dev, Table: p.Table, Metric: p.Metric, Protocol: dec.put.Protocol})
		case dec.del:
			if lost {
				td.l.warn("tunnel %q: its %s goes with it, and no record says which route it replaced: "+
					"the router has no %s now; add one back with `ip route add default via GATEWAY`",
					t.Name, what(d), what(d))
			}
			if err := td.delRoute(d); err != nil {
				errs = append(errs, fmt.Errorf("tunnel %q: %w", t.Name, err))
				continue
			}
			setRouteAt(routes, d.Plan(), nil)
		}
	}
	return errs
}

// tunnels removes the victims' routes and links.
func (td *teardown) tunnels(victims []state.Tunnel) []error {
	var errs []error
	var dels []string
	n := td.sys.Net
	gone := map[string]bool{}
	for _, t := range victims {
		gone[t.Name] = true
	}
	for i := range victims {
		t := &victims[i]
		// Hand the default route on before the link goes: a replace swaps
		// ours out without a moment of no default.
		defaults, lost := t.LegacyDefaults(), false
		if td.unlisted[t.Name] {
			var err error
			if defaults, err = td.lostDefaults(*t); err != nil {
				errs = append(errs, fmt.Errorf("tunnel %q: %w", t.Name, err))
			}
			lost = len(defaults) > 0
		}
		errs = append(errs, td.releaseDefaults(t, defaults, gone, lost)...)
		if t.Pin != nil {
			if err := td.delRoute(*t.Pin); err != nil {
				errs = append(errs, fmt.Errorf("tunnel %q: %w", t.Name, err))
			}
		}
		lk, ok := td.links[t.Name]
		if !ok {
			continue
		}
		if lk.Alias != plan.Alias(td.underlay) {
			td.l.warn("tunnel %q: link %s is not gre-hook's for %s (alias %q); leaving it alone", t.Name, lk.Name, td.underlay, lk.Alias)
			continue
		}
		dels = append(dels, t.Name)
	}
	// The links go last and together: the kernel deletes many links in
	// one batch far faster than one by one.
	cmds := make([]string, len(dels))
	for i, name := range dels {
		cmds[i] = plan.DelLinkCmd(name)
	}
	td.l.change(cmds...)
	if td.dry || len(dels) == 0 {
		return errs
	}
	for i, err := range n.DelLinks(dels) {
		if err != nil {
			errs = append(errs, fmt.Errorf("tunnel %q: %s: %w", dels[i], plan.DelLinkCmd(dels[i]), err))
		}
	}
	return errs
}

// delRoute deletes one of gre-hook's routes. The kernel matches the
// protocol on delete, so a route someone else has put at the same
// destination is left alone.
func (td *teardown) delRoute(r state.Route) error {
	if td.routes != nil && findRoute(td.routes, r.Plan(), true) == nil {
		return nil
	}
	cmd := plan.DelRouteCmd(r.Plan())
	if td.dry {
		td.l.change(cmd)
		return nil
	}
	p := r.Plan()
	if _, ok := td.links[p.Dev]; !ok {
		// Its device is gone, and the route with it.
		return nil
	}
	td.l.change(cmd)
	if err := td.sys.Net.DelRoute(kernelRoute(p, plan.RouteProtocol)); err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	return nil
}

// findPins fills in the pin route of victims that the record does not
// list (it was lost): a route of gre-hook's to the tunnel's remote through
// another device is the pin its default_route added. A pin that another of
// gre-hook's tunnels may still need is left alone.
func findPins(sys *System, rec *state.Record, victims []state.Tunnel, links map[string]rtnl.Link) error {
	var lost []*state.Tunnel
	victim := map[string]bool{}
	for i := range victims {
		victim[victims[i].Name] = true
		if rec.Find(victims[i].Name) == nil {
			lost = append(lost, &victims[i])
		}
	}
	if len(lost) == 0 {
		return nil
	}
	needed := map[netip.Addr]bool{}
	for _, lk := range links {
		if strings.HasPrefix(lk.Alias, plan.AliasPrefix) && !victim[lk.Name] && lk.Remote.IsValid() {
			needed[lk.Remote] = true
		}
	}
	recs, _, _ := sys.Store.All()
	for _, rec := range recs {
		for _, t := range rec.Tunnels {
			if t.Pin != nil && !victim[t.Name] {
				needed[t.Pin.Dst.Addr()] = true
			}
		}
	}
	routes := map[int][]rtnl.Route{}
	for _, t := range lost {
		lk, ok := links[t.Name]
		if !ok || !lk.Remote.IsValid() || needed[lk.Remote] {
			continue
		}
		f := familyOf(lk.Remote)
		if routes[f] == nil {
			rs, err := sys.Net.Routes(f)
			if err != nil {
				return err
			}
			routes[f] = rs
		}
		pin := netip.PrefixFrom(lk.Remote, lk.Remote.BitLen())
		for _, r := range routes[f] {
			if r.Protocol == plan.RouteProtocol && r.Dst == pin && r.Table == 0 && r.Dev != t.Name {
				p := state.FromPlan(planRoute(r), 0)
				t.Pin = &p
				break
			}
		}
	}
	return nil
}
