package engine

import (
	"fmt"
	"sort"
	"strings"

	"github.com/gre-hook/gre-hook/hook/config"
	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/rtnl"
	"github.com/gre-hook/gre-hook/hook/state"
)

// A change of the [policy] table while tunnels are up (POLICY-ROUTING.md,
// "Changing the values"). The policy is the router's: a tunnel whose link
// still carries the old mark while a rule names the new one has its outer
// packets routed into a tunnel. So the first up after the change moves
// every underlay at once: it re-marks every link of gre-hook's, moves
// every default route of gre-hook's to the new table, replaces the rules,
// and rewrites every record. Its order keeps, at every moment, a default
// route in force for the traffic and the main table for every outer
// packet:
//
//  1. bridge rules `fwmark M lookup main`, for the old marks and the new,
//     at the priority just below the lowest of gre-hook's rules old and
//     new (after the rules already there at it): while the marks change,
//     every tunnel's outer packets are routed by main whichever mark they
//     carry, before any rule could send them to a table;
//  2. the default routes, copied into the new table;
//  3. the new rules;
//  4. the links re-marked;
//  5. the old rules deleted, the one to the old table first;
//  6. the old table's default routes deleted;
//  7. the bridge rules deleted.
//
// Without a change of mark there is no bridge: the marked packets skip the
// rules to both tables. Each step has its undo, so a failure rolls the
// whole move back, in reverse, with the same guarantees.

// PolicyChoice is the policy a run applies and whether it moves the
// router to it.
type PolicyChoice struct {
	Use plan.Policy
	// from are the policies the records say are in force other than use;
	// moving is set when they, or the kernel, hold another.
	from   []plan.Policy
	Moving bool
	// Why says why the config's policy is not applied ("" if it is).
	Why string
	// Refuse, when set, is why no policy can be applied: the run must
	// change nothing.
	Refuse string
	// Mend are the other underlays whose records say another policy
	// than use while the kernel is in use: the run rewrites them.
	Mend []string
}

// ChoosePolicy decides the policy of a run whose config asks for want,
// with rec the record of its own underlay (nil if none) and others every
// other record that could be read (unreadable names those that could
// not). A move must reach every record, so with one unreadable no move
// is made: the run applies the policy the kernel is in, whatever the
// records say (a move left half done makes them disagree), preferring
// its own record's, then the others', then the config's. Another one's
// rules would route the outer packets of links marked for the kernel's
// into a tunnel. When the kernel is in none of them, the run is refused.
func ChoosePolicy(want plan.Policy, rec *state.Record, others map[string]*state.Record, unreadable string, s *Snapshot) PolicyChoice {
	all := map[string]*state.Record{}
	for u, r := range others {
		all[u] = r
	}
	if rec != nil {
		all[rec.Underlay] = rec
	}
	var from []plan.Policy
	for _, p := range InForce(all) {
		if p != want {
			from = append(from, p)
		}
	}
	if len(from) == 0 && !staleInKernel(want, s) {
		return PolicyChoice{Use: want}
	}
	if unreadable == "" {
		return PolicyChoice{Use: want, from: from, Moving: true}
	}
	var cands []plan.Policy
	if rec != nil {
		cands = append(cands, rec.Applied())
	}
	cands = append(append(cands, InForce(others)...), want)
	for _, p := range cands {
		if staleInKernel(p, s) {
			continue
		}
		c := PolicyChoice{Use: p}
		for _, u := range SortedKeys(others) {
			if others[u].Applied() != p {
				c.Mend = append(c.Mend, u)
			}
		}
		if p != want {
			c.Why = fmt.Sprintf("the config's [policy] (%s) is not applied: the record of %s cannot be read, and a change of policy must reach every underlay at once; "+
				"gre-hook keeps %s until that record is mended or moved aside (then run up again)", want, unreadable, p)
		}
		return c
	}
	named := ", and no record that can be read names one"
	if in := InForce(all); len(in) > 0 {
		named = ", nor under one that a record that can be read names (" + DescribePolicies(in) + ")"
	}
	return PolicyChoice{Use: want, Refuse: fmt.Sprintf("gre-hook's links and default routes (%s) are not under the config's policy routing (%s)%s: "+
		"they are under that of a record that cannot be read, or under two at once (a change of policy left half done); "+
		"the record of %s cannot be read, and no change of policy can be made without it, so nothing was changed: mend that record or move it aside, then run up again",
		strings.Join(staleItems(want, s), ", "), want, named, unreadable)}
}

