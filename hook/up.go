package hook

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/gre-hook/gre-hook/hook/config"
	"github.com/gre-hook/gre-hook/hook/mss"
	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/resolve"
	"github.com/gre-hook/gre-hook/hook/state"
)

// up brings up the tunnels of an underlay: config -> plan -> diff ->
// apply -> record. The plan is what the config wants (package plan), the
// diff the steps from the kernel as it is to the plan (diff.go), apply
// runs them or undoes them all (apply.go), and the record remembers what
// the run made (record.go). upRun holds one run's state through its
// phases: plan, prepare, execute.
func up(ctx context.Context, req Request, cfg *config.Config, sys *System, l *logger) error {
	tunnels := cfg.For(req.Iface)
	if len(tunnels) == 0 && !sys.Store.Exists(req.Iface) {
		l.note("no tunnels on %s", req.Iface)
		return nil
	}
	// The names are looked up before the lock: a DNS server that does not
	// answer must not hold another underlay's ifup.
	resolved := resolveRemotes(ctx, sys, tunnels)
	rec, unlock, err := openRecord(req, sys, l, !req.DryRun, "bringing up")
	if err != nil {
		return err
	}
	defer unlock()
	return upLocked(ctx, req, cfg, sys, l, rec, resolved, false)
}

// upLocked is up under the run lock, with rec the underlay's record read
// under it and resolved the names looked up before it. With
// recordedNames (Reconcile), a name resolved lacks nothing: one not in
// resolved takes the record's address.
func upLocked(ctx context.Context, req Request, cfg *config.Config, sys *System, l *logger, rec *state.Record,
	resolved map[resolve.Query]resolve.Result, recordedNames bool) error {
	tunnels := cfg.For(req.Iface)
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
	if recordedNames {
		resolved = withRecorded(resolved, tunnels, rec)
	}
	r := &upRun{ctx: ctx, req: req, cfg: cfg, sys: sys, l: l, rec: rec, src: src}
	r.tunnels, r.unresolved = withRemotes(tunnels, resolved, rec, l)
	if err := r.plan(); err != nil {
		return err
	}
	if err := r.prepare(); err != nil {
		return err
	}
	return r.execute()
}

// upRun is one up, from its plan to its record.
type upRun struct {
	ctx context.Context
	req Request
	cfg *config.Config
	sys *System
	l   *logger
	// rec is the underlay's record as the run found it (nil if none), src
	// the config's source.
	rec *state.Record
	src string
	// tunnels are the config's tunnels with their remotes; unresolved
	// those whose name did not resolve.
	tunnels    []config.Tunnel
	unresolved []state.Tunnel

	snap     *snapshot
	defaults bool
	// others are the other underlays' records, unreadable those that
	// could not be read; choice is the policy the run applies.
	others     map[string]*state.Record
	unreadable string
	choice     policyChoice
	want       []plan.Tunnel
	newRec     *state.Record
	mv         *move
	tables     map[int]mss.Backend
}

