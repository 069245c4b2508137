package fake

import (
	"fmt"
	"net/netip"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/gre-hook/gre-hook/hook/rtnl"
)

// Policy routing: the kernel's rules, and a route lookup through them, so
// that a test can ask the fake what `ip route get` would answer.

func describeRule(r rtnl.Rule) string {
	s := fmt.Sprintf("%d %d:", r.Family, r.Priority)
	if r.Mark != 0 {
		if r.Invert {
			s += " not"
		}
		s += fmt.Sprintf(" fwmark %#x", r.Mark)
	}
	if r.Table == 0 {
		s += " lookup main"
	} else {
		s += fmt.Sprintf(" lookup %d", r.Table)
	}
	if r.SuppressPrefixLen >= 0 {
		s += fmt.Sprintf(" suppress_prefixlength %d", r.SuppressPrefixLen)
	}
	return s + fmt.Sprintf(" proto %d", r.Protocol)
}

// Rules implements hook.Net. Like the kernel, it lists only the rules
// added: the default ones (main at 32766) are implied.
func (n *Net) Rules(family int) ([]rtnl.Rule, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.f.hit("Rules"); err != nil {
		return nil, err
	}
	var out []rtnl.Rule
	for _, r := range n.rules {
		if r.Family == family {
			out = append(out, r)
		}
	}
	return out, nil
}

func sameRule(a, b rtnl.Rule) bool {
	return a.Family == b.Family && a.Priority == b.Priority && a.Table == b.Table && a.Mark == b.Mark &&
		a.Invert == b.Invert && a.SuppressPrefixLen == b.SuppressPrefixLen && a.Other == b.Other
}

// AddRule implements hook.Net; an identical rule is refused, as with
// NLM_F_EXCL.
func (n *Net) AddRule(r rtnl.Rule) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.f.hit("AddRule"); err != nil {
		return err
	}
	for _, have := range n.rules {
		if sameRule(have, r) {
			return unix.EEXIST
		}
	}
	n.rules = append(n.rules, r)
	sort.SliceStable(n.rules, func(i, j int) bool { return n.rules[i].Priority < n.rules[j].Priority })
	return nil
}

// AddForeignRule adds a rule as the admin would.
func (n *Net) AddForeignRule(r rtnl.Rule) {
	if err := n.AddRule(r); err != nil {
		panic(err)
	}
}

// DelRule implements hook.Net: it deletes the first rule that matches,
// the protocol included when given; none is not an error.
func (n *Net) DelRule(r rtnl.Rule) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.f.hit("DelRule"); err != nil {
		return err
	}
	for i, have := range n.rules {
		if sameRule(have, r) && (r.Protocol == 0 || have.Protocol == r.Protocol) {
			n.rules = append(n.rules[:i:i], n.rules[i+1:]...)
			return nil
		}
	}
	return nil
}

// SetFwMark implements hook.Net.
func (n *Net) SetFwMark(name string, mark uint32) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.f.hit("SetFwMark"); err != nil {
		return err
	}
	l, err := n.link(name)
	if err != nil {
		return err
	}
	if !l.GRE {
		return unix.EOPNOTSUPP
	}
	l.FwMark = mark
	return nil
}

// RouteGet is the route the kernel picks for a packet to dst carrying
// fwmark mark, through the rules (and the implied main rule at 32766), as
// `ip route get DST mark MARK` shows it; ok is false for no route.
func (n *Net) RouteGet(dst netip.Addr, mark uint32) (r rtnl.Route, ok bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	fam := 4
	if dst.Is6() {
		fam = 6
	}
	rules := []rtnl.Rule{}
	for _, r := range n.rules {
		if r.Family == fam {
			rules = append(rules, r)
		}
	}
	rules = append(rules, rtnl.Rule{Family: fam, Priority: 32766, Table: 0, SuppressPrefixLen: -1})
	sort.SliceStable(rules, func(i, j int) bool { return rules[i].Priority < rules[j].Priority })
	for _, rule := range rules {
		if rule.Other {
			continue
		}
		if rule.Mark != 0 && (mark == rule.Mark) == rule.Invert {
			continue
		}
		best := n.lookup(rule.Table, dst)
		if best == nil {
			continue
		}
		if rule.SuppressPrefixLen >= 0 && best.Dst.Bits() <= rule.SuppressPrefixLen {
			continue
		}
		return *best, true
	}
	return rtnl.Route{}, false
}

// lookup is the longest match for dst in table, lowest metric first,
// among routes whose device is up.
func (n *Net) lookup(table uint32, dst netip.Addr) *rtnl.Route {
	var best *rtnl.Route
	for i := range n.routes {
		r := &n.routes[i]
		if r.Table != table || !r.Dst.Contains(dst) {
			continue
		}
		if l, ok := n.links[r.Dev]; r.Dev != "" && (!ok || !l.Up) {
			continue
		}
		if best == nil || r.Dst.Bits() > best.Dst.Bits() || (r.Dst.Bits() == best.Dst.Bits() && r.Metric < best.Metric) {
			best = r
		}
	}
	return best
}
