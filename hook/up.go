package hook

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/gre-hook/gre-hook/hook/config"
	"github.com/gre-hook/gre-hook/hook/mss"
	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/rtnl"
	"github.com/gre-hook/gre-hook/hook/state"
)

// undo is the reverse of one applied step.
type undo struct {
	cmd string
	fn  func() error
}

// transaction records undos so that a failed bring-up can put back the
// state it found.
type transaction struct {
	l     *logger
	undos []undo
}

func (t *transaction) push(cmd string, fn func() error) {
	t.undos = append(t.undos, undo{cmd: cmd, fn: fn})
}

// rollback runs the undos in reverse and returns what it could not undo.
func (t *transaction) rollback() []error {
	var errs []error
	for i := len(t.undos) - 1; i >= 0; i-- {
		u := t.undos[i]
		if u.cmd != "" {
			t.l.change(u.cmd)
		}
		if err := u.fn(); err != nil {
			errs = append(errs, fmt.Errorf("undoing: %s: %w", u.cmd, err))
		}
	}
	return errs
}

// snapshot is the kernel state a run reads once at its start, so that its
// cost does not grow with the square of the number of tunnels.
type snapshot struct {
	links  map[string]rtnl.Link
	addrs  map[int][]rtnl.Addr
	routes map[int][]rtnl.Route // by family
}

func takeSnapshot(n Net) (*snapshot, error) {
	s := &snapshot{links: map[string]rtnl.Link{}, addrs: map[int][]rtnl.Addr{}}
	links, err := n.Links()
	if err != nil {
		return nil, err
	}
	for _, l := range links {
		s.links[l.Name] = l
	}
	addrs, err := n.Addrs()
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		s.addrs[a.Index] = append(s.addrs[a.Index], a)
	}
	// Both families, always: a config edit may have dropped the last IPv6
	// route, and the stale one must still be found.
	if s.routes, err = readRoutes(n); err != nil {
		return nil, err
	}
	return s, nil
}

// readRoutes reads the routes of both families, by family.
func readRoutes(n Net) (map[int][]rtnl.Route, error) {
	routes := map[int][]rtnl.Route{}
	for _, f := range []int{4, 6} {
		rs, err := n.Routes(f)
		if err != nil {
			return nil, err
		}
		routes[f] = rs
	}
	return routes, nil
}