// InForce is the policies recs were written under, each once, in the
// order of their underlays.
func InForce(recs map[string]*state.Record) []plan.Policy {
	var out []plan.Policy
	seen := map[plan.Policy]bool{}
	for _, u := range SortedKeys(recs) {
		if p := recs[u].Applied(); !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// staleInKernel reports whether the kernel holds something of gre-hook's
// made under another policy than pol: a link with another mark (but none:
// the previous release marked nothing, and its own up marks it), or a
// default route in a table of gre-hook's other than pol's.
func staleInKernel(pol plan.Policy, s *Snapshot) bool {
	for _, l := range s.Links {
		if markedOtherwise(l, pol) {
			return true
		}
	}
	for _, f := range []int{4, 6} {
		for _, r := range s.Routes[f] {
			if movable(r, pol, s) {
				return true
			}
		}
	}
	return false
}

// staleItems names what staleInKernel finds, for messages.
func staleItems(pol plan.Policy, s *Snapshot) []string {
	var out []string
	for _, n := range SortedKeys(s.Links) {
		if l := s.Links[n]; markedOtherwise(l, pol) {
			out = append(out, fmt.Sprintf("%s marked %#x", n, l.FwMark))
		}
	}
	for _, f := range []int{4, 6} {
		for _, r := range s.Routes[f] {
			if movable(r, pol, s) {
				out = append(out, fmt.Sprintf("%s's default in table %d", r.Dev, r.Table))
			}
		}
	}
	return out
}

// DescribeFrom names what a move starts from: the records' policies, or
// when they all say pol already, what the kernel holds under another.
func DescribeFrom(c PolicyChoice, s *Snapshot) string {
	if len(c.from) > 0 {
		return DescribePolicies(c.from)
	}
	return "what the kernel holds under another (" + strings.Join(staleItems(c.Use, s), ", ") + ")"
}

// markedOtherwise reports whether l is a link of gre-hook's marked for
// another policy than pol (a mark of 0 is the previous release's, which
// its own up marks).
func markedOtherwise(l rtnl.Link, pol plan.Policy) bool {
	return ownedLink(l) && l.FwMark != 0 && l.FwMark != pol.Mark
}

func ownedLink(l rtnl.Link) bool { return l.GRE && strings.HasPrefix(l.Alias, plan.AliasPrefix) }

// movable reports whether r is a default route of gre-hook's in the table
// of another policy than pol, through one of its links.
func movable(r rtnl.Route, pol plan.Policy, s *Snapshot) bool {
	l, ok := s.Links[r.Dev]
	return r.Protocol == plan.RouteProtocol && r.IsDefault() && r.Table != 0 && r.Table != pol.Table && ok && ownedLink(l)
}

// Move is a change of policy: the steps, and the kernel as they leave it.
type Move struct {
	steps []Step
	Links map[string]rtnl.Link
	// Routes and rules are the kernel's after the steps.
	Routes map[int][]rtnl.Route
	Rules  map[int][]rtnl.Rule
}

// PlanMove is the steps that move every underlay to pol, from the kernel
// as s and rules have it. need is the families whose rules must exist
// afterwards (the records' default routes). It refuses a move that would
// replace a route gre-hook did not make in pol's table.
func PlanMove(pol plan.Policy, s *Snapshot, rules map[int][]rtnl.Rule, need map[int]bool) (*Move, error) {
	mv := &Move{Links: map[string]rtnl.Link{}, Routes: map[int][]rtnl.Route{}, Rules: map[int][]rtnl.Rule{}}
	for n, l := range s.Links {
		mv.Links[n] = l
	}
	for _, f := range []int{4, 6} {
		mv.Routes[f] = append([]rtnl.Route(nil), s.Routes[f]...)
		mv.Rules[f] = append([]rtnl.Rule(nil), rules[f]...)
	}
	relink, marks := remarked(pol, s)
	old, moved, err := movedDefaults(pol, s)
	if err != nil {
		return nil, err
	}
	bridges := bridgeRules(pol, marks, rules, need)
	isBridge := func(r rtnl.Rule) bool {
		for _, b := range bridges {
			if sameRule(r, b) {
				return true
			}
		}
		return false
	}

	// 1. Bridges, 2. routes into the new table, 3. the new rules.
	for _, b := range bridges {
		mv.addRule(b)
	}
	for _, n := range moved {
		mv.copyRoute(n)
	}
	for _, f := range []int{4, 6} {
		if need[f] {
			for _, r := range pol.Rules(f) {
				mv.addRule(r)
			}
		}
	}
	// 4. The links.
	for _, l := range relink {
		mv.remark(l, pol.Mark)
	}
	// 5. The old rules, the one to a table first.
	for _, f := range []int{4, 6} {
		var stale []rtnl.Rule
		for _, r := range mv.Rules[f] {
			wanted := isBridge(r)
			for _, w := range pol.Rules(f) {
				wanted = wanted || sameRule(r, w)
			}
			if r.Protocol == plan.RouteProtocol && !wanted {
				stale = append(stale, r)
			}
		}
		sort.SliceStable(stale, func(i, j int) bool {
			if (stale[i].Table != 0) != (stale[j].Table != 0) {
				return stale[i].Table != 0
			}
			return stale[i].Priority > stale[j].Priority
		})
		for _, r := range stale {
			mv.delRule(r)
		}
	}
	// 6. The old routes, 7. the bridges.
	for _, p := range old {
		mv.delRoute(p)
	}
	for _, f := range []int{4, 6} {
		for _, r := range append([]rtnl.Rule(nil), mv.Rules[f]...) {
			if isBridge(r) && r.Protocol == plan.RouteProtocol {
				mv.delRule(r)
			}
		}
	}
	return mv, nil
}

// remarked is gre-hook's links marked otherwise than pol, in name order,
// and their marks.
func remarked(pol plan.Policy, s *Snapshot) ([]rtnl.Link, map[uint32]bool) {
	marks := map[uint32]bool{}
	var relink []rtnl.Link
	for _, n := range SortedKeys(s.Links) {
		if l := s.Links[n]; markedOtherwise(l, pol) {
			marks[l.FwMark] = true
			relink = append(relink, l)
		}
	}
	return relink, marks
}

// movedDefaults is gre-hook's default routes in other tables than pol's,
// as they are (old) and as they will be in pol's table (moved). A route
// gre-hook did not make at the place one would take is an error.
func movedDefaults(pol plan.Policy, s *Snapshot) (old, moved []plan.Route, err error) {
	for _, f := range []int{4, 6} {
		for _, r := range s.Routes[f] {
			if !movable(r, pol, s) {
				continue
			}
			p := PlanRoute(r)
			n := p
			n.Table = pol.Table
			if f := findRoute(s.Routes, n, false); f != nil {
				return nil, nil, fmt.Errorf("moving the default route of %s to table %d ([policy] table): "+
					"the table has a route at metric %d that gre-hook did not make (via %s dev %s, proto %d); "+
					"the table must be gre-hook's own", r.Dev, pol.Table, n.Metric, f.Gw, f.Dev, f.Protocol)
			}
			old, moved = append(old, p), append(moved, n)
		}
	}
	return old, moved, nil
}

// bridgeRules is the rules `fwmark M lookup main` for the old marks and
// pol's, in each family that has rules of gre-hook's or needs them, just
// before the lowest of them; none without a change of mark.
func bridgeRules(pol plan.Policy, marks map[uint32]bool, rules map[int][]rtnl.Rule, need map[int]bool) []plan.Rule {
	if len(marks) == 0 {
		return nil
	}
	ms := []uint32{pol.Mark}
	for m := range marks {
		if m != pol.Mark {
			ms = append(ms, m)
		}
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i] < ms[j] })
	var bridges []plan.Rule
	for _, f := range []int{4, 6} {
		low, have := pol.Priority, false
		for _, r := range rules[f] {
			if r.Protocol == plan.RouteProtocol {
				have = true
				if r.Priority < low {
					low = r.Priority
				}
			}
		}
		if !have && !need[f] {
			continue // no rule looks at the marks in this family
		}
		// Before every rule of gre-hook's, old or new.
		if low > 1 {
			low--
		}
		for _, m := range ms {
			bridges = append(bridges, plan.Rule{Family: f, Priority: low, Table: 0, Mark: m, SuppressPrefixLen: -1})
		}
	}
	return bridges
}

