package engine

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/gre-hook/gre-hook/hook/mss"
	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/rtnl"
	"github.com/gre-hook/gre-hook/hook/state"
)

// The diff compares what the plan wants on one underlay with the kernel
// snapshot and the underlay's record, and returns the steps that make the
// kernel hold the plan. It reads and changes nothing: up runs its steps
// (apply.go), --dry-run prints them, and status reports them as drift.

// Step is one change the diff asks for.
type Step struct {
	// Tunnel is the tunnel the step is for; "" for the underlay's
	// iptables rules, which go in one write.
	Tunnel string
	// Cmds are the commands a person would type for the change, as up
	// prints them: the first is the change, the rest say what the same
	// call also does (a new link gets its alias and MTU with it). The
	// first may end in a comment (commentMark) saying why it is done so.
	Cmds []string
	// Why says what differs, for status.
	Why []reason
	// change makes the change.
	change func(x *Executor) error
	// undoCmd and undo put back what change did; undo is nil when
	// nothing needs putting back (a rollback deletes the link anyway).
	undoCmd string
	undo    func(x *Executor) error
	// self: change prints its own commands and honours a dry run itself.
	// Handing on a previous release's main default follows legacy.go's
	// rule as it goes, and what it does is known only then.
	self bool
	// bare: an error of change already says what failed.
	bare bool
	// note is printed with -v when the step is reached; a step with a
	// note and no change only says why nothing is done.
	note string
	// dropsRoutesVia names a link the change deletes: the kernel deletes
	// its routes with it.
	dropsRoutesVia string
	// news: the change is one a daemon told by up_command must hear of
	// (diffCommands).
	news bool
	// prepare edits the run's snapshot when the step is reached, in a dry
	// run too, so that the steps after it see the kernel as it will be.
	prepare func(x *Executor)
	// op is change as one request of a pipeline (rtnl.Op), when it is
	// one of bringing a new tunnel up; phase orders those: links (1), then
	// addresses and their state (2), then routes (3). Consecutive steps
	// of one phase go to the kernel together (Executor.run).
	op    rtnl.Op
	phase int
	// made, if set, is what op's error (nil if it was made) comes to,
	// as change would have it.
	made func(x *Executor, err error) error
}

// reason is one difference, and the tunnel it is about.
type reason struct {
	Tunnel string
	Text   string
}

func because(tunnel, format string, args ...interface{}) []reason {
	return []reason{{Tunnel: tunnel, Text: fmt.Sprintf(format, args...)}}
}

// Drifts reports whether st is a difference: something to do, or to say.
func (st *Step) Drifts() bool { return len(st.Cmds) > 0 || len(st.Why) > 0 }

// DiffSteps is every step for the tunnels want on underlay: their links,
// addresses and routes, the MSS rules of the underlay (chains holds
// gre-hook's chain of each family that has or had rules), and the
// up_commands of the tunnels those steps touch.
func DiffSteps(underlay string, want []plan.Tunnel, s *Snapshot, rec *state.Record, chains map[int]mss.State) []Step {
	steps := diffTunnels(want, s, rec)
	steps = append(steps, diffSysctls(want, s)...)
	steps = append(steps, diffRules(underlay, want, chains)...)
	return append(steps, diffCommands(underlay, want, touched(steps))...)
}

// diffTunnels is the steps for the tunnels' links, addresses and routes,
// tunnel by tunnel.
func diffTunnels(want []plan.Tunnel, s *Snapshot, rec *state.Record) []Step {
	// A new tunnel is a few steps: its link, an address or two, up and
	// its routes.
	out := make([]Step, 0, 4*len(want))
	routes := s.Routes
	for i := range want {
		var steps []Step
		if st, ok := twinStep(&want[i], want, s, routes, rec); ok {
			out = append(out, st)
			routes = withoutRoutesVia(routes, st.dropsRoutesVia)
		}
		steps, routes = diffTunnel(&want[i], s, routes, rec.Find(want[i].Link.Name))
		out = append(out, steps...)
	}
	return byPhase(out)
}

