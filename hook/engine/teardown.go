package engine

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/gre-hook/gre-hook/hook/mss"
	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/rtnl"
	"github.com/gre-hook/gre-hook/hook/state"
)

// Teardown removes what gre-hook created, carrying on past failures.
type Teardown struct {
	Sys      *System
	Log      *Logger
	Dry      bool
	Underlay string
	Links    map[string]rtnl.Link
	// Routes is the kernel's routes, read when first needed; nil until
	// then. Decisions about the default route keep it current.
	Routes map[int][]rtnl.Route
	Ledger *Ledger
	// Unlisted names victims that no record lists: found by their marks.
	Unlisted map[string]bool
}

// RunDown runs the down_command of each victim whose link still exists
// and is gre-hook's for this underlay: a command from a record is run as
// root, and a record alone is not proof the tunnel is ours. A failure is
// reported but does not stop the teardown.
func (td *Teardown) RunDown(victims []state.Tunnel) {
	for _, t := range victims {
		if len(t.Down) == 0 {
			continue
		}
		if lk, ok := td.Links[t.Name]; !ok || lk.Alias != plan.Alias(td.Underlay) {
			continue
		}
		td.Log.Change(strings.Join(t.Down, " "))
		if td.Dry {
			continue
		}
		// Teardown must finish even if the run was asked to stop.
		if err := td.Sys.Command(context.Background(), t.Down, commandEnv(t.Name, td.Underlay, PhaseDown)); err != nil {
			td.Log.Warn("tunnel %q: down_command: %v", t.Name, err)
		}
	}
}

// Rules removes the underlay's rules from the chains of each family.
// strict says the record knows there are rules, so a missing iptables is
// an error.
func (td *Teardown) Rules(chains map[int][]mss.Chain, strict bool) []error {
	var errs []error
	prefix := plan.Comment(td.Underlay, "")
	for _, f := range []int{4, 6} {
		if len(chains[f]) == 0 {
			continue
		}
		b, err := td.Sys.Tables(f)
		if err != nil {
			if strict {
				errs = append(errs, err)
			}
			continue
		}
		if td.Dry {
			b = DryTables{b, td.Log}
		}
		if _, err := mss.Sync(b, chains[f], func(c string) bool { return strings.HasPrefix(c, prefix) }, nil, td.Log.Change); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// kernelRoutes returns the route snapshot, reading it on first use.
func (td *Teardown) kernelRoutes() (map[int][]rtnl.Route, error) {
	if td.Routes == nil {
		routes, err := readRoutes(td.Sys.Net)
		if err != nil {
			return nil, err
		}
		td.Routes = routes
	}
	return td.Routes, nil
}

// lostDefaults returns the previous release's main-table default routes
// through the victim's link when no record lists the victim: the kernel
// deletes them with the link, and the successor rule must still run.
// Defaults in gre-hook's table just go with the link.
func (td *Teardown) lostDefaults(t state.Tunnel) ([]state.Route, error) {
	if _, ok := td.Links[t.Name]; !ok {
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
				out = append(out, state.FromPlan(PlanRoute(r), 0))
			}
		}
	}
	return out, nil
}