// copyRoute adds the step that puts n, a default route of gre-hook's, in
// its new table, unless it is there.
func (mv *Move) copyRoute(n plan.Route) {
	if have := findRoute(mv.Routes, n, true); have != nil && have.Dev == n.Dev && have.Gw == n.Gw {
		return
	}
	mv.steps = append(mv.steps, Step{Tunnel: n.Dev, Cmds: []string{plan.ReplaceRouteCmd(n)},
		change:  func(x *Executor) error { return x.Sys.Net.ReplaceRoute(KernelRoute(n, plan.RouteProtocol)) },
		undoCmd: plan.DelRouteCmd(n), undo: func(x *Executor) error { return x.Sys.Net.DelRoute(KernelRoute(n, plan.RouteProtocol)) }})
	setRouteAt(mv.Routes, n, &rtnl.Route{Dst: n.Dst, Gw: n.Gw, Dev: n.Dev, Table: n.Table, Metric: n.Metric, Protocol: plan.RouteProtocol})
}

// delRoute adds the step that deletes p, a default route of gre-hook's in
// its old table.
func (mv *Move) delRoute(p plan.Route) {
	mv.steps = append(mv.steps, Step{Tunnel: p.Dev, Cmds: []string{plan.DelRouteCmd(p)},
		change:  func(x *Executor) error { return x.Sys.Net.DelRoute(KernelRoute(p, plan.RouteProtocol)) },
		undoCmd: plan.ReplaceRouteCmd(p), undo: func(x *Executor) error { return x.Sys.Net.ReplaceRoute(KernelRoute(p, plan.RouteProtocol)) }})
	setRouteAt(mv.Routes, p, nil)
}