// byPhase orders steps by phase when every one is a link creation, an
// address, a link state or a route replace (a boot, where every tunnel is
// new): every link, then every address and link state, then every route,
// each tunnel in its order within a phase, so that each phase goes to the
// kernel in a few writes rather than a request at a time. Those steps
// depend only on the phases before them: a route names its own tunnel. If
// any step is of another kind (a link made again or changed in place, an
// address or route taken away), the order is left as it is: what such a
// step does may depend on what the steps before it did.
func byPhase(steps []Step) []Step {
	for i := range steps {
		if steps[i].phase == 0 {
			return steps
		}
	}
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].phase < steps[j].phase })
	return steps
}

// commentMark begins the comment that may end a step's first command.
const commentMark = "  # "

// bareCmd is cmd without its comment.
func bareCmd(cmd string) string {
	if i := strings.Index(cmd, commentMark); i >= 0 {
		return cmd[:i]
	}
	return cmd
}

// touched names the tunnels whose steps are news for their up_command: a
// link made (a new index), an address added or removed, the multicast
// flag changed. A change in place (MTU, TTL, endpoints, keys), a route or
// an MSS rule leaves a multicast daemon's VIF as it was: no news.
func touched(steps []Step) map[string]bool {
	out := map[string]bool{}
	for _, st := range steps {
		if st.Tunnel != "" && st.news && len(st.Cmds) > 0 {
			out[st.Tunnel] = true
		}
	}
	return out
}

// linkMatches reports whether have is want's link, with want's tunnel
// attributes.
func linkMatches(have rtnl.Link, want plan.Link) bool {
	return have.GRE && have.Kind == string(want.Mode) && len(plan.Changes(planLink(have), want)) == 0
}

// remakes says why the kernel cannot turn have into want in place, as
// have's comment and status's reason, or "" when it can. A live GRE
// link's changelink takes new tunnel attributes (local, remote, ttl, tos,
// pmtudisc, keys) and keeps the link's index; it cannot change the link's
// kind (the RTM_NEWLINK fails with EOPNOTSUPP), nor (rtnl.RemoteChangeable)
// make a gre link point-to-point or not.
func remakes(have rtnl.Link, want plan.Link) (comment, why string) {
	switch {
	case !have.GRE || have.Kind != string(want.Mode):
		return fmt.Sprintf("mode %s, was %s: the kernel cannot change a link's kind", want.Mode, KindOf(have)),
			fmt.Sprintf("mode is %s, want %s; the kernel cannot change a link's kind, so up makes it again", KindOf(have), want.Mode)
	case !rtnl.RemoteChangeable(have.Kind, have.Remote, want.Remote):
		return fmt.Sprintf("remote %s, was %s: the kernel cannot make a gre link point-to-point or not", want.Remote, have.Remote),
			fmt.Sprintf("remote is %s, want %s; the kernel cannot make a gre link point-to-point or not, so up makes it again", have.Remote, want.Remote)
	}
	return "", ""
}

// diffTunnel is the steps for one tunnel; old is its entry in the
// underlay's record, nil if none. routes is the kernel's routes as the
// steps before leave them, and the result has them as these steps do.
// The link first (made again, made, or changed in place), then its
// addresses, its state, its routes, and last the addresses it no longer
// has.
func diffTunnel(t *plan.Tunnel, s *Snapshot, routes map[int][]rtnl.Route, old *state.Tunnel) ([]Step, map[int][]rtnl.Route) {
	want := t.Link
	c := &tunnelSteps{name: want.Name}
	have, exists := s.Links[want.Name]
	c.fresh = !exists
	if comment, why := remakes(have, want); exists && why != "" {
		routes = c.remake(have, s.addrs[have.Index], routes, comment, why)
		exists, have = false, rtnl.Link{}
	}
	if !exists {
		c.addLink(want)
	} else {
		c.changeLink(have, want)
	}
	// Addresses: exactly the configured ones, on a link that is ours.
	var present []rtnl.Addr
	if exists {
		present = s.addrs[have.Index]
	}
	c.addAddrs(t.Addrs, present)
	if !exists || !have.Up {
		name := want.Name
		c.add(Step{Cmds: []string{plan.UpCmd(name)}, Why: because(name, "link is down"), op: rtnl.Op{Kind: rtnl.OpSetUp, Dev: name}, phase: 2,
			change: func(x *Executor) error { return x.Sys.Net.SetUp(name) }})
	}
	c.routes(t, routes, old)
	c.delAddrs(t.Addrs, present)
	return c.out, routes
}