// plan reads the kernel and decides: the policy, what the config wants
// of it, the record to write and, with a change of policy, the move.
// Nothing changes yet.
func (r *upRun) plan() error {
	req, sys, l := r.req, r.sys, r.l
	snap, err := takeSnapshot(sys.Net)
	if err != nil {
		return err
	}
	r.snap = snap
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
	case !u.Up:
		l.warn("underlay %s is down, so a real up would fail now (\"bring it up first\"); planning as if it were up", req.Iface)
	}
	r.tunnels = autoLocals(r.tunnels, snap, req.Iface, r.rec)
	r.defaults = involvesDefaults(r.tunnels, r.rec)
	// Every record: the policy is the router's, and a change of it moves
	// every underlay (policymove.go).
	r.others, r.unreadable = othersOf(sys.Store, req.Iface)
	r.choice = choosePolicy(policyOf(r.cfg), r.rec, r.others, r.unreadable, snap)
	pol := r.choice.use
	if r.choice.refuse != "" {
		return fmt.Errorf("bringing up tunnels on %s: %s", req.Iface, r.choice.refuse)
	}
	if r.choice.why != "" {
		l.warn("%s", r.choice.why)
	}
	forgetUnwatched(r.tunnels, r.rec)
	want, err := plan.Up(r.tunnels, u, plan.Options{Policy: pol, Metrics: defaultMetrics(r.cfg, r.tunnels, r.rec, r.others, snap, pol)})
	if err != nil {
		return fmt.Errorf("bringing up tunnels on %s: %w", req.Iface, err)
	}
	if err := precheck(want, snap); err != nil {
		return fmt.Errorf("bringing up tunnels on %s: %w", req.Iface, err)
	}
	for _, c := range r.tunnels {
		if msg := absentLocal(snap, c); msg != "" {
			l.warn("tunnel %q: %s", c.Name, msg)
		}
	}
	// The record lists what each tunnel has when its peer is alive; a dead
	// one's routes are then withdrawn from the plan.
	r.newRec = merged(req.Iface, r.rec, want)
	r.newRec.Policy = &pol
	keepLiveness(r.newRec, r.rec)
	r.want = withdrawDead(want, r.rec)
	if r.choice.moving {
		rules, err := readRules(sys.Net)
		if err != nil {
			return fmt.Errorf("bringing up tunnels on %s: %w", req.Iface, err)
		}
		if r.mv, err = planMove(pol, snap, rules, needsRules(r.others, map[string]*state.Record{req.Iface: r.newRec})); err != nil {
			return fmt.Errorf("bringing up tunnels on %s: %w", req.Iface, err)
		}
	}
	return nil
}

// prepare checks what can be checked without changing anything, then
// loads the modules and starts reading the iptables chains.
func (r *upRun) prepare() error {
	req, sys, l := r.req, r.sys, r.l
	if err := readSysctls(sys.Sysctl, r.want, r.snap); err != nil {
		return fmt.Errorf("bringing up tunnels on %s: %w", req.Iface, err)
	}
	// Everything that can be checked without changing anything has been;
	// what follows needs the tools to be there.
	if !req.DryRun {
		for _, m := range modules(r.want) {
			if err := sys.LoadModule(m); err != nil {
				return fmt.Errorf("bringing up tunnels on %s: %w", req.Iface, err)
			}
		}
	} else if err := modulesMissing(sys, r.want); err != nil {
		l.warn("%v; a real up would fail", err)
	}
	r.tables = map[int]mss.Backend{}
	for f, chains := range ruleChains(r.want, r.rec) {
		b, err := sys.Tables(f)
		if err != nil {
			return fmt.Errorf("bringing up tunnels on %s: %w", req.Iface, err)
		}
		// Read now, in the background, and used once the links are made.
		r.tables[f] = newReadAhead(b, chains)
	}
	return nil
}

// execute saves the run's intent, applies the plan, rolls it all back on
// a failure, and saves the records.
func (r *upRun) execute() error {
	req, sys, l, rec, newRec, mv, pol := r.req, r.sys, r.l, r.rec, r.newRec, r.mv, r.choice.use
	newRec.Tunnels = append(newRec.Tunnels, r.unresolved...)
	newRec.Source = r.src
	newRec.Insecure = req.AllowInsecure
	switch {
	case mv != nil && req.DryRun:
		l.change("# policy routing moves, on every underlay, from " + describeFrom(r.choice, r.snap) + " to " + pol.String())
	case mv != nil:
		l.note("policy routing moves, on every underlay, from %s to %s", describeFrom(r.choice, r.snap), pol)
	case req.DryRun && r.defaults:
		l.change("# policy routing: " + pol.String())
	}
	if req.DryRun && len(r.choice.mend) > 0 {
		l.change("# " + mendNote(r.choice.mend, pol))
	}
	if mv != nil {
		warnOtherSources(req, r.cfg, r.others, pol, l)
	}
	lg := newLedger(sys.Store, req.Iface, rec)
	lg.setOwn(newRec)
	x := &executor{ctx: r.ctx, sys: sys, l: l, dry: req.DryRun, underlay: req.Iface, snap: r.snap, tables: r.tables,
		newRec: newRec, ledger: lg, unlisted: map[string]bool{}, policy: pol, move: mv, defaults: r.defaults, others: r.others, unreadable: r.unreadable}
	x.checkpoint = func() error {
		if req.DryRun {
			return nil
		}
		// A superset of what this run may create, so that a run killed
		// midway can still be torn down; with a move, of every record.
		cp := union(rec, newRec)
		if mv != nil {
			for _, u := range sortedKeys(r.others) {
				if err := sys.Store.Save(movedRecord(r.others[u], pol, true)); err != nil {
					return err
				}
			}
			cp = withOwnedDefaults(cp, rec)
		}
		return sys.Store.Save(cp)
	}
	if err := x.checkpoint(); err != nil {
		return err
	}
	if err := apply(x, r.want, rec); err != nil {
		if req.DryRun {
			return err
		}
		return r.rollback(x, err)
	}
	if !req.DryRun {
		if err := r.commit(lg); err != nil {
			return err
		}
	}
	if !l.changed {
		l.note("%s: %d tunnel(s) already up", req.Iface, len(r.want))
	}
	return nil
}