// remark adds the step that marks l, a link of gre-hook's, with mark.
func (mv *Move) remark(l rtnl.Link, mark uint32) {
	name, prev := l.Name, l.FwMark
	want := plan.Link{Name: name, Mode: config.Mode(l.Kind), FwMark: mark}
	mv.steps = append(mv.steps, Step{Tunnel: name, Cmds: []string{plan.FwMarkCmd(want)},
		change:  func(x *Executor) error { return x.Sys.Net.SetFwMark(name, mark) },
		undoCmd: plan.FwMarkCmd(plan.Link{Name: name, Mode: want.Mode, FwMark: prev}),
		undo:    func(x *Executor) error { return x.Sys.Net.SetFwMark(name, prev) }})
	l.FwMark = mark
	mv.Links[name] = l
}

// addRule adds the step that adds r, unless the kernel has it.
func (mv *Move) addRule(r plan.Rule) {
	for _, have := range mv.Rules[r.Family] {
		if sameRule(have, r) {
			return
		}
	}
	k := KernelRule(r)
	mv.steps = append(mv.steps, Step{Cmds: []string{plan.AddRuleCmd(r)},
		change:  func(x *Executor) error { return x.Sys.Net.AddRule(k) },
		undoCmd: plan.DelRuleCmd(r), undo: func(x *Executor) error { return x.Sys.Net.DelRule(k) }})
	mv.Rules[r.Family] = append(mv.Rules[r.Family], k)
}