// tunnelSteps collects one tunnel's steps. fresh: the link is (re)made,
// and the first step says why; the rest follow from it.
type tunnelSteps struct {
	name  string
	fresh bool
	out   []Step
}

func (c *tunnelSteps) add(st Step) {
	st.Tunnel = c.name
	if c.fresh && len(c.out) > 0 {
		st.Why = nil
	}
	c.out = append(c.out, st)
}

// remake deletes have, ours (precheck saw to that) but of another kind
// than the config now says, to make it again; routes lose those via it.
func (c *tunnelSteps) remake(have rtnl.Link, addrs []rtnl.Addr, routes map[int][]rtnl.Route, comment, why string) map[int][]rtnl.Route {
	name := c.name
	c.fresh = true
	prev, prevAddrs, prevRoutes := have, addrs, routesVia(routes, name)
	c.add(Step{
		Cmds:    []string{plan.DelLinkCmd(name) + commentMark + comment},
		Why:     because(name, "%s", why),
		change:  func(x *Executor) error { return x.Sys.Net.DelLink(name) },
		undoCmd: "recreate " + name + " as it was",
		undo:    func(x *Executor) error { return recreate(x.Sys.Net, prev, prevAddrs, prevRoutes) },
		// The kernel deletes the link's routes with it: they must not
		// be deleted (and put back, on a link whose addresses no
		// longer reach their gateways) again.
		dropsRoutesVia: name,
	})
	return withoutRoutesVia(routes, name)
}

// addLink makes the link.
func (c *tunnelSteps) addLink(want plan.Link) {
	name := want.Name
	// AddLink sets these too; they are printed for the reader.
	cmds := []string{plan.AddLinkCmd(want), plan.AliasCmd(want)}
	if want.FwMark != 0 {
		cmds = append(cmds, plan.FwMarkCmd(want))
	}
	if want.Multicast {
		cmds = append(cmds, plan.MulticastCmd(want))
	}
	cmds = append(cmds, plan.MTUCmd(want))
	c.add(Step{Cmds: cmds, Why: because(name, "link %s does not exist", name), news: true,
		op: rtnl.Op{Kind: rtnl.OpAddLink, Link: kernelLink(want)}, phase: 1, made: func(x *Executor, err error) error { return x.linkMade(want, err) },
		change:  func(x *Executor) error { return x.addLink(want) },
		undoCmd: plan.DelLinkCmd(name), undo: func(x *Executor) error { return x.Sys.Net.DelLink(name) }})
}

// changeLink changes the link in place where it differs from want.
func (c *tunnelSteps) changeLink(have rtnl.Link, want plan.Link) {
	name := want.Name
	if cs := plan.Changes(planLink(have), want); len(cs) > 0 {
		// In place: the link keeps its index, so its addresses,
		// routes and MSS rule stay, and so do the multicast daemons'
		// VIFs, which they key by index. The change keeps the MTU;
		// the step below sets it.
		prev := have
		back := make([]plan.Change, len(cs))
		var why []reason
		for i, ch := range cs {
			back[i] = plan.Change{Attr: ch.Attr, Have: ch.Want, Want: ch.Have}
			why = append(why, reason{name, ch.Why()})
		}
		c.add(Step{Cmds: []string{plan.ChangeTunnelCmd(want, cs) + commentMark + "in place, was " + plan.Was(cs)}, Why: why,
			change:  func(x *Executor) error { return x.setTunnel(want) },
			undoCmd: plan.ChangeTunnelCmd(want, back),
			undo:    func(x *Executor) error { return x.Sys.Net.SetTunnel(prev) }})
	}
	if have.FwMark != want.FwMark {
		// In place: the kernel's changelink takes a new fwmark (Linux
		// 4.12 and later), and the link keeps its routes, the main
		// default of a tunnel of the previous release among them.
		prev := have.FwMark
		c.add(Step{Cmds: []string{plan.FwMarkCmd(want)}, Why: because(name, "fwmark is %#x, want %#x", have.FwMark, want.FwMark),
			change:  func(x *Executor) error { return x.Sys.Net.SetFwMark(name, want.FwMark) },
			undoCmd: plan.FwMarkCmd(plan.Link{Name: name, Mode: want.Mode, FwMark: prev}),
			undo:    func(x *Executor) error { return x.Sys.Net.SetFwMark(name, prev) }})
	}
	if have.Multicast != want.Multicast {
		// News: a multicast daemon makes VIFs only on multicast links.
		prev := have.Multicast
		c.add(Step{Cmds: []string{plan.MulticastCmd(want)}, Why: because(name, "multicast is %v, want %v", have.Multicast, want.Multicast), news: true,
			change:  func(x *Executor) error { return x.Sys.Net.SetMulticast(name, want.Multicast) },
			undoCmd: plan.MulticastCmd(plan.Link{Name: name, Multicast: prev}),
			undo:    func(x *Executor) error { return x.Sys.Net.SetMulticast(name, prev) }})
	}
	if have.MTU != want.MTU {
		prev := have.MTU
		c.add(Step{Cmds: []string{plan.MTUCmd(want)}, Why: because(name, "mtu is %d, want %d", have.MTU, want.MTU),
			change:  func(x *Executor) error { return x.Sys.Net.SetMTU(name, want.MTU) },
			undoCmd: plan.MTUCmd(plan.Link{Name: name, MTU: prev}),
			undo:    func(x *Executor) error { return x.Sys.Net.SetMTU(name, prev) }})
	}
}

