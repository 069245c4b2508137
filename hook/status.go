package hook

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/gre-hook/gre-hook/hook/config"
	"github.com/gre-hook/gre-hook/hook/engine"
	"github.com/gre-hook/gre-hook/hook/mss"
	"github.com/gre-hook/gre-hook/hook/peer"
	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/rtnl"
	"github.com/gre-hook/gre-hook/hook/state"
)

// TunnelStatus is one line of `gre-hook status`.
type TunnelStatus struct {
	Tunnel   string `json:"tunnel"`
	Underlay string `json:"underlay"`
	State    string `json:"state"` // "up", "down" (underlay down or absent), "drift", "unresolved" (remote's name)
	// RemoteName is the DNS name the config gives as remote, and Remote
	// the address the tunnel was brought up with.
	RemoteName string   `json:"remote_name,omitempty"`
	Remote     string   `json:"remote,omitempty"`
	Problems   []string `json:"problems,omitempty"`
	// Fix is the commands up would run for this tunnel, in order.
	Fix []string `json:"fix,omitempty"`
	// Keepalive is set for tunnels gre-hook watch follows.
	Keepalive *KeepaliveStatus `json:"keepalive,omitempty"`
	// Policy is the policy routing in force for a tunnel that is up: its
	// record's (POLICY-ROUTING.md).
	Policy *plan.Policy `json:"policy,omitempty"`
}