// delRule adds the step that deletes the kernel's rule r.
func (mv *Move) delRule(r rtnl.Rule) {
	p := planRule(r)
	mv.steps = append(mv.steps, Step{Cmds: []string{plan.DelRuleCmd(p)},
		change:  func(x *Executor) error { return x.Sys.Net.DelRule(r) },
		undoCmd: plan.AddRuleCmd(p), undo: func(x *Executor) error { return x.Sys.Net.AddRule(r) }})
	var keep []rtnl.Rule
	for _, have := range mv.Rules[r.Family] {
		if have != r {
			keep = append(keep, have)
		}
	}
	mv.Rules[r.Family] = keep
}

// Cmds is the move's commands, in order.
func (mv *Move) Cmds() []string {
	var out []string
	for _, st := range mv.steps {
		out = append(out, st.Cmds...)
	}
	return out
}

// MovedRecord is rec under pol: the policy, and its tunnels' default
// routes, listed and withdrawn, in pol's table. With keep, the old entries
// stay as well and so does the policy: the intent a run saves before the
// move, so that whatever a crash leaves, a down takes it all and a
// failover withdraws it all, and the next up moves again. rec is not
// changed.
func MovedRecord(rec *state.Record, pol plan.Policy, keep bool) *state.Record {
	out := *rec
	if !keep {
		p := pol
		out.Policy = &p
	}
	out.Tunnels = make([]state.Tunnel, len(rec.Tunnels))
	for i, t := range rec.Tunnels {
		t.Defaults = movedRoutes(t.Defaults, pol, keep)
		t.Withdrawn = movedRoutes(t.Withdrawn, pol, keep)
		out.Tunnels[i] = t
	}
	return &out
}

// movedRoutes is rs with its default routes in gre-hook's tables moved to
// pol's (kept where they are too, with keep), each once.
func movedRoutes(rs []state.Route, pol plan.Policy, keep bool) []state.Route {
	var out []state.Route
	add := func(r state.Route) {
		for _, have := range out {
			if have == r {
				return
			}
		}
		out = append(out, r)
	}
	for _, r := range rs {
		if r.Dst.Bits() != 0 || r.Table == 0 || r.Table == pol.Table {
			add(r)
			continue
		}
		if keep {
			add(r)
		}
		r.Table = pol.Table
		add(r)
	}
	return out
}

// SaveMoved rewrites the records of underlays under pol, each read again
// from the store.
func SaveMoved(store state.Store, underlays []string, pol plan.Policy) []error {
	var errs []error
	for _, u := range underlays {
		rec, err := store.Load(u)
		if err == nil && rec != nil {
			err = store.Save(MovedRecord(rec, pol, false))
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// WithOwnedDefaults is cp with the default routes rec lists in gre-hook's
// tables added to its tunnels of the same name: the intent of a run that
// moves them.
func WithOwnedDefaults(cp, rec *state.Record) *state.Record {
	if rec == nil {
		return cp
	}
	for i := range cp.Tunnels {
		t := &cp.Tunnels[i]
		prev := rec.Find(t.Name)
		if prev == nil {
			continue
		}
		defaults := append([]state.Route(nil), t.Defaults...)
	next:
		for _, d := range prev.OwnedDefaults() {
			for _, have := range defaults {
				if have == d {
					continue next
				}
			}
			defaults = append(defaults, d)
		}
		t.Defaults = defaults
	}
	return cp
}

// DescribePolicies names policies, for messages.
func DescribePolicies(ps []plan.Policy) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, " and ")
}