// addAddrs adds the configured addresses the link lacks.
func (c *tunnelSteps) addAddrs(want []plan.Addr, present []rtnl.Addr) {
	name := c.name
	for _, a := range want {
		a := a
		if hasAddr(present, a.Prefix) {
			continue
		}
		c.add(Step{Cmds: []string{plan.AddAddrCmd(name, a)}, Why: because(name, "address %s is missing", a.Prefix), news: true,
			op: rtnl.Op{Kind: rtnl.OpAddAddr, Dev: name, Addr: kernelAddr(a)}, phase: 2,
			change:  func(x *Executor) error { return x.Sys.Net.AddAddr(name, kernelAddr(a)) },
			undoCmd: plan.DelAddrCmd(name, a), undo: func(x *Executor) error { return x.Sys.Net.DelAddr(name, a.Prefix) }})
	}
}

// routes puts in the tunnel's routes and default routes, and takes out
// those of old it no longer has. A replace needs no undo for a route
// that was not there: a rollback deletes it, or the link that takes it
// along.
func (c *tunnelSteps) routes(t *plan.Tunnel, routes map[int][]rtnl.Route, old *state.Tunnel) {
	name := c.name
	replace := func(r plan.Route) *Step {
		prev := findRoute(routes, r, true)
		if prev != nil && prev.Gw == r.Gw && prev.Dev == r.Dev {
			return nil
		}
		st := Step{Cmds: []string{plan.ReplaceRouteCmd(r)}, Why: missingRoute(name, r),
			op: rtnl.Op{Kind: rtnl.OpReplaceRoute, Route: KernelRoute(r, plan.RouteProtocol)}, phase: 3,
			change:  func(x *Executor) error { return x.Sys.Net.ReplaceRoute(KernelRoute(r, plan.RouteProtocol)) },
			undoCmd: plan.DelRouteCmd(r), undo: func(x *Executor) error { return x.Sys.Net.DelRoute(KernelRoute(r, plan.RouteProtocol)) }}
		if prev != nil {
			p := PlanRoute(*prev)
			st.undoCmd = plan.RestoreRouteCmd(p, plan.RouteProtocol)
			st.undo = func(x *Executor) error { return x.Sys.Net.ReplaceRoute(KernelRoute(p, plan.RouteProtocol)) }
		}
		return &st
	}
	// The default routes go into gre-hook's table, where nothing but
	// gre-hook's default routes is (POLICY-ROUTING.md): a replace there
	// never displaces anyone's route.
	for _, r := range append(append([]plan.Route{}, t.Routes...), t.Defaults...) {
		if st := replace(r); st != nil {
			c.add(*st)
		}
	}
	for _, st := range staleRoutes(t, routes, old) {
		c.add(st)
	}
}

// delAddrs removes the addresses the config no longer has. They go last:
// a rollback puts them back before the routes through their gateways,
// which the kernel refuses (ENETUNREACH) on a link without them. On a
// link changed in place, nothing else puts them back.
func (c *tunnelSteps) delAddrs(want []plan.Addr, present []rtnl.Addr) {
	name := c.name
	for _, p := range present {
		if p.Prefix.Addr().IsLinkLocalUnicast() || wantsAddr(want, p.Prefix) {
			continue
		}
		pa := planAddr(p)
		c.add(Step{Cmds: []string{plan.DelAddrCmd(name, pa)}, Why: because(name, "address %s is not in the config", p.Prefix), news: true,
			change:  func(x *Executor) error { return x.Sys.Net.DelAddr(name, pa.Prefix) },
			undoCmd: plan.AddAddrCmd(name, pa), undo: func(x *Executor) error { return x.Sys.Net.AddAddr(name, kernelAddr(pa)) }})
	}
}