func familyOf(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

// underlayOf reads what the plan needs to know about the underlay.
func underlayOf(s *snapshot, name string) (plan.Underlay, error) {
	l, ok := s.links[name]
	if !ok {
		return plan.Underlay{}, fmt.Errorf("underlay %s does not exist", name)
	}
	u := plan.Underlay{Name: name, MTU: l.MTU, Up: l.Up}
	for _, a := range s.addrs[l.Index] {
		if a.Global && !a.Prefix.Addr().IsLinkLocalUnicast() {
			u.Addrs = append(u.Addrs, a.Prefix.Addr())
		}
	}
	return u, nil
}

func up(ctx context.Context, req Request, cfg *config.Config, sys *System, l *logger) error {
	tunnels := cfg.For(req.Iface)
	if len(tunnels) == 0 && !sys.Store.Exists(req.Iface) {
		l.note("no tunnels on %s", req.Iface)
		return nil
	}
	resolved := resolveRemotes(ctx, sys, tunnels)
	if !req.DryRun && !req.locked {
		unlock, err := state.Lock(sys.Store.Dir, sys.LockWait)
		if err != nil {
			return err
		}
		defer unlock()
	}
	rec, err := sys.Store.Load(req.Iface)
	if err != nil {
		return fmt.Errorf("bringing up tunnels on %s: %w", req.Iface, err)
	}
	distrust(rec, req, l)
	src := sourceOf(req)
	if rec != nil && rec.Source != "" && rec.Source != src && !req.SwitchConfig {
		// Hooks run once per stanza, and a dual-stack underlay's inet6
		// stanza may name no config: its run must not undo the inet
		// stanza's tunnels as stale.
		say := l.note
		if req.ByHand {
			say = l.warn
		}
		say("%s: its tunnels came from %s, not %s; leaving them alone (--switch-config makes this config theirs)",
			req.Iface, describeSource(rec.Source), describeSource(src))
		return nil
	}
	tunnels, unresolved := withRemotes(tunnels, resolved, rec, l)

	snap, err := takeSnapshot(sys.Net)
	if err != nil {
		return err
	}
	u, err := underlayOf(snap, req.Iface)
	switch {
	case err != nil && req.DryRun:
		// Planning on a machine that lacks the underlay is still useful.
		l.warn("underlay %s does not exist here; planning as if it were up with mtu 1500", req.Iface)
		u = plan.Underlay{Name: req.Iface, MTU: 1500, Up: true}
	case err != nil:
		return fmt.Errorf("bringing up tunnels on %s: %w", req.Iface, err)
	case !u.Up && !req.DryRun:
		return fmt.Errorf("bringing up tunnels on %s: the underlay is down; bring it up first", req.Iface)
	}
	lg := newLedger(sys.Store, req.Iface, rec)
	paths := map[netip.Addr]plan.Path{}
	for _, t := range tunnels {
		if !t.DefaultRoute {
			continue
		}
		if prev := rec.Find(t.Name); prev != nil && prev.Pin != nil {
			// Our pin is the current path; it still says where to go.
			paths[t.Remote] = plan.Path{Gateway: prev.Pin.Gw, Dev: prev.Pin.Dev}
			continue
		}
		p, err := sys.Net.PathTo(t.Remote)
		if err != nil {
			return fmt.Errorf("bringing up tunnels on %s: tunnel %q: %w", req.Iface, t.Name, err)
		}
		if lk, ok := snap.links[p.Dev]; ok && strings.HasPrefix(lk.Alias, plan.AliasPrefix) {
			// The remote is reached through another of gre-hook's tunnels,
			// which holds the default route now. The pin must take the path
			// the default route took before gre-hook's.
			if p, err = pathBefore(lg, t.Remote, snap); err != nil {
				return fmt.Errorf("bringing up tunnels on %s: tunnel %q: default_route: %w", req.Iface, t.Name, err)
			}
		}
		paths[t.Remote] = p
	}
	want, err := plan.Up(tunnels, u, paths)
	if err != nil {
		return fmt.Errorf("bringing up tunnels on %s: %w", req.Iface, err)
	}
	want = withdrawDead(want, tunnels, rec)
	if err := precheck(req.Iface, want, snap, rec); err != nil {
		return fmt.Errorf("bringing up tunnels on %s: %w", req.Iface, err)
	}

	r := &runner{ctx: ctx, req: req, sys: sys, l: l, snap: snap, tx: &transaction{l: l}, unlisted: map[string]bool{}}
	// Everything that can be checked without changing anything has been;
	// what follows needs the tools to be there.
	if !req.DryRun {
		for _, m := range modules(want) {
			if err := sys.LoadModule(m); err != nil {
				return fmt.Errorf("bringing up tunnels on %s: %w", req.Iface, err)
			}
		}
	}
	mssFams := map[int]bool{}
	for _, t := range want {
		for _, m := range t.MSS {
			mssFams[m.Family] = true
		}
	}
	for f := range rec.Families() {
		mssFams[f] = true
	}
	tables := map[int]mss.Backend{}
	for f := range mssFams {
		b, err := sys.Tables(f)
		if err != nil {
			return fmt.Errorf("bringing up tunnels on %s: %w", req.Iface, err)
		}
		tables[f] = newReadAhead(b)
	}

	newRec := merged(req.Iface, rec, want)
	keepLiveness(newRec, rec)
	newRec.Tunnels = append(newRec.Tunnels, unresolved...)
	newRec.Source = src
	newRec.Insecure = req.AllowInsecure
	lg.setOwn(newRec)
	r.ledger = lg
	r.checkpoint = func() error {
		if req.DryRun {
			return nil
		}
		// A superset of what this run may create, so that a run killed
		// midway can still be torn down.
		return sys.Store.Save(union(rec, newRec))
	}
	if err := r.checkpoint(); err != nil {
		return err
	}
	err = r.apply(want, newRec, tables, rec)
	if err != nil {
		if req.DryRun {
			return err
		}
		undoErrs := r.tx.rollback()
		// A complete rollback put the kernel back as the old record
		// describes it. An incomplete one may have left a replaced
		// default route out of the kernel, and only the new record
		// remembers it: keep both.
		back := restoreRecord(req.Iface, rec)
		if len(undoErrs) > 0 {
			back = union(rec, newRec)
		}
		if serr := sys.Store.Save(back); serr != nil {
			undoErrs = append(undoErrs, serr)
		}
		msg := fmt.Sprintf("bringing up tunnels on %s: %v; rolled back", req.Iface, err)
		if len(undoErrs) > 0 {
			msg = fmt.Sprintf("bringing up tunnels on %s: %v; rollback incomplete: %v", req.Iface, err, join(undoErrs))
		}
		return &wrapped{msg: msg, err: err}
	}
	if !req.DryRun {
		if errs := r.ledger.save(); len(errs) > 0 {
			return join(errs)
		}
		if err := sys.Store.Save(newRec); err != nil {
			return err
		}
	}
	if !l.changed {
		l.note("%s: %d tunnel(s) already up", req.Iface, len(want))
	}
	return nil
}

type wrapped struct {
	msg string
	err error
}

func (w *wrapped) Error() string { return w.msg }
func (w *wrapped) Unwrap() error { return w.err }

func restoreRecord(underlay string, rec *state.Record) *state.Record {
	if rec == nil {
		return &state.Record{Underlay: underlay}
	}
	return rec
}

func modules(ts []plan.Tunnel) []string {
	set := map[string]bool{}
	for _, t := range ts {
		set[rtnl.Module(t.Link.Mode)] = true
	}
	var out []string
	for m := range set {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// precheck refuses, before any change, plans that would touch something
// gre-hook does not own.
func precheck(underlay string, want []plan.Tunnel, s *snapshot, rec *state.Record) error {
	for _, t := range want {
		if l, ok := s.links[t.Link.Name]; ok && l.Alias != t.Link.Alias {
			if strings.HasPrefix(l.Alias, plan.AliasPrefix) {
				return fmt.Errorf("tunnel %q: link %s belongs to gre-hook's tunnels on %s; run `gre-hook --iface %s --phase down` first",
					t.Link.Name, l.Name, strings.TrimPrefix(l.Alias, plan.AliasPrefix), strings.TrimPrefix(l.Alias, plan.AliasPrefix))
			}
			return fmt.Errorf("tunnel %q: a link named %s already exists (kind %s, index %d) and gre-hook did not create it; rename the tunnel or remove that link",
				t.Link.Name, l.Name, kindOf(l), l.Index)
		}
		for _, r := range t.Routes {
			if f := findRoute(s.routes, r, false); f != nil {
				return fmt.Errorf("tunnel %q: route %s%s: another route with that destination, table and metric exists (via %s dev %s, proto %d) and gre-hook did not create it",
					t.Link.Name, r.Dst, tableSuffix(r.Table), f.Gw, f.Dev, f.Protocol)
			}
		}
	}
	return nil
}

func kindOf(l rtnl.Link) string {
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

// findRoute returns the route with r's key (destination, table, metric)
// that is gre-hook's (ours) or someone else's (!ours), or nil.
func findRoute(routes map[int][]rtnl.Route, r plan.Route, ours bool) *rtnl.Route {
	for _, have := range routes[familyOf(r.Dst.Addr())] {
		if have.Dst == r.Dst && have.Table == r.Table && have.Metric == r.Metric && (have.Protocol == plan.RouteProtocol) == ours {
			h := have
			return &h
		}
	}
	return nil
}

// merged returns the record for the planned state, keeping what the old
// record remembers about replaced default routes.
func merged(underlay string, old *state.Record, want []plan.Tunnel) *state.Record {
	rec := &state.Record{Version: state.Version, Underlay: underlay}
	for _, t := range want {
		e := state.Tunnel{Name: t.Link.Name, Down: t.Down, Local: t.Link.Local, Remote: t.Link.Remote, RemoteName: t.RemoteName}
		if t.Pin != nil {
			p := state.FromPlan(*t.Pin, 0)
			e.Pin = &p
		}
		for _, d := range t.Defaults {
			e.Defaults = append(e.Defaults, state.FromPlan(d, 0))
		}
		if prev := old.Find(t.Link.Name); prev != nil && len(t.Defaults) > 0 {
			e.Replaced = prev.Replaced
			e.Seq = prev.Seq
			e.Displaced = prev.Displaced
		}
		for _, m := range t.MSS {
			e.MSS = append(e.MSS, m.Family)
		}
		rec.Tunnels = append(rec.Tunnels, e)
	}
	return rec
}

// union returns a record listing every tunnel of a and b, b's entry
// winning, used as the intent written before changes.
func union(a, b *state.Record) *state.Record {
	out := &state.Record{Version: state.Version, Underlay: b.Underlay}
	out.Tunnels = append(out.Tunnels, b.Tunnels...)
	if a != nil {
		for _, t := range a.Tunnels {
			if b.Find(t.Name) == nil {
				out.Tunnels = append(out.Tunnels, t)
			}
		}
	}
	return out
}

// runner applies a plan, recording an undo for each change.
type runner struct {
	ctx  context.Context
	req  Request
	sys  *System
	l    *logger
	snap *snapshot
	tx   *transaction
	// changes counts the changes made, to tell which tunnels this run
	// touched.
	changes int
	// checkpoint saves the record as it stands, before a change that only
	// the record can undo.
	checkpoint func() error
	// ledger is every underlay's record of default routes.
	ledger *ledger
	// unlisted names stale links that no record lists.
	unlisted map[string]bool
}

// do logs cmd, runs fn unless this is a dry run, and records its undo.
// also are more commands that fn carries out, printed with cmd.
func (r *runner) do(cmd string, fn func() error, undoCmd string, undoFn func() error, also ...string) error {
	if err := r.ctx.Err(); err != nil {
		return fmt.Errorf("interrupted before %q: %w", cmd, r.ctx.Err())
	}
	r.l.change(append([]string{cmd}, also...)...)
	r.changes++
	if r.req.DryRun {
		return nil
	}
	if err := fn(); err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	if undoFn != nil {
		r.tx.push(undoCmd, undoFn)
	}
	return nil
}

func (r *runner) apply(want []plan.Tunnel, newRec *state.Record, tables map[int]mss.Backend, oldRec *state.Record) error {
	touched := map[string]bool{}
	for i := range want {
		t := &want[i]
		before := r.changes
		if err := r.ensureLink(t); err != nil {
			return fmt.Errorf("tunnel %q: %w", t.Link.Name, err)
		}
		if err := r.ensureRoutes(t, newRec.Find(t.Link.Name), oldRec.Find(t.Link.Name)); err != nil {
			return fmt.Errorf("tunnel %q: %w", t.Link.Name, err)
		}
		touched[t.Link.Name] = r.changes > before
	}
	if err := r.reflect(want); err != nil {
		return err
	}

	// MSS rules for every tunnel of this underlay, in one write per family.
	prefix := plan.Comment(r.req.Iface, "")
	mine := func(c string) bool { return strings.HasPrefix(c, prefix) }
	fams := make([]int, 0, len(tables))
	for f := range tables {
		fams = append(fams, f)
	}
	sort.Ints(fams)
	for _, f := range fams {
		var rules [][]string
		for _, t := range want {
			for _, m := range t.MSS {
				if m.Family == f {
					rules = append(rules, plan.RuleSpec(m))
				}
			}
		}
		if err := r.ctx.Err(); err != nil {
			return fmt.Errorf("interrupted before the MSS rules: %w", r.ctx.Err())
		}
		b := tables[f]
		if r.req.DryRun {
			b = dryTables{b, r.l}
		}
		prev, err := mss.Sync(b, mine, rules, r.l.change)
		if err != nil {
			return err
		}
		if !r.req.DryRun {
			r.tx.push("", func() error {
				_, err := mss.Sync(b, mine, prev, r.l.change)
				return err
			})
		}
	}

	// Tunnels gre-hook made earlier on this underlay that the config no
	// longer has: their rules went with the write above; now the rest.
	keep := map[string]bool{}
	for _, t := range want {
		keep[t.Link.Name] = true
	}
	var stale []state.Tunnel
	if oldRec != nil {
		for _, t := range oldRec.Tunnels {
			if !keep[t.Name] {
				stale = append(stale, t)
			}
		}
	}
	for _, l := range r.snap.links {
		if l.Alias == plan.Alias(r.req.Iface) && !keep[l.Name] && oldRec.Find(l.Name) == nil {
			stale = append(stale, state.Tunnel{Name: l.Name})
			r.unlisted[l.Name] = true
		}
	}

	// The up_command tells a daemon about a new or changed interface; a
	// tunnel this run did not touch needs no news.
	for _, t := range want {
		if len(t.Up) == 0 || !touched[t.Link.Name] {
			continue
		}
		t := t
		if err := r.do(strings.Join(t.Up, " "), func() error {
			return r.sys.Command(r.ctx, t.Up, commandEnv(t.Link.Name, r.req.Iface, PhaseUp))
		}, "", nil); err != nil {
			return fmt.Errorf("tunnel %q: up_command: %w", t.Link.Name, err)
		}
	}
	if len(stale) > 0 {
		sort.Slice(stale, func(i, j int) bool { return stale[i].Name < stale[j].Name })
		td := r.teardown()
		td.runDown(stale)
		if errs := td.tunnels(stale); len(errs) > 0 {
			// The new tunnels are up; what is left of the old ones stays in
			// the record for the next down or gc.
			for _, t := range stale {
				newRec.Tunnels = append(newRec.Tunnels, t)
			}
			r.l.warn("removing tunnels no longer configured on %s: %v", r.req.Iface, join(errs))
		}
	}
	return nil
}

// teardown removes things for this run: it shares the run's kernel
// snapshot and its view of the default routes.
func (r *runner) teardown() *teardown {
	return &teardown{sys: r.sys, l: r.l, dry: r.req.DryRun, underlay: r.req.Iface, links: r.snap.links, routes: r.snap.routes,
		ledger: r.ledger, unlisted: r.unlisted}
}

func commandEnv(tunnel, underlay string, phase Phase) []string {
	return []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"GRE_HOOK_TUNNEL=" + tunnel,
		"GRE_HOOK_UNDERLAY=" + underlay,
		"GRE_HOOK_PHASE=" + string(phase),
	}
}

// dryTables reads through to the real backend but writes nothing. A dry
// run that cannot read the rules (no root, or an iptables that cannot see
// the mangle table) plans as if there were none, and says so.
type dryTables struct {
	mss.Backend
	l *logger
}

func (d dryTables) List(table, chain string) ([]string, bool, error) {
	lines, exists, err := d.Backend.List(table, chain)
	if err != nil {
		d.l.warn("cannot read the current rules (%s); planning as if there were none", strings.TrimSpace(err.Error()))
		return nil, false, nil
	}
	return lines, exists, nil
}

func (d dryTables) JumpExists() (bool, error) {
	ok, err := d.Backend.JumpExists()
	if err != nil {
		return false, nil
	}
	return ok, nil
}

func (dryTables) Restore(string) error { return nil }

func linkMatches(have rtnl.Link, want plan.Link) bool {
	return have.GRE && have.Kind == string(want.Mode) && have.Local == want.Local && have.Remote == want.Remote &&
		have.TTL == want.TTL && have.TOS == want.TOS && have.PMTUDisc == want.PMTUDisc &&
		have.IKey == want.IKey && have.OKey == want.OKey
}

func (r *runner) ensureLink(t *plan.Tunnel) error {
	n := r.sys.Net
	want := t.Link
	have, exists := r.snap.links[want.Name]
	if exists && !linkMatches(have, want) {
		// Ours (precheck saw to that) but with other tunnel attributes:
		// the config changed since it was made. Recreate it.
		old := have
		oldAddrs := r.snap.addrs[old.Index]
		oldRoutes := r.snap.routesVia(want.Name)
		if err := r.do(plan.DelLinkCmd(want.Name), func() error { return n.DelLink(want.Name) },
			"recreate "+want.Name+" as it was", func() error { return recreate(n, old, oldAddrs, oldRoutes) }); err != nil {
			return err
		}
		// The kernel deleted the link's routes with it; the snapshot must
		// not offer them to be deleted (and put back, on a link whose
		// addresses no longer reach their gateways) again.
		r.snap.dropRoutesVia(want.Name)
		exists = false
	}
	if !exists {
		// AddLink sets these too; they are printed for the reader.
		also := []string{plan.AliasCmd(want)}
		if want.Multicast {
			also = append(also, plan.MulticastCmd(want))
		}
		also = append(also, plan.MTUCmd(want))
		if err := r.do(plan.AddLinkCmd(want), func() error { return r.addLink(want) },
			plan.DelLinkCmd(want.Name), func() error { return n.DelLink(want.Name) }, also...); err != nil {
			return err
		}
		have = rtnl.Link{Name: want.Name, MTU: want.MTU, Multicast: want.Multicast}
	} else {
		if have.Multicast != want.Multicast {
			oldM := have.Multicast
			if err := r.do(plan.MulticastCmd(want), func() error { return n.SetMulticast(want.Name, want.Multicast) },
				"", func() error { return n.SetMulticast(want.Name, oldM) }); err != nil {
				return err
			}
		}
		if have.MTU != want.MTU {
			oldMTU := have.MTU
			if err := r.do(plan.MTUCmd(want), func() error { return n.SetMTU(want.Name, want.MTU) },
				"", func() error { return n.SetMTU(want.Name, oldMTU) }); err != nil {
				return err
			}
		}
	}

	// Addresses: exactly the configured ones, on a link that is ours.
	var present []rtnl.Addr
	if exists {
		present = r.snap.addrs[have.Index]
	}
	for _, a := range t.Addrs {
		a := a
		if hasAddr(present, a.Prefix) {
			continue
		}
		if err := r.do(plan.AddAddrCmd(want.Name, a), func() error { return n.AddAddr(want.Name, a) },
			plan.DelAddrCmd(want.Name, a), func() error { return n.DelAddr(want.Name, a.Prefix) }); err != nil {
			return err
		}
	}
	for _, p := range present {
		if p.Prefix.Addr().IsLinkLocalUnicast() || wantsAddr(t.Addrs, p.Prefix) {
			continue
		}
		p := p
		pa := plan.Addr{Prefix: p.Prefix, Broadcast: p.Broadcast}
		if err := r.do(plan.DelAddrCmd(want.Name, pa), func() error { return n.DelAddr(want.Name, p.Prefix) },
			plan.AddAddrCmd(want.Name, pa), func() error { return n.AddAddr(want.Name, pa) }); err != nil {
			return err
		}
	}
	if !exists || !have.Up {
		if err := r.do(plan.UpCmd(want.Name), func() error { return n.SetUp(want.Name) }, "", nil); err != nil {
			return err
		}
	}
	return nil
}

// addLink creates the link, loading the GRE module on the way if the
// kernel did not do it by itself.
func (r *runner) addLink(l plan.Link) error {
	err := r.sys.Net.AddLink(l)
	if errors.Is(err, unix.EOPNOTSUPP) {
		if merr := r.sys.LoadModule(rtnl.Module(l.Mode)); merr != nil {
			return merr
		}
		err = r.sys.Net.AddLink(l)
	}
	if errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("%w (%s)", err, r.explainExists(l))
	}
	return err
}

// explainExists says why the kernel refused a new tunnel with EEXIST when
// no link has its name: another tunnel, perhaps the kernel's fallback
// device, already has the same local, remote and key.
func (r *runner) explainExists(l plan.Link) string {
	links, err := r.sys.Net.Links()
	if err != nil {
		return "the kernel already has a tunnel with these parameters"
	}
	for _, o := range links {
		if o.GRE && o.Name != l.Name && o.Local == l.Local && o.Remote == l.Remote && o.IKey == l.IKey && o.Kind == string(l.Mode) {
			return fmt.Sprintf("tunnel %s already uses local %s remote %s key %d", o.Name, l.Local, l.Remote, l.IKey)
		}
		if o.Name == l.Name {
			return fmt.Sprintf("a link named %s appeared meanwhile", l.Name)
		}
	}
	return fmt.Sprintf("another tunnel already uses local %s remote %s key %d", l.Local, l.Remote, l.IKey)
}

// routesVia returns the routes through dev that its addresses do not
// bring back by themselves.
func (s *snapshot) routesVia(dev string) []rtnl.Route {
	var out []rtnl.Route
	for _, f := range []int{4, 6} {
		for _, r := range s.routes[f] {
			if r.Dev == dev && r.Protocol != unix.RTPROT_KERNEL {
				out = append(out, r)
			}
		}
	}
	return out
}

func (s *snapshot) dropRoutesVia(dev string) {
	for f, rs := range s.routes {
		var keep []rtnl.Route
		for _, r := range rs {
			if r.Dev != dev {
				keep = append(keep, r)
			}
		}
		s.routes[f] = keep
	}
}

// recreate puts back a link deleted to be recreated with new attributes,
// with its addresses and the routes that went with it.
func recreate(n Net, old rtnl.Link, addrs []rtnl.Addr, routes []rtnl.Route) error {
	l := plan.Link{Name: old.Name, Mode: config.Mode(old.Kind), Local: old.Local, Remote: old.Remote, TTL: old.TTL, TOS: old.TOS,
		PMTUDisc: old.PMTUDisc, IKey: old.IKey, OKey: old.OKey, MTU: old.MTU, Multicast: old.Multicast, Alias: old.Alias}
	if err := n.AddLink(l); err != nil {
		return err
	}
	for _, a := range addrs {
		if a.Prefix.Addr().IsLinkLocalUnicast() {
			continue
		}
		if err := n.AddAddr(old.Name, plan.Addr{Prefix: a.Prefix, Broadcast: a.Broadcast}); err != nil {
			return err
		}
	}
	if !old.Up {
		return nil
	}
	if err := n.SetUp(old.Name); err != nil {
		return err
	}
	for _, r := range routes {
		if err := n.ReplaceRoute(r.Route, r.Protocol); err != nil {
			return err
		}
	}
	return nil
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

func (r *runner) ensureRoutes(t *plan.Tunnel, rec, old *state.Tunnel) error {
	n := r.sys.Net
	replace := func(want plan.Route) error {
		prev := findRoute(r.snap.routes, want, true)
		if prev != nil && prev.Gw == want.Gw && prev.Dev == want.Dev {
			return nil
		}
		var undoFn func() error
		undoCmd := plan.DelRouteCmd(want)
		if prev != nil {
			p := prev.Route
			undoCmd = plan.RestoreRouteCmd(p, plan.RouteProtocol)
			undoFn = func() error { return n.ReplaceRoute(p, plan.RouteProtocol) }
		} else {
			undoFn = func() error { return n.DelRoute(want, plan.RouteProtocol) }
		}
		return r.do(plan.ReplaceRouteCmd(want), func() error { return n.ReplaceRoute(want, plan.RouteProtocol) }, undoCmd, undoFn)
	}

	for _, rt := range t.Routes {
		if err := replace(rt); err != nil {
			return err
		}
	}
	if t.Pin != nil && findRoute(r.snap.routes, *t.Pin, false) == nil {
		if err := replace(*t.Pin); err != nil {
			return err
		}
	} else if t.Pin != nil {
		// Someone already routes the remote explicitly; use theirs.
		rec.Pin = nil
	}
	for _, d := range t.Defaults {
		d := d
		if have := findRoute(r.snap.routes, d, true); have != nil && have.Gw == d.Gw && have.Dev == d.Dev {
			continue
		}
		cur := routeAt(r.snap.routes, d)
		if cur != nil && old != nil && routeAtKey(old.Defaults, state.FromPlan(d, 0)) != nil && displaced(cur, rec) {
			// This tunnel held the default route, and since then another
			// tunnel took it over or the admin set one by hand. A re-run of
			// up (ifreload) must not take it back: that is for a new up.
			r.l.note("tunnel %q: the default route is %s now, set after this tunnel's; leaving it", t.Link.Name, describeRoute(cur.Route, cur.Protocol))
			continue
		}
		if r.ledger.setByAdmin(old, d, cur) {
			r.l.note("tunnel %q: the default route is %s now, set while the peer was dead; leaving it", t.Link.Name, describeRoute(cur.Route, cur.Protocol))
			continue
		}
		rec.Seq = r.ledger.nextSeq()
		// Remember the default route that is there now, to put it back at
		// teardown, unless an earlier run already did. Another tunnel's
		// default is not remembered here: that tunnel remembers what it
		// replaced, and the successor rule (defaults.go) brings it back.
		if cur != nil && cur.Protocol != plan.RouteProtocol {
			if routeAtKey(rec.Replaced, state.FromPlan(cur.Route, 0)) == nil {
				rec.Replaced = append(rec.Replaced, state.FromPlan(cur.Route, cur.Protocol))
			}
			// Tunnels whose default this route overrode are out of the
			// running: this one's teardown puts back this route, not theirs.
			r.ledger.displaceOthers(state.FromPlan(d, 0), t.Link.Name)
			// Only the record remembers the route about to be replaced:
			// write it down first.
			if err := r.checkpoint(); err != nil {
				return err
			}
			prev := cur.Route
			proto := cur.Protocol
			if err := r.do(plan.ReplaceRouteCmd(d), func() error { return n.ReplaceRoute(d, plan.RouteProtocol) },
				plan.RestoreRouteCmd(prev, proto), func() error { return n.ReplaceRoute(prev, proto) }); err != nil {
				return err
			}
			continue
		}
		if err := r.checkpoint(); err != nil {
			return err
		}
		if err := replace(d); err != nil {
			return err
		}
	}
	return r.dropStaleRoutes(t, old)
}

// dropStaleRoutes removes routes an earlier run installed for this tunnel
// that the config no longer asks for, and puts back a default route it no
// longer replaces.
func (r *runner) dropStaleRoutes(t *plan.Tunnel, old *state.Tunnel) error {
	n := r.sys.Net
	if old != nil && len(t.Defaults) == 0 && len(old.Defaults) > 0 {
		// default_route was turned off: hand the default route on as a
		// teardown would, while the tunnel itself stays.
		if errs := r.teardown().releaseDefaults(old, old.Defaults, map[string]bool{t.Link.Name: true}, false); len(errs) > 0 {
			return join(errs)
		}
	}
	if old != nil && old.Pin != nil && (t.Pin == nil || t.Pin.Dst != old.Pin.Dst) {
		pin := old.Pin.Plan()
		if err := r.do(plan.DelRouteCmd(pin), func() error { return n.DelRoute(pin, plan.RouteProtocol) },
			plan.ReplaceRouteCmd(pin), func() error { return n.ReplaceRoute(pin, plan.RouteProtocol) }); err != nil {
			return err
		}
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
		for _, have := range r.snap.routes[f] {
			if have.Protocol != plan.RouteProtocol || have.Dev != t.Link.Name || wanted(have) {
				continue
			}
			p := have.Route
			if err := r.do(plan.DelRouteCmd(p), func() error { return n.DelRoute(p, plan.RouteProtocol) },
				plan.ReplaceRouteCmd(p), func() error { return n.ReplaceRoute(p, plan.RouteProtocol) }); err != nil {
				return err
			}
		}
	}
	return nil
}

// displaced reports whether cur, the default route in force where tunnel
// t held one, was set by someone else since: another tunnel's, or one
// that is not the route t replaced (the admin's). The route t replaced
// is there when an earlier run stopped before its replace.
func displaced(cur *rtnl.Route, t *state.Tunnel) bool {
	if cur.Protocol == plan.RouteProtocol {
		return true
	}
	rep := routeAtKey(t.Replaced, state.FromPlan(cur.Route, 0))
	return rep == nil || rep.Gw != cur.Gw || rep.Dev != cur.Dev
}