// runStatus compares the kernel with the config for each configured tunnel
// (on iface, if set) and reports whether anything differs: whether the
// diff up would run is empty. On drift it prints the commands up would
// run to fix it. A tunnel whose underlay is missing or down is expected
// to be absent. cfg is the config req names.
func runStatus(req Request, cfg *config.Config, sys *System, out io.Writer, asJSON bool) (drift bool, err error) {
	snap, err := engine.TakeSnapshot(sys.Net)
	if err != nil {
		return false, err
	}
	// Each underlay is judged by the config its tunnels came from.
	recs, broken, _ := sys.Store.All()
	// The policy routing in force, and a move that the config asks for
	// (up on any underlay would run it first).
	choice := engine.ChoosePolicy(engine.PolicyOf(cfg), nil, recs, strings.Join(engine.SortedKeys(broken), ", "), snap)
	var mv *engine.Move
	var moved map[int][]rtnl.Rule
	if choice.Moving {
		rules, err := engine.ReadRules(sys.Net)
		if err != nil {
			return false, err
		}
		if mv, err = engine.PlanMove(choice.Use, snap, rules, engine.NeedsRules(recs)); err != nil {
			return false, err
		}
		moved = mv.Rules
		after := *snap
		after.Links, after.Routes = mv.Links, mv.Routes
		snap = &after
	}
	drift = mv != nil || choice.Why != "" || choice.Refuse != ""
	g := groupTunnels(req, cfg, recs, newSources(req, cfg))
	report := g.report
	live, _ := state.ReadLiveness(sys.Store.Dir)
	fixes := map[string][]string{}
	for _, u := range g.order {
		pol := engine.PolicyOf(g.cfgOf[u])
		if g.cfgOf[u] == cfg {
			pol = choice.Use
		}
		sts, fix, err := statusUnderlay(sys, snap, recs, u, g.groups[u], live, g.cfgOf[u], pol, moved)
		if err != nil {
			return false, err
		}
		if len(fix) > 0 {
			fixes[u] = fix
		}
		report = append(report, sts...)
	}
	if choice.Refuse != "" {
		// Up changes nothing then: there is no fix to show.
		fixes = map[string][]string{}
		for i := range report {
			report[i].Fix = nil
		}
	}
	report = append(report, unconfigured(req, snap, g.configured)...)
	for _, st := range report {
		drift = drift || st.State == "drift" || st.State == "unresolved"
	}
	drift = drift || len(fixes) > 0
	if asJSON {
		// The policy routing has no tunnel: an entry of its own says
		// what the text prints under "policy routing".
		for _, why := range []string{choice.Why, choice.Refuse} {
			if why != "" {
				report = append(report, TunnelStatus{State: "drift", Problems: []string{why}})
			}
		}
		if report == nil {
			report = []TunnelStatus{}
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return drift, enc.Encode(report)
	}
	return drift, writeStatus(out, report, recs, choice, mv, g.order, fixes)
}

// statusGroups is the configured tunnels status judges, by underlay: each
// underlay by the config its tunnels came from.
type statusGroups struct {
	order  []string
	groups map[string][]config.Tunnel
	cfgOf  map[string]*config.Config
	// configured names every tunnel of the configs read, on any underlay.
	configured map[string]bool
	// report has the underlays whose config cannot be read.
	report []TunnelStatus
}

func groupTunnels(req Request, cfg *config.Config, recs map[string]*state.Record, srcs *sources) statusGroups {
	g := statusGroups{groups: map[string][]config.Tunnel{}, cfgOf: map[string]*config.Config{}, configured: map[string]bool{}}
	var tunnels []config.Tunnel
	for _, t := range cfg.Tunnels {
		if rec := recs[t.Underlay]; rec == nil || rec.Source == "" || rec.Source == srcs.own {
			tunnels = append(tunnels, t)
			g.cfgOf[t.Underlay] = cfg
		}
	}
	for _, u := range engine.SortedKeys(recs) {
		rec := recs[u]
		if rec.Source == "" || rec.Source == srcs.own || (req.Iface != "" && u != req.Iface) {
			continue
		}
		c, err := srcs.forRecord(rec)
		if err != nil {
			g.report = append(g.report, TunnelStatus{Underlay: u, State: "drift", Problems: []string{err.Error()}})
			continue
		}
		tunnels = append(tunnels, c.For(u)...)
		g.cfgOf[u] = c
	}
	// Each underlay is judged as a whole, as up works on it: the diff of
	// its tunnels against the kernel is what up would do.
	for _, c := range tunnels {
		g.configured[c.Name] = true
		if req.Iface != "" && c.Underlay != req.Iface {
			continue
		}
		if g.groups[c.Underlay] == nil {
			g.order = append(g.order, c.Underlay)
		}
		g.groups[c.Underlay] = append(g.groups[c.Underlay], c)
	}
	return g
}

// unconfigured is the links of gre-hook's that no config has.
func unconfigured(req Request, snap *engine.Snapshot, configured map[string]bool) []TunnelStatus {
	var extra []string
	for _, l := range snap.Links {
		u := strings.TrimPrefix(l.Alias, plan.AliasPrefix)
		if strings.HasPrefix(l.Alias, plan.AliasPrefix) && !configured[l.Name] && (req.Iface == "" || u == req.Iface) {
			extra = append(extra, l.Name)
		}
	}
	sort.Strings(extra)
	var out []TunnelStatus
	for _, name := range extra {
		out = append(out, TunnelStatus{Tunnel: name, Underlay: strings.TrimPrefix(snap.Links[name].Alias, plan.AliasPrefix), State: "drift",
			Problems: []string{"gre-hook made this link but no config has it (gre-hook gc removes it)"}})
	}
	return out
}

// writeStatus prints the report, the policy routing, and what up would
// run, underlay by underlay in order.
func writeStatus(out io.Writer, report []TunnelStatus, recs map[string]*state.Record, choice engine.PolicyChoice, mv *engine.Move, order []string, fixes map[string][]string) error {
	var b strings.Builder
	for _, st := range report {
		fmt.Fprintf(&b, "%s on %s: %s%s\n", st.Tunnel, st.Underlay, st.State, describeRemote(st))
		if st.Keepalive != nil {
			fmt.Fprintf(&b, "  keepalive: %s\n", st.Keepalive)
		}
		for _, p := range st.Problems {
			fmt.Fprintf(&b, "  - %s\n", p)
		}
	}
	if in := engine.InForce(recs); len(in) > 0 {
		fmt.Fprintf(&b, "policy routing: %s\n", engine.DescribePolicies(in))
	}
	if choice.Why != "" {
		fmt.Fprintf(&b, "  - %s\n", choice.Why)
	}
	if choice.Refuse != "" {
		fmt.Fprintf(&b, "  - up is refused: %s\n", choice.Refuse)
	}
	if mv != nil {
		fmt.Fprintf(&b, "  - the config asks for %s: up on any underlay moves every underlay to it\n", choice.Use)
		if cmds := mv.Cmds(); len(cmds) > 0 {
			fmt.Fprintf(&b, "policy routing: up would run:\n")
			for _, c := range cmds {
				fmt.Fprintf(&b, "  %s\n", c)
			}
		}
	}
	for _, u := range order {
		if len(fixes[u]) == 0 {
			continue
		}
		fmt.Fprintf(&b, "%s: up would run:\n", u)
		for _, c := range fixes[u] {
			fmt.Fprintf(&b, "  %s\n", c)
		}
	}
	_, err := io.WriteString(out, b.String())
	return err
}

// statusUnderlay is the status of the configured tunnels cs of underlay
// u, in their order, and the commands up would run on u, in its order.
// live is what gre-hook watch last wrote of its peers.
// pol is the policy routing up would apply, and rules, when set, the
// kernel's rules as a move of it leaves them.
func statusUnderlay(sys *System, snap *engine.Snapshot, recs map[string]*state.Record, u string, cs []config.Tunnel, live []state.LivenessEntry, srcCfg *config.Config,
	pol plan.Policy, rules map[int][]rtnl.Rule) ([]TunnelStatus, []string, error) {
	rec := recs[u]
	sts := make([]TunnelStatus, len(cs))
	ul, uerr := engine.UnderlayOf(snap, u)
	upNow := uerr == nil && ul.Up
	others := othersThan(recs, u)
	var want []plan.Tunnel
	for i, c := range cs {
		st := &sts[i]
		*st = TunnelStatus{Tunnel: c.Name, Underlay: u, State: "up"}
		st.Keepalive = keepaliveStatus(c, rec, live)
		if rec.Find(c.Name) != nil {
			p := rec.Applied()
			st.Policy = &p
		}
		if w, ok := plannedTunnel(c, st, snap, u, rec, others, ul, upNow, srcCfg, pol); ok {
			want = append(want, w)
		}
	}
	var fix []string
	if upNow {
		steps, err := statusSteps(sys, snap, u, rec, others, cs, want, pol, rules)
		if err != nil {
			return nil, nil, err
		}
		fix = attribute(steps, cs, sts)
	}
	if err := engine.ModulesMissing(sys, want); err != nil && upNow {
		// The commands would fail at the first link; say why instead.
		fix = nil
		for i := range sts {
			sts[i].Fix = nil
			if _, exists := snap.Links[cs[i].Name]; !exists && sts[i].State == "up" {
				sts[i].Problems = append(sts[i].Problems, fmt.Sprintf("%v; up cannot create the link", err))
			}
		}
	}
	for i := range sts {
		if len(sts[i].Problems) > 0 && sts[i].State != "unresolved" {
			sts[i].State = "drift"
		}
	}
	return sts, fix, nil
}

// plannedTunnel is the plan up would make for c, or why there is none in
// st (its state and problems): the underlay is down, the link is not
// gre-hook's, the remote is unresolved, or the plan is refused.
func plannedTunnel(c config.Tunnel, st *TunnelStatus, snap *engine.Snapshot, u string, rec *state.Record, others map[string]*state.Record,
	ul plan.Underlay, upNow bool, srcCfg *config.Config, pol plan.Policy) (plan.Tunnel, bool) {
	have, exists := snap.Links[c.Name]
	switch {
	case !upNow:
		st.State = "down"
		if exists && have.Alias == plan.Alias(u) {
			st.Problems = append(st.Problems, fmt.Sprintf("underlay %s is down or absent but the tunnel exists", u))
		}
		return plan.Tunnel{}, false
	case exists && have.Alias != plan.Alias(u):
		st.Problems = append(st.Problems, fmt.Sprintf("link %s exists but is not gre-hook's (alias %q)", c.Name, have.Alias))
		return plan.Tunnel{}, false
	case c.RemoteName != "" && !remoteFromRecord(&c, rec, st):
		st.State = "unresolved"
		st.Problems = append(st.Problems, fmt.Sprintf("remote %s has not been resolved; "+
			"gre-hook watch brings the tunnel up when it resolves, else the next up of %s", c.RemoteName, u))
		return plan.Tunnel{}, false
	}
	one := engine.AutoLocals([]config.Tunnel{c}, snap, u, rec)
	metrics := engine.DefaultMetrics(srcCfg, one, rec, others, snap, pol)
	w, err := plan.Up(one, ul, plan.Options{Policy: pol, Metrics: metrics})
	if err == nil {
		if k := rec.Find(c.Name); k != nil && k.Dead && c.Keepalive != nil {
			w = peer.WithdrawDead(w, rec)
		}
		err = engine.Precheck(w, snap)
	}
	if err != nil {
		st.Problems = append(st.Problems, err.Error())
		return plan.Tunnel{}, false
	}
	if msg := engine.AbsentLocal(snap, c); msg != "" {
		st.Problems = append(st.Problems, msg)
	}
	return w[0], true
}

// othersThan is recs without u's.
func othersThan(recs map[string]*state.Record, u string) map[string]*state.Record {
	others := map[string]*state.Record{}
	for name, r := range recs {
		if name != u {
			others[name] = r
		}
	}
	return others
}

// statusSteps is the steps up would run on underlay u, whose configured
// tunnels cs plan as want: the tunnels', the MSS rules', and with default
// routes the policy rules (from rules, when a move has them, else the
// kernel's).
func statusSteps(sys *System, snap *engine.Snapshot, u string, rec *state.Record, others map[string]*state.Record, cs []config.Tunnel,
	want []plan.Tunnel, pol plan.Policy, rules map[int][]rtnl.Rule) ([]engine.Step, error) {
	chains := map[int]mss.State{}
	need := engine.RuleChains(want, nil)
	for f, cs := range engine.RuleChains(want, rec) {
		// Families only the record names are read if they can be.
		b, err := sys.Tables(f)
		var c mss.State
		if err == nil {
			c, err = mss.Read(b, cs...)
		}
		switch {
		case err == nil:
			chains[f] = c
		case len(need[f]) > 0:
			return nil, err
		}
	}
	if err := engine.ReadSysctls(sys.Sysctl, want, snap); err != nil {
		return nil, err
	}
	steps := engine.DiffSteps(u, want, snap, rec, chains)
	if !engine.InvolvesDefaults(cs, rec) {
		return steps, nil
	}
	if rules == nil {
		var err error
		if rules, err = engine.ReadRules(sys.Net); err != nil {
			return nil, err
		}
	}
	// What up would record: this underlay's tunnels as planned.
	mine := &state.Record{Underlay: u}
	for _, w := range want {
		e := state.Tunnel{Name: w.Link.Name}
		for _, d := range w.Defaults {
			e.Defaults = append(e.Defaults, state.FromPlan(d, 0))
		}
		if k := rec.Find(w.Link.Name); k != nil && k.Dead {
			e.Defaults = k.OwnedDefaults()
		}
		mine.Tunnels = append(mine.Tunnels, e)
	}
	needRules := engine.NeedsRules(others, map[string]*state.Record{u: mine})
	steps = append(steps, engine.DiffPolicy(pol, needRules, engine.DefaultFamilies(want), rules, false)...)
	return append(steps, engine.DiffLegacy(want, rec)...), nil
}

// attribute gives each step that drifts to the tunnels it is about, in
// sts (problems and fix), and returns all their commands in order.
func attribute(steps []engine.Step, cs []config.Tunnel, sts []TunnelStatus) []string {
	var fix []string
	index := map[string]int{}
	for i, c := range cs {
		index[c.Name] = i
	}
	for _, st := range steps {
		if !st.Drifts() {
			continue
		}
		fix = append(fix, st.Cmds...)
		about := map[string]bool{}
		if st.Tunnel != "" {
			about[st.Tunnel] = true
		}
		for _, r := range st.Why {
			about[r.Tunnel] = true
			if i, ok := index[r.Tunnel]; ok {
				sts[i].Problems = append(sts[i].Problems, r.Text)
			}
		}
		for name := range about {
			if i, ok := index[name]; ok {
				sts[i].Fix = append(sts[i].Fix, st.Cmds...)
			}
		}
	}
	return fix
}