func missingRoute(tunnel string, r plan.Route) []reason {
	return because(tunnel, "route %s is missing", strings.TrimPrefix(plan.ReplaceRouteCmd(r), "ip "))
}

// staleRoutes is the steps that remove routes an earlier run installed
// for t that the config no longer asks for. A default route in the main
// table is the previous release's and is left to its own rule (legacy.go):
// deleting it here could leave the router without one.
func staleRoutes(t *plan.Tunnel, routes map[int][]rtnl.Route, old *state.Tunnel) []Step {
	name := t.Link.Name
	var out []Step
	del := func(p plan.Route) Step {
		return Step{Tunnel: name, Cmds: []string{plan.DelRouteCmd(p)}, Why: because(name, "route %s is not in the config", strings.TrimPrefix(plan.DelRouteCmd(p), "ip ")),
			change:  func(x *Executor) error { return x.Sys.Net.DelRoute(KernelRoute(p, plan.RouteProtocol)) },
			undoCmd: plan.ReplaceRouteCmd(p), undo: func(x *Executor) error { return x.Sys.Net.ReplaceRoute(KernelRoute(p, plan.RouteProtocol)) }}
	}
	wanted := func(have rtnl.Route) bool {
		for _, w := range append(append([]plan.Route{}, t.Routes...), t.Defaults...) {
			if w.Dst == have.Dst && w.Table == have.Table && w.Metric == have.Metric {
				return true
			}
		}
		return false
	}
	for _, f := range []int{4, 6} {
		for _, have := range routes[f] {
			if have.Protocol == plan.RouteProtocol && have.Dev == name && !wanted(have) && !(have.IsDefault() && have.Table == 0) {
				out = append(out, del(PlanRoute(have)))
			}
		}
	}
	return out
}

// diffRules is the iptables rules of every tunnel of underlay, one write
// per family of chains, in family order: the MSS rules in mss.Out and the
// reflection guards of the tunnels that reflect keepalives in mss.In.
// chains holds, by family, the chains read.
func diffRules(underlay string, want []plan.Tunnel, chains map[int]mss.State) []Step {
	prefix := plan.Comment(underlay, "")
	mine := func(c string) bool { return strings.HasPrefix(c, prefix) }
	fams := make([]int, 0, len(chains))
	for f := range chains {
		fams = append(fams, f)
	}
	sort.Ints(fams)
	var out []Step
	for _, f := range fams {
		rules := mss.Rules{}
		owners := map[mss.Chain][]string{}
		add := func(c mss.Chain, owner string, spec []string) {
			rules[c] = append(rules[c], spec)
			owners[c] = append(owners[c], owner)
		}
		for _, t := range want {
			for _, m := range t.MSS {
				if m.Family == f {
					add(mss.Out, t.Link.Name, plan.RuleSpec(m))
				}
			}
			if t.Reflect && f == 4 {
				add(mss.In, t.Link.Name, plan.GuardSpec(underlay, t.Link.Name))
			}
		}
		c := mss.Diff(chains[f], mine, rules)
		if c.Input == "" {
			continue
		}
		var why []reason
		for _, cs := range chains[f].Chains {
			what := "MSS rule"
			if cs.Chain == mss.In {
				what = "reflection guard"
			}
			missing := map[string]bool{}
			for _, r := range c.Missing[cs.Chain] {
				missing[mss.Join(r)] = true
			}
			jump := cs.Exists && cs.Jump
			for i, r := range rules[cs.Chain] {
				spec := mss.Join(r)
				switch {
				case missing[spec]:
					why = append(why, reason{owners[cs.Chain][i], fmt.Sprintf("%s %s is missing: %s", plan.IptablesCmd(f), what, spec)})
				case !jump:
					why = append(why, reason{owners[cs.Chain][i], fmt.Sprintf("%s mangle %s does not jump to %s", plan.IptablesCmd(f), cs.From, cs.Name)})
				}
			}
		}
		f, read := f, chainsOf(chains[f])
		out = append(out, Step{Cmds: c.Cmds, Why: why, bare: true,
			change: func(x *Executor) error { return c.Apply(x.Tables[f]) },
			undo: func(x *Executor) error {
				_, err := mss.Sync(x.Tables[f], read, mine, c.Prev, x.Log.Change)
				return err
			}})
	}
	return out
}