// commit saves the records of a run that succeeded.
func (r *upRun) commit(lg *ledger) error {
	req, sys, l, mv, pol := r.req, r.sys, r.l, r.mv, r.choice.use
	if errs := lg.save(); len(errs) > 0 {
		return join(errs)
	}
	if mv != nil {
		// Read again: the ledger may have saved some of them.
		if errs := saveMoved(sys.Store, sortedKeys(r.others), pol); len(errs) > 0 {
			return fmt.Errorf("bringing up tunnels on %s: every underlay is moved to %s, but: %w", req.Iface, pol, join(errs))
		}
	}
	if err := sys.Store.Save(r.newRec); err != nil {
		return err
	}
	if len(r.choice.mend) > 0 {
		// The kernel is in pol already: only the records change.
		l.warn("%s", mendNote(r.choice.mend, pol))
		if errs := saveMoved(sys.Store, r.choice.mend, pol); len(errs) > 0 {
			return fmt.Errorf("bringing up tunnels on %s: its tunnels are up, but: %w", req.Iface, join(errs))
		}
	}
	return nil
}

// mendNote says that the records of mend are rewritten to pol, which the
// kernel is in.
func mendNote(mend []string, pol plan.Policy) string {
	return fmt.Sprintf("the records of %s said another policy routing than the kernel's, %s; they are rewritten to say so", strings.Join(mend, ", "), pol)
}

// rollback undoes a failed run and puts the records back as they were.
func (r *upRun) rollback(x *executor, err error) error {
	sys, rec := r.sys, r.rec
	undoErrs := x.rollback()
	// A complete rollback put the kernel back as the old record
	// describes it. An incomplete one may have left a replaced
	// default route out of the kernel, and only the new record
	// remembers it: keep both.
	back := restoreRecord(r.req.Iface, rec)
	if len(undoErrs) > 0 {
		back = union(rec, r.newRec)
	} else if r.mv != nil {
		// The other records as they were: the move is undone.
		for _, u := range sortedKeys(r.others) {
			if serr := sys.Store.Save(r.others[u]); serr != nil {
				undoErrs = append(undoErrs, serr)
			}
		}
	}
	if serr := sys.Store.Save(back); serr != nil {
		undoErrs = append(undoErrs, serr)
	}
	msg := fmt.Sprintf("bringing up tunnels on %s: %v; rolled back", r.req.Iface, err)
	if len(undoErrs) > 0 {
		msg = fmt.Sprintf("bringing up tunnels on %s: %v; rollback incomplete: %v", r.req.Iface, err, join(undoErrs))
	}
	return &wrapped{msg: msg, err: err}
}

