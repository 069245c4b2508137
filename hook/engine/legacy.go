package engine

import (
	"fmt"
	"strings"

	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/rtnl"
	"github.com/gre-hook/gre-hook/hook/state"
)

// Records of the release before policy routing (POLICY-ROUTING.md): its
// tunnels replaced the main table's default route, pinned a host route to
// the remote, and handed the main default on between them by a sequence
// number. This release never does that, but it must take such a record
// down, and move it to the new form at an up, exactly as that release
// would have let go of the main default: after any down, gc or migration
// the router has a main default whenever it had one before, and it is
//   - the main default of the legacy tunnel still up that took it over
//     most recently (the highest Seq in any record), else
//   - the route the previous release replaced when it first took it over,
// and never one that overrides a default route the admin set by hand
// after gre-hook's (gre-hook then leaves the admin's route alone).
//
// The route replaced is remembered by the tunnel that replaced it. When
// that tunnel lets go while another tunnel's default is in force, the
// memory passes to a tunnel that still holds a default, so the last one to
// go can put it back.

// Ledger is every record's view of the default routes, read once under
// the run lock.
type Ledger struct {
	store state.Store
	// own is the underlay this run works on and the record it is building
	// for it; it stands in for the record on disk.
	own    string
	ownRec *state.Record
	recs   map[string]*state.Record
	Dirty  map[string]bool
}

// NewLedger is a ledger that reads the records when first asked, with
// ownRec standing in for underlay own's.
func NewLedger(store state.Store, own string, ownRec *state.Record) *Ledger {
	return &Ledger{store: store, own: own, ownRec: ownRec}
}

// LedgerOf is a ledger over records already read, which the caller saves
// itself; Dirty then says which of them a hand-over changed.
func LedgerOf(store state.Store, recs map[string]*state.Record) *Ledger {
	return &Ledger{store: store, recs: recs, Dirty: map[string]bool{}}
}

// SetOwn makes rec the record of the run's own underlay.
func (lg *Ledger) SetOwn(rec *state.Record) {
	lg.ownRec = rec
	if lg.recs != nil {
		delete(lg.recs, lg.own)
		if rec != nil {
			lg.recs[lg.own] = rec
		}
	}
}

// load reads the other underlays' records on first use: most runs touch
// no default route and need none of them. Unreadable records are left
// out; their tunnels can neither succeed nor inherit.
func (lg *Ledger) load() map[string]*state.Record {
	if lg.recs != nil {
		return lg.recs
	}
	recs, _, _ := lg.store.All()
	if lg.own != "" {
		delete(recs, lg.own)
		if lg.ownRec != nil {
			recs[lg.own] = lg.ownRec
		}
	}
	lg.recs = recs
	lg.Dirty = map[string]bool{}
	return recs
}

// holder is a tunnel that holds a default route at some key.
type holder struct {
	underlay string
	t        *state.Tunnel
	route    state.Route
}

func sameKey(a, b state.Route) bool {
	return a.Dst == b.Dst && a.Table == b.Table && a.Metric == b.Metric
}

func routeAtKey(rs []state.Route, key state.Route) *state.Route {
	for i := range rs {
		if sameKey(rs[i], key) {
			return &rs[i]
		}
	}
	return nil
}

// successor returns the tunnel, other than t and those in gone, whose
// default at d's key was installed last and whose link is still up.
func (lg *Ledger) successor(d state.Route, t *state.Tunnel, links map[string]rtnl.Link, gone map[string]bool) *holder {
	var best *holder
	for u, rec := range lg.load() {
		for i := range rec.Tunnels {
			o := &rec.Tunnels[i]
			if o.Name == t.Name || gone[o.Name] || o.Displaced || o.Dead {
				continue
			}
			r := routeAtKey(o.Defaults, d)
			if r == nil {
				continue
			}
			if lk, ok := links[o.Name]; !ok || !lk.Up || lk.Alias != plan.Alias(u) {
				continue
			}
			if best == nil || o.Seq > best.t.Seq {
				best = &holder{underlay: u, t: o, route: *r}
			}
		}
	}
	return best
}