// diffCommands is the up_commands of the tunnels in touched. An
// up_command tells a daemon about a new interface, or one whose addresses
// or multicast flag changed; other tunnels have no news for it.
func diffCommands(underlay string, want []plan.Tunnel, touched map[string]bool) []Step {
	var out []Step
	for _, t := range want {
		if len(t.Up) == 0 || !touched[t.Link.Name] {
			continue
		}
		argv, name := t.Up, t.Link.Name
		out = append(out, Step{Tunnel: name, Cmds: []string{strings.Join(argv, " ")}, bare: true,
			change: func(x *Executor) error {
				if err := x.Sys.Command(x.Ctx, argv, commandEnv(name, underlay, PhaseUp)); err != nil {
					return fmt.Errorf("up_command: %s: %w", strings.Join(argv, " "), err)
				}
				return nil
			}})
	}
	return out
}

// staleTunnels is the tunnels gre-hook made earlier on underlay that want
// no longer has: those the record lists, and links marked as gre-hook's
// for underlay that no record lists (unlisted).
func staleTunnels(underlay string, want []plan.Tunnel, s *Snapshot, rec *state.Record) (stale []state.Tunnel, unlisted map[string]bool) {
	keep := map[string]bool{}
	for _, t := range want {
		keep[t.Link.Name] = true
	}
	unlisted = map[string]bool{}
	if rec != nil {
		for _, t := range rec.Tunnels {
			if !keep[t.Name] {
				stale = append(stale, t)
			}
		}
	}
	for _, l := range s.Links {
		if l.Alias == plan.Alias(underlay) && !keep[l.Name] && rec.Find(l.Name) == nil {
			stale = append(stale, state.Tunnel{Name: l.Name})
			unlisted[l.Name] = true
		}
	}
	sort.Slice(stale, func(i, j int) bool { return stale[i].Name < stale[j].Name })
	return stale, unlisted
}

// Precheck refuses, before any change, plans that would touch something
// gre-hook does not own.
func Precheck(want []plan.Tunnel, s *Snapshot) error {
	for _, t := range want {
		if l, ok := s.Links[t.Link.Name]; ok && l.Alias != t.Link.Alias {
			if strings.HasPrefix(l.Alias, plan.AliasPrefix) {
				return fmt.Errorf("tunnel %q: link %s belongs to gre-hook's tunnels on %s; run `gre-hook --iface %s --phase down` first",
					t.Link.Name, l.Name, strings.TrimPrefix(l.Alias, plan.AliasPrefix), strings.TrimPrefix(l.Alias, plan.AliasPrefix))
			}
			return fmt.Errorf("tunnel %q: a link named %s already exists (kind %s, index %d) and gre-hook did not create it; rename the tunnel or remove that link",
				t.Link.Name, l.Name, KindOf(l), l.Index)
		}
		for _, r := range append(append([]plan.Route{}, t.Routes...), t.Defaults...) {
			if f := findRoute(s.Routes, r, false); f != nil {
				return fmt.Errorf("tunnel %q: route %s%s: another route with that destination, table and metric exists (via %s dev %s, proto %d) and gre-hook did not create it",
					t.Link.Name, r.Dst, tableSuffix(r.Table), f.Gw, f.Dev, f.Protocol)
			}
		}
	}
	return nil
}

func KindOf(l rtnl.Link) string {
	if l.Kind == "" {
		return "unknown"
	}
	return l.Kind
}

func tableSuffix(t uint32) string {
	if t == 0 {
		return ""
	}
	return fmt.Sprintf(" table %d", t)
}

func hasAddr(as []rtnl.Addr, p netip.Prefix) bool {
	for _, a := range as {
		if a.Prefix == p {
			return true
		}
	}
	return false
}

func wantsAddr(as []plan.Addr, p netip.Prefix) bool {
	for _, a := range as {
		if a.Prefix == p {
			return true
		}
	}
	return false
}
