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

// The default route by policy routing (POLICY-ROUTING.md): the tunnels'
// default routes live in gre-hook's table, and two rules of gre-hook's
// (protocol 176) select it for everything but the tunnels' own packets.
// The rules of a family exist while some record lists a default route of
// that family in gre-hook's table, and go with the last.

// PolicyOf is the policy cfg asks for: its [policy] table, over the
// defaults (a Config not read from files has none).
func PolicyOf(cfg *config.Config) plan.Policy {
	if cfg == nil || cfg.Policy == (config.Policy{}) {
		return plan.DefaultPolicy
	}
	return plan.PolicyOf(cfg.Policy)
}

// DefaultMetrics picks the metric of each default_route tunnel of
// tunnels (the run's, of underlay own) in pol.Table: the one its record
// has (in whichever table of gre-hook's: a change of policy keeps it),
// else its place among the config's default_route tunnels (1, 2, ...),
// moved on past a metric that another tunnel holds in gre-hook's tables
// or in a record.
func DefaultMetrics(cfg *config.Config, tunnels []config.Tunnel, rec *state.Record, others map[string]*state.Record, s *Snapshot, pol plan.Policy) map[string]uint32 {
	out := map[string]uint32{}
	place := map[string]uint32{}
	n := uint32(0)
	if cfg != nil {
		for _, t := range cfg.Tunnels {
			if t.DefaultRoute {
				n++
				place[t.Name] = n
			}
		}
	}
	mine := map[string]bool{}
	for _, t := range tunnels {
		mine[t.Name] = true
	}
	taken := map[uint32]string{}
	for _, f := range []int{4, 6} {
		for _, r := range s.Routes[f] {
			// A default of gre-hook's in another table than main is in the
			// table of a policy being moved from, and moves with its metric.
			if r.IsDefault() && (r.Table == pol.Table || r.Table != 0 && r.Protocol == plan.RouteProtocol) && !mine[r.Dev] {
				taken[r.Metric] = r.Dev
			}
		}
	}
	for _, o := range others {
		for _, t := range o.Tunnels {
			for _, d := range append(t.OwnedDefaults(), t.Withdrawn...) {
				if d.Dst.Bits() == 0 && d.Table != 0 && !mine[t.Name] {
					taken[d.Metric] = t.Name
				}
			}
		}
	}
	for _, t := range tunnels {
		if !t.DefaultRoute {
			continue
		}
		if prev := rec.Find(t.Name); prev != nil {
			for _, d := range prev.OwnedDefaults() {
				if taken[d.Metric] == "" {
					out[t.Name] = d.Metric
				}
			}
		}
		if out[t.Name] != 0 {
			taken[out[t.Name]] = t.Name
			continue
		}
		m := place[t.Name]
		if m == 0 {
			m = 1
		}
		for taken[m] != "" {
			m++
		}
		out[t.Name] = m
		taken[m] = t.Name
	}
	return out
}

// NeedsRules is the families in which recs list a default route in a
// table of gre-hook's (any but main: the table of the policy a record was
// written under): those whose rules must exist.
func NeedsRules(recs ...map[string]*state.Record) map[int]bool {
	out := map[int]bool{}
	for _, m := range recs {
		for _, rec := range m {
			for _, t := range rec.Tunnels {
				for _, d := range t.Defaults {
					if d.Table != 0 {
						out[FamilyOf(d.Dst.Addr())] = true
					}
				}
			}
		}
	}
	return out
}

// OthersOf is every record but underlay own's, read under the run lock.
// unreadable names those that cannot be read ("" if none): one of them
// may list a default_route tunnel that still needs the rules, so a run
// that sees any deletes no rule.
func OthersOf(store state.Store, own string) (recs map[string]*state.Record, unreadable string) {
	recs, broken, err := store.All()
	delete(recs, own)
	delete(broken, own)
	var names []string
	for n := range broken {
		names = append(names, n)
	}
	sort.Strings(names)
	if err != nil {
		names = append(names, err.Error())
	}
	return recs, strings.Join(names, ", ")
}

// KeepRulesNote is the warning of a run that leaves gre-hook's rules alone
// because other records cannot be read.
func KeepRulesNote(unreadable string) string {
	return "the record of " + unreadable + " cannot be read and may list a default_route tunnel, so gre-hook's ip rules stay; " +
		"mend or remove that record, then run gre-hook gc"
}

// KernelRule is r as gre-hook installs it, with its protocol.
func KernelRule(r plan.Rule) rtnl.Rule {
	return rtnl.Rule{Family: r.Family, Priority: r.Priority, Table: r.Table, Mark: r.Mark, Invert: r.Invert,
		SuppressPrefixLen: r.SuppressPrefixLen, Protocol: plan.RouteProtocol}
}

func planRule(r rtnl.Rule) plan.Rule {
	return plan.Rule{Family: r.Family, Priority: r.Priority, Table: r.Table, Mark: r.Mark, Invert: r.Invert, SuppressPrefixLen: r.SuppressPrefixLen}
}