// holderOf returns the tunnel whose default route cur is, unless it is
// one of those the run removes (it then decides for itself in turn, and
// finds the replaced route where the leaving tunnel left it).
func (lg *Ledger) holderOf(cur *rtnl.Route, gone map[string]bool) *holder {
	for u, rec := range lg.load() {
		for i := range rec.Tunnels {
			o := &rec.Tunnels[i]
			if gone[o.Name] {
				continue
			}
			for _, r := range o.Defaults {
				if r.Dst == cur.Dst && r.Table == cur.Table && r.Metric == cur.Metric && r.Gw == cur.Gw && r.Dev == cur.Dev {
					return &holder{underlay: u, t: o, route: r}
				}
			}
		}
	}
	return nil
}

// replacedElsewhere returns a replaced route at d's key that another
// tunnel remembers: a tunnel whose own default was displaced may hold it.
func (lg *Ledger) replacedElsewhere(d state.Route, t *state.Tunnel) *state.Route {
	for _, rec := range lg.load() {
		for i := range rec.Tunnels {
			o := &rec.Tunnels[i]
			if o.Name == t.Name || o.Displaced {
				continue
			}
			if r := routeAtKey(o.Replaced, d); r != nil {
				return r
			}
		}
	}
	return nil
}

// give passes the memory of a replaced route to h, unless it has one.
func (lg *Ledger) give(h *holder, rep *state.Route) {
	if rep == nil || routeAtKey(h.t.Replaced, *rep) != nil {
		return
	}
	h.t.Replaced = append(h.t.Replaced, *rep)
	lg.Dirty[h.underlay] = true
}