// ReleaseDefaults lets go of the main-table default routes tunnel t of the
// previous release installed, following the rule in legacy.go. gone names every tunnel this run
// removes: none of them may take the default over.
func (td *Teardown) ReleaseDefaults(t *state.Tunnel, defaults []state.Route, gone map[string]bool, lost bool) []error {
	if len(defaults) == 0 {
		return nil
	}
	routes, err := td.kernelRoutes()
	if err != nil {
		return []error{fmt.Errorf("tunnel %q: %w", t.Name, err)}
	}
	var errs []error
	for _, d := range defaults {
		cur := RouteAt(routes, d.Plan())
		dec := td.Ledger.decide(t, d, cur, td.Links, gone)
		if dec.note != "" {
			td.Log.Note("%s", dec.note)
		}
		if dec.warn != "" {
			td.Log.Warn("%s", dec.warn)
		}
		switch {
		case dec.put != nil:
			p := dec.put.Plan()
			cmd := plan.RestoreRouteCmd(p, dec.put.Protocol)
			td.Log.Change(cmd)
			if !td.Dry {
				if err := td.Sys.Net.ReplaceRoute(KernelRoute(p, dec.put.Protocol)); err != nil {
					errs = append(errs, fmt.Errorf("tunnel %q: %s: %w", t.Name, cmd, err))
					continue
				}
			}
			setRouteAt(routes, p, &rtnl.Route{Dst: p.Dst, Gw: p.Gw, Dev: p.Dev, Table: p.Table, Metric: p.Metric, Protocol: dec.put.Protocol})
		case dec.del:
			if lost {
				td.Log.Warn("tunnel %q: its %s goes with it, and no record says which route it replaced: "+
					"the router has no %s now; add one back with `ip route add default via GATEWAY`",
					t.Name, what(d), what(d))
			}
			if err := td.DelRoute(d); err != nil {
				errs = append(errs, fmt.Errorf("tunnel %q: %w", t.Name, err))
				continue
			}
			setRouteAt(routes, d.Plan(), nil)
		}
	}
	return errs
}

// Tunnels removes the victims' routes and links.
func (td *Teardown) Tunnels(victims []state.Tunnel) []error {
	var errs []error
	var dels []string
	n := td.Sys.Net
	gone := map[string]bool{}
	for _, t := range victims {
		gone[t.Name] = true
	}
	for i := range victims {
		t := &victims[i]
		// Hand the default route on before the link goes: a replace swaps
		// ours out without a moment of no default.
		defaults, lost := t.LegacyDefaults(), false
		if td.Unlisted[t.Name] {
			var err error
			if defaults, err = td.lostDefaults(*t); err != nil {
				errs = append(errs, fmt.Errorf("tunnel %q: %w", t.Name, err))
			}
			lost = len(defaults) > 0
		}
		errs = append(errs, td.ReleaseDefaults(t, defaults, gone, lost)...)
		if t.Pin != nil {
			if err := td.DelRoute(*t.Pin); err != nil {
				errs = append(errs, fmt.Errorf("tunnel %q: %w", t.Name, err))
			}
		}
		lk, ok := td.Links[t.Name]
		if !ok {
			continue
		}
		if lk.Alias != plan.Alias(td.Underlay) {
			td.Log.Warn("tunnel %q: link %s is not gre-hook's for %s (alias %q); leaving it alone", t.Name, lk.Name, td.Underlay, lk.Alias)
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
	td.Log.Change(cmds...)
	if td.Dry || len(dels) == 0 {
		return errs
	}
	for i, err := range n.DelLinks(dels) {
		if err != nil {
			errs = append(errs, fmt.Errorf("tunnel %q: %s: %w", dels[i], plan.DelLinkCmd(dels[i]), err))
		}
	}
	return errs
}

// DelRoute deletes one of gre-hook's routes. The kernel matches the
// protocol on delete, so a route someone else has put at the same
// destination is left alone.
func (td *Teardown) DelRoute(r state.Route) error {
	if td.Routes != nil && findRoute(td.Routes, r.Plan(), true) == nil {
		return nil
	}
	cmd := plan.DelRouteCmd(r.Plan())
	if td.Dry {
		td.Log.Change(cmd)
		return nil
	}
	p := r.Plan()
	if _, ok := td.Links[p.Dev]; !ok {
		// Its device is gone, and the route with it.
		return nil
	}
	td.Log.Change(cmd)
	if err := td.Sys.Net.DelRoute(KernelRoute(p, plan.RouteProtocol)); err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	return nil
}

// FindPins fills in the pin route of victims that the record does not
// list (it was lost): a route of gre-hook's to the tunnel's remote through
// another device is the pin its default_route added. A pin that another of
// gre-hook's tunnels may still need is left alone.
func FindPins(sys *System, rec *state.Record, victims []state.Tunnel, links map[string]rtnl.Link) error {
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
		f := FamilyOf(lk.Remote)
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
				p := state.FromPlan(PlanRoute(r), 0)
				t.Pin = &p
				break
			}
		}
	}
	return nil
}