// apply runs the diff of want against the kernel, in the order diff
// gives it. The links and routes go first, while the iptables rules are
// read in the background; then the rules, the up_commands, and last the
// removal of tunnels the config no longer has.
func apply(x *executor, want []plan.Tunnel, rec *state.Record) error {
	if x.move != nil {
		// The policy first, on every underlay; what follows sees the
		// kernel as the move leaves it.
		if err := x.run(x.move.steps); err != nil {
			return err
		}
		x.snap.links, x.snap.routes = x.move.links, x.move.routes
	}
	steps := diffTunnels(want, x.snap, rec)
	if err := x.run(steps); err != nil {
		return err
	}
	if x.defaults {
		// The tunnels' default routes are in gre-hook's table; now the rules
		// that select it, and then the previous release's main-table
		// default goes back: there is a default route at every moment.
		rules, err := readRules(x.sys.Net)
		if err != nil {
			return err
		}
		if x.dry && x.move != nil {
			rules = x.move.rules // as the move would leave them
		}
		need := needsRules(x.others, map[string]*state.Record{x.underlay: x.newRec})
		if x.unreadable != "" {
			x.l.warn("%s", keepRulesNote(x.unreadable))
		}
		if err := x.run(diffPolicy(x.policy, need, defaultFamilies(want), rules, x.unreadable != "")); err != nil {
			return err
		}
		if err := x.run(diffLegacy(want, rec)); err != nil {
			return err
		}
	}
	if err := x.run(diffSysctls(want, x.snap)); err != nil {
		return err
	}
	warnReflection(x.sys.Sysctl, want, x.l)
	chains, err := readChains(x.tables, ruleChains(want, rec), x.dry, x.l)
	if err != nil {
		return err
	}
	if err := x.run(diffRules(x.underlay, want, chains)); err != nil {
		return err
	}
	if err := x.run(diffCommands(x.underlay, want, touched(steps))); err != nil {
		return err
	}
	// Tunnels gre-hook made earlier on this underlay that the config no
	// longer has: their rules went with the write above; now the rest.
	stale, unlisted := staleTunnels(x.underlay, want, x.snap, rec)
	if len(stale) == 0 {
		return nil
	}
	x.unlisted = unlisted
	td := x.teardown()
	td.runDown(stale)
	if errs := td.tunnels(stale); len(errs) > 0 {
		// The new tunnels are up; what is left of the old ones stays in
		// the record for the next down or gc.
		// An unresolved entry is stale too (no plan has it), and this run
		// listed it already if it still waits: once is enough.
		for _, t := range stale {
			if prev := x.newRec.Find(t.Name); prev == nil {
				x.newRec.Tunnels = append(x.newRec.Tunnels, t)
			} else if prev.Unresolved && !t.Unresolved {
				// A tunnel that was up and now waits for its new name:
				// what is left of it in the kernel comes first.
				*prev = t
			}
		}
		x.l.warn("removing tunnels no longer configured on %s: %v", x.underlay, join(errs))
	}
	return nil
}

// readChains reads gre-hook's chains that chains names, in each family
// of tables. A dry run that cannot read them plans as if they were empty.
func readChains(tables map[int]mss.Backend, chains map[int][]mss.Chain, dry bool, l *logger) (map[int]mss.State, error) {
	out := map[int]mss.State{}
	for _, f := range []int{4, 6} {
		b, ok := tables[f]
		if !ok {
			continue
		}
		if dry {
			b = dryTables{b, l}
		}
		s, err := mss.Read(b, chains[f]...)
		if err != nil {
			return nil, err
		}
		out[f] = s
	}
	return out, nil
}

// involvesDefaults reports whether a run on tunnels, whose underlay's
// record is rec, may change default routes or gre-hook's rules.
func involvesDefaults(tunnels []config.Tunnel, rec *state.Record) bool {
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

type wrapped struct {
	msg string
	err error
}

func (w *wrapped) Error() string { return w.msg }
func (w *wrapped) Unwrap() error { return w.err }

func modules(ts []plan.Tunnel) []string {
	set := map[string]bool{}
	for _, t := range ts {
		set[module(t.Link.Mode)] = true
	}
	var out []string
	for m := range set {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}