// Save writes the other underlays' records that a hand-over changed.
func (lg *Ledger) Save() []error {
	var errs []error
	for u := range lg.Dirty {
		if u == lg.own {
			continue
		}
		if err := lg.store.Save(lg.recs[u]); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// letGo is what becomes of the default route at d's key when tunnel t,
// which installed d, stops holding it.
type letGo struct {
	// put is the route to install in its place, if any.
	put *state.Route
	// del: t's route is in force and nothing takes its place.
	del bool
	// note is said with -v; warn always.
	note, warn string
}

// decide applies the rule at the top of this file. cur is the kernel's
// route at d's key now, of any owner, or nil.
func (lg *Ledger) decide(t *state.Tunnel, d state.Route, cur *rtnl.Route, links map[string]rtnl.Link, gone map[string]bool) letGo {
	rep := routeAtKey(t.Replaced, d)
	if t.Displaced {
		rep = nil
	}
	mine := cur != nil && cur.Protocol == plan.RouteProtocol && cur.Gw == d.Gw && cur.Dev == d.Dev
	if cur != nil && !mine {
		if cur.Protocol == plan.RouteProtocol {
			if h := lg.holderOf(cur, gone); h != nil {
				lg.give(h, rep)
			}
			return letGo{note: fmt.Sprintf("tunnel %q: the default route is another gre-hook tunnel's now (dev %s); leaving it", t.Name, cur.Dev)}
		}
		return letGo{note: fmt.Sprintf("tunnel %q: the default route was changed since up (now %s); leaving it",
			t.Name, DescribeRoute(PlanRoute(*cur), cur.Protocol))}
	}
	if h := lg.successor(d, t, links, gone); h != nil {
		lg.give(h, rep)
		r := h.route
		r.Protocol = plan.RouteProtocol
		return letGo{put: &r}
	}
	if rep == nil {
		rep = lg.replacedElsewhere(d, t)
	}
	if rep != nil {
		if _, ok := links[rep.Dev]; rep.Dev == "" || ok {
			return letGo{put: rep}
		}
		return letGo{del: mine, warn: fmt.Sprintf("tunnel %q: cannot put back %s: device %s is gone; the router has no %s now",
			t.Name, DescribeRoute(rep.Plan(), rep.Protocol), rep.Dev, what(d))}
	}
	return letGo{del: mine}
}

func what(d state.Route) string {
	if d.Table != 0 {
		return fmt.Sprintf("default route in table %d", d.Table)
	}
	return "default route"
}

// DescribeRoute is a route as `ip route` would show it.
func DescribeRoute(r plan.Route, proto int) string {
	s := plan.RestoreRouteCmd(r, proto)
	const verb = "route replace "
	return s[strings.Index(s, verb)+len(verb):]
}

// RouteAt returns the kernel's route at r's key, whoever owns it.
func RouteAt(routes map[int][]rtnl.Route, r plan.Route) *rtnl.Route {
	for _, have := range routes[FamilyOf(r.Dst.Addr())] {
		if have.Dst == r.Dst && have.Table == r.Table && have.Metric == r.Metric {
			h := have
			return &h
		}
	}
	return nil
}

// setRouteAt records in a route snapshot that the route at r's key is now
// r (or, with r nil, that there is none), so later decisions in the same
// run see the change.
func setRouteAt(routes map[int][]rtnl.Route, key plan.Route, r *rtnl.Route) {
	f := FamilyOf(key.Dst.Addr())
	var out []rtnl.Route
	for _, have := range routes[f] {
		if have.Dst == key.Dst && have.Table == key.Table && have.Metric == key.Metric {
			continue
		}
		out = append(out, have)
	}
	if r != nil {
		out = append(out, *r)
	}
	routes[f] = out
}

// DiffLegacy is the steps that move the tunnels of want whose record is
// still in the previous release's form to the new one. They run after the
// tunnels' routes in gre-hook's table and the rules are in (apply), so
// the main default goes back to what the record says it replaced with a
// default route in force at every moment; then the pin goes. The new
// record keeps the old fields until then (merged), so a run killed midway
// is still taken down correctly.
func DiffLegacy(want []plan.Tunnel, rec *state.Record) []Step {
	var out []Step
	for _, t := range want {
		name := t.Link.Name
		old := rec.Find(name)
		if old == nil || !old.Legacy() {
			continue
		}
		o := *old
		out = append(out, Step{Tunnel: name, self: true, bare: true,
			Why: because(name, "the record has the previous release's main-table default route or pin"),
			change: func(x *Executor) error {
				td := x.teardown()
				routes, err := td.kernelRoutes()
				if err != nil {
					return err
				}
				// What the release step changes, to put back on a rollback.
				var before []rtnl.Route
				for _, d := range o.LegacyDefaults() {
					if cur := RouteAt(routes, d.Plan()); cur != nil {
						before = append(before, *cur)
					}
				}
				errs := td.ReleaseDefaults(&o, o.LegacyDefaults(), map[string]bool{name: true}, false)
				// While the main default is still another previous-release
				// tunnel's, the marked outer packets follow it into that
				// tunnel without the pin: it stays, in the record too, until
				// that tunnel's underlay moves (its up, down or gc).
				keepPin := o.Pin != nil && !x.Dry && mainDefaultIsOurs(x.Sys.Net, o.Pin.Dst.Addr().Is6())
				if o.Pin != nil && !keepPin {
					if err := td.DelRoute(*o.Pin); err != nil {
						errs = append(errs, err)
					}
				}
				if !x.Dry {
					pin := o.Pin
					x.undos = append(x.undos, undo{cmd: "put back " + name + "'s main default route and pin of the previous release", fn: func(x *Executor) error {
						var errs []error
						for _, r := range before {
							if err := x.Sys.Net.ReplaceRoute(r); err != nil {
								errs = append(errs, err)
							}
						}
						if pin != nil && !keepPin {
							if err := x.Sys.Net.ReplaceRoute(KernelRoute(pin.Plan(), plan.RouteProtocol)); err != nil {
								errs = append(errs, err)
							}
						}
						return Join(errs)
					}})
				}
				if len(errs) > 0 {
					return fmt.Errorf("tunnel %q: moving it from the previous release's main-table default route: %w", name, Join(errs))
				}
				if e := x.NewRec.Find(name); e != nil {
					pin := e.Pin
					dropLegacy(e)
					if keepPin {
						e.Pin = pin
					}
				}
				return nil
			}})
	}
	return out
}

// mainDefaultIsOurs reports whether the main table's default route of the
// family is one of gre-hook's (protocol 176): a previous-release tunnel's.
func mainDefaultIsOurs(n Net, v6 bool) bool {
	fam := 4
	if v6 {
		fam = 6
	}
	routes, err := n.Routes(fam)
	if err != nil {
		return true // in doubt, keep the pin
	}
	for _, r := range routes {
		if r.Dst.Bits() == 0 && r.Table == 0 && r.Protocol == plan.RouteProtocol {
			return true
		}
	}
	return false
}

// dropLegacy forgets what t kept in the previous release's form.
func dropLegacy(t *state.Tunnel) {
	t.Defaults = t.OwnedDefaults()
	t.Pin, t.Replaced, t.Seq, t.Displaced, t.Fallbacks, t.LegacyWithdrawn = nil, nil, 0, false, nil, nil
}