func sameRule(a rtnl.Rule, b plan.Rule) bool {
	return !a.Other && a.Family == b.Family && a.Priority == b.Priority && a.Table == b.Table && a.Mark == b.Mark &&
		a.Invert == b.Invert && a.SuppressPrefixLen == b.SuppressPrefixLen
}

// ReadRules reads the rules of both families.
func ReadRules(n Net) (map[int][]rtnl.Rule, error) {
	out := map[int][]rtnl.Rule{}
	for _, f := range []int{4, 6} {
		rs, err := n.Rules(f)
		if err != nil {
			return nil, fmt.Errorf("listing the IPv%d rules: %w", f, err)
		}
		out[f] = rs
	}
	return out, nil
}

// DiffPolicy is the steps that make gre-hook's rules (protocol 176) those
// of pol in the families of need, and none elsewhere. New rules go in
// before old ones go, and the rule to the main table before the rule to
// gre-hook's table, so specific routes of main never lose to it. who
// names a tunnel that needs the rules of a family, for status.
// With keep, it only adds: rules that no record it could read needs stay.
func DiffPolicy(pol plan.Policy, need map[int]bool, who map[int]string, rules map[int][]rtnl.Rule, keep bool) []Step {
	var out []Step
	for _, f := range []int{4, 6} {
		var want []plan.Rule
		if need[f] {
			want = pol.Rules(f)
		}
		var ours []rtnl.Rule
		for _, r := range rules[f] {
			if r.Protocol == plan.RouteProtocol {
				ours = append(ours, r)
			}
		}
		for _, w := range want {
			w := w
			found := false
			for _, o := range ours {
				found = found || sameRule(o, w)
			}
			if found {
				continue
			}
			out = append(out, Step{Tunnel: "", Cmds: []string{plan.AddRuleCmd(w)},
				Why:     []reason{{Tunnel: who[f], Text: fmt.Sprintf("rule %s is missing", plan.AddRuleCmd(w)[len("ip "):])}},
				change:  func(x *Executor) error { return x.Sys.Net.AddRule(KernelRule(w)) },
				undoCmd: plan.DelRuleCmd(w), undo: func(x *Executor) error { return x.Sys.Net.DelRule(KernelRule(w)) }})
		}
		var stale []rtnl.Rule
		for _, o := range ours {
			wanted := keep
			for _, w := range want {
				wanted = wanted || sameRule(o, w)
			}
			if !wanted {
				stale = append(stale, o)
			}
		}
		// The rule to gre-hook's table (the higher number) goes first.
		sort.SliceStable(stale, func(i, j int) bool { return stale[i].Priority > stale[j].Priority })
		for _, o := range stale {
			o := o
			p := planRule(o)
			out = append(out, Step{Tunnel: "", Cmds: []string{plan.DelRuleCmd(p)},
				Why:     []reason{{Tunnel: who[f], Text: fmt.Sprintf("rule %s is not wanted", plan.DelRuleCmd(p)[len("ip "):])}},
				change:  func(x *Executor) error { return x.Sys.Net.DelRule(o) },
				undoCmd: plan.AddRuleCmd(p), undo: func(x *Executor) error { return x.Sys.Net.AddRule(o) }})
		}
	}
	return out
}

// DefaultFamilies names, for each family, a tunnel of want with a
// default route there.
func DefaultFamilies(want []plan.Tunnel) map[int]string {
	out := map[int]string{}
	for _, t := range want {
		for _, d := range t.Defaults {
			if _, ok := out[FamilyOf(d.Dst.Addr())]; !ok {
				out[FamilyOf(d.Dst.Addr())] = t.Link.Name
			}
		}
	}
	return out
}

// DropRules removes gre-hook's rules in the families that no record
// needs any more, carrying on past failures, as a teardown does.
func (td *Teardown) DropRules(need map[int]bool) []error {
	var errs []error
	for _, f := range []int{4, 6} {
		if need[f] {
			continue
		}
		rs, err := td.Sys.Net.Rules(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("listing the IPv%d rules: %w", f, err))
			continue
		}
		var ours []rtnl.Rule
		for _, r := range rs {
			if r.Protocol == plan.RouteProtocol {
				ours = append(ours, r)
			}
		}
		sort.SliceStable(ours, func(i, j int) bool { return ours[i].Priority > ours[j].Priority })
		for _, o := range ours {
			cmd := plan.DelRuleCmd(planRule(o))
			td.Log.Change(cmd)
			if td.Dry {
				continue
			}
			if err := td.Sys.Net.DelRule(o); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", cmd, err))
			}
		}
	}
	return errs
}

// InvolvesDefaults reports whether a run on tunnels, whose underlay's
// record is rec, may change default routes or gre-hook's rules.
func InvolvesDefaults(tunnels []config.Tunnel, rec *state.Record) bool {
	for _, t := range tunnels {
		if t.DefaultRoute {
			return true
		}
	}
	if rec != nil {
		for _, t := range rec.Tunnels {
			if len(t.Defaults) > 0 || t.Legacy() {
				return true
			}
		}
	}
	return false
}
