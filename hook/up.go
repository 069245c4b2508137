package hook

import (
	"context"
	"fmt"
	"strings"

	"github.com/gre-hook/gre-hook/hook/config"
	"github.com/gre-hook/gre-hook/hook/engine"
	"github.com/gre-hook/gre-hook/hook/mss"
	"github.com/gre-hook/gre-hook/hook/peer"
	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/resolve"
	"github.com/gre-hook/gre-hook/hook/state"
)

// up brings up the tunnels of an underlay: config -> plan -> diff ->
// apply -> record. The plan is what the config wants (package plan), the
// diff the steps from the kernel as it is to the plan (engine/diff.go),
// apply runs them or undoes them all (engine/apply.go), and the record
// remembers what the run made (engine/record.go). upRun holds one run's
// state through its phases: plan, prepare, execute.
func up(ctx context.Context, req Request, cfg *config.Config, sys *System, l *engine.Logger) error {
	tunnels := cfg.For(req.Iface)
	if len(tunnels) == 0 && !sys.Store.Exists(req.Iface) {
		l.Note("no tunnels on %s", req.Iface)
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
func upLocked(ctx context.Context, req Request, cfg *config.Config, sys *System, l *engine.Logger, rec *state.Record,
	resolved map[resolve.Query]resolve.Result, recordedNames bool) error {
	tunnels := cfg.For(req.Iface)
	src := sourceOf(req)
	if rec != nil && rec.Source != "" && rec.Source != src && !req.SwitchConfig {
		// Hooks run once per stanza, and a dual-stack underlay's inet6
		// stanza may name no config: its run must not undo the inet
		// stanza's tunnels as stale.
		say := l.Note
		if req.ByHand {
			say = l.Warn
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
	l   *engine.Logger
	// rec is the underlay's record as the run found it (nil if none), src
	// the config's source.
	rec *state.Record
	src string
	// tunnels are the config's tunnels with their remotes; unresolved
	// those whose name did not resolve.
	tunnels    []config.Tunnel
	unresolved []state.Tunnel

	snap     *engine.Snapshot
	defaults bool
	// others are the other underlays' records, unreadable those that
	// could not be read; choice is the policy the run applies.
	others     map[string]*state.Record
	unreadable string
	choice     engine.PolicyChoice
	want       []plan.Tunnel
	newRec     *state.Record
	mv         *engine.Move
	tables     map[int]mss.Backend
}

// plan reads the kernel and decides: the policy, what the config wants
// of it, the record to write and, with a change of policy, the move.
// Nothing changes yet.
func (r *upRun) plan() error {
	req, sys, l := r.req, r.sys, r.l
	snap, err := engine.TakeSnapshot(sys.Net)
	if err != nil {
		return err
	}
	r.snap = snap
	u, err := engine.UnderlayOf(snap, req.Iface)
	switch {
	case err != nil && req.DryRun:
		// Planning on a machine that lacks the underlay is still useful.
		l.Warn("underlay %s does not exist here; planning as if it were up with mtu 1500", req.Iface)
		u = plan.Underlay{Name: req.Iface, MTU: 1500, Up: true}
	case err != nil:
		return fmt.Errorf("bringing up tunnels on %s: %w", req.Iface, err)
	case !u.Up && !req.DryRun:
		return fmt.Errorf("bringing up tunnels on %s: the underlay is down; bring it up first", req.Iface)
	case !u.Up:
		l.Warn("underlay %s is down, so a real up would fail now (\"bring it up first\"); planning as if it were up", req.Iface)
	}
	r.tunnels = engine.AutoLocals(r.tunnels, snap, req.Iface, r.rec)
	r.defaults = engine.InvolvesDefaults(r.tunnels, r.rec)
	// Every record: the policy is the router's, and a change of it moves
	// every underlay (engine/policymove.go).
	r.others, r.unreadable = engine.OthersOf(sys.Store, req.Iface)
	r.choice = engine.ChoosePolicy(engine.PolicyOf(r.cfg), r.rec, r.others, r.unreadable, snap)
	pol := r.choice.Use
	if r.choice.Refuse != "" {
		return fmt.Errorf("bringing up tunnels on %s: %s", req.Iface, r.choice.Refuse)
	}
	if r.choice.Why != "" {
		l.Warn("%s", r.choice.Why)
	}
	peer.ForgetUnwatched(r.tunnels, r.rec)
	want, err := plan.Up(r.tunnels, u, plan.Options{Policy: pol, Metrics: engine.DefaultMetrics(r.cfg, r.tunnels, r.rec, r.others, snap, pol)})
	if err != nil {
		return fmt.Errorf("bringing up tunnels on %s: %w", req.Iface, err)
	}
	if err := engine.Precheck(want, snap); err != nil {
		return fmt.Errorf("bringing up tunnels on %s: %w", req.Iface, err)
	}
	for _, c := range r.tunnels {
		if msg := engine.AbsentLocal(snap, c); msg != "" {
			l.Warn("tunnel %q: %s", c.Name, msg)
		}
	}
	// The record lists what each tunnel has when its peer is alive; a dead
	// one's routes are then withdrawn from the plan.
	r.newRec = engine.Merged(req.Iface, r.rec, want)
	r.newRec.Policy = &pol
	peer.KeepLiveness(r.newRec, r.rec)
	r.want = peer.WithdrawDead(want, r.rec)
	if r.choice.Moving {
		rules, err := engine.ReadRules(sys.Net)
		if err != nil {
			return fmt.Errorf("bringing up tunnels on %s: %w", req.Iface, err)
		}
		if r.mv, err = engine.PlanMove(pol, snap, rules, engine.NeedsRules(r.others, map[string]*state.Record{req.Iface: r.newRec})); err != nil {
			return fmt.Errorf("bringing up tunnels on %s: %w", req.Iface, err)
		}
	}
	return nil
}

// prepare checks what can be checked without changing anything, then
// loads the modules and starts reading the iptables chains.
func (r *upRun) prepare() error {
	req, sys, l := r.req, r.sys, r.l
	if err := engine.ReadSysctls(sys.Sysctl, r.want, r.snap); err != nil {
		return fmt.Errorf("bringing up tunnels on %s: %w", req.Iface, err)
	}
	// Everything that can be checked without changing anything has been;
	// what follows needs the tools to be there.
	if !req.DryRun {
		for _, m := range engine.Modules(r.want) {
			if err := sys.LoadModule(m); err != nil {
				return fmt.Errorf("bringing up tunnels on %s: %w", req.Iface, err)
			}
		}
	} else if err := engine.ModulesMissing(sys, r.want); err != nil {
		l.Warn("%v; a real up would fail", err)
	}
	r.tables = map[int]mss.Backend{}
	for f, chains := range engine.RuleChains(r.want, r.rec) {
		b, err := sys.Tables(f)
		if err != nil {
			return fmt.Errorf("bringing up tunnels on %s: %w", req.Iface, err)
		}
		// Read now, in the background, and used once the links are made.
		r.tables[f] = engine.NewReadAhead(b, chains)
	}
	return nil
}

// execute saves the run's intent, applies the plan, rolls it all back on
// a failure, and saves the records.
func (r *upRun) execute() error {
	req, sys, l, rec, newRec, mv, pol := r.req, r.sys, r.l, r.rec, r.newRec, r.mv, r.choice.Use
	newRec.Tunnels = append(newRec.Tunnels, r.unresolved...)
	newRec.Source = r.src
	newRec.Insecure = req.AllowInsecure
	switch {
	case mv != nil && req.DryRun:
		l.Change("# policy routing moves, on every underlay, from " + engine.DescribeFrom(r.choice, r.snap) + " to " + pol.String())
	case mv != nil:
		l.Note("policy routing moves, on every underlay, from %s to %s", engine.DescribeFrom(r.choice, r.snap), pol)
	case req.DryRun && r.defaults:
		l.Change("# policy routing: " + pol.String())
	}
	if req.DryRun && len(r.choice.Mend) > 0 {
		l.Change("# " + mendNote(r.choice.Mend, pol))
	}
	if mv != nil {
		warnOtherSources(req, r.cfg, r.others, pol, l)
	}
	lg := engine.NewLedger(sys.Store, req.Iface, rec)
	lg.SetOwn(newRec)
	x := &engine.Executor{Ctx: r.ctx, Sys: sys, Log: l, Dry: req.DryRun, Underlay: req.Iface, Snap: r.snap, Tables: r.tables,
		NewRec: newRec, Ledger: lg, Unlisted: map[string]bool{}, Policy: pol, Move: mv, Defaults: r.defaults, Others: r.others, Unreadable: r.unreadable}
	x.Checkpoint = func() error {
		if req.DryRun {
			return nil
		}
		// A superset of what this run may create, so that a run killed
		// midway can still be torn down; with a move, of every record.
		cp := engine.Union(rec, newRec)
		if mv != nil {
			for _, u := range engine.SortedKeys(r.others) {
				if err := sys.Store.Save(engine.MovedRecord(r.others[u], pol, true)); err != nil {
					return err
				}
			}
			cp = engine.WithOwnedDefaults(cp, rec)
		}
		return sys.Store.Save(cp)
	}
	if err := x.Checkpoint(); err != nil {
		return err
	}
	if err := engine.Apply(x, r.want, rec); err != nil {
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
	if !l.Changed {
		l.Note("%s: %d tunnel(s) already up", req.Iface, len(r.want))
	}
	return nil
}

// commit saves the records of a run that succeeded.
func (r *upRun) commit(lg *engine.Ledger) error {
	req, sys, l, mv, pol := r.req, r.sys, r.l, r.mv, r.choice.Use
	if errs := lg.Save(); len(errs) > 0 {
		return engine.Join(errs)
	}
	if mv != nil {
		// Read again: the ledger may have saved some of them.
		if errs := engine.SaveMoved(sys.Store, engine.SortedKeys(r.others), pol); len(errs) > 0 {
			return fmt.Errorf("bringing up tunnels on %s: every underlay is moved to %s, but: %w", req.Iface, pol, engine.Join(errs))
		}
	}
	if err := sys.Store.Save(r.newRec); err != nil {
		return err
	}
	if len(r.choice.Mend) > 0 {
		// The kernel is in pol already: only the records change.
		l.Warn("%s", mendNote(r.choice.Mend, pol))
		if errs := engine.SaveMoved(sys.Store, r.choice.Mend, pol); len(errs) > 0 {
			return fmt.Errorf("bringing up tunnels on %s: its tunnels are up, but: %w", req.Iface, engine.Join(errs))
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
func (r *upRun) rollback(x *engine.Executor, err error) error {
	sys, rec := r.sys, r.rec
	undoErrs := x.Rollback()
	// A complete rollback put the kernel back as the old record
	// describes it. An incomplete one may have left a replaced
	// default route out of the kernel, and only the new record
	// remembers it: keep both.
	back := engine.RestoreRecord(r.req.Iface, rec)
	if len(undoErrs) > 0 {
		back = engine.Union(rec, r.newRec)
	} else if r.mv != nil {
		// The other records as they were: the move is undone.
		for _, u := range engine.SortedKeys(r.others) {
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
		msg = fmt.Sprintf("bringing up tunnels on %s: %v; rollback incomplete: %v", r.req.Iface, err, engine.Join(undoErrs))
	}
	return &wrapped{msg: msg, err: err}
}

type wrapped struct {
	msg string
	err error
}

func (w *wrapped) Error() string { return w.msg }
func (w *wrapped) Unwrap() error { return w.err }

// warnOtherSources warns, when a run moves the policy to pol, about the
// underlays whose tunnels came from another config asking for another:
// that config's next up moves the router back.
func warnOtherSources(req Request, cfg *config.Config, others map[string]*state.Record, pol plan.Policy, l *engine.Logger) {
	srcs := newSources(req, cfg)
	for _, u := range engine.SortedKeys(others) {
		rec := others[u]
		if rec.Source == "" || rec.Source == srcs.own {
			continue
		}
		c, err := srcs.forRecord(rec)
		if err != nil {
			l.Warn("the tunnels on %s came from %s, which cannot be read (%v): if its [policy] differs, its next up moves every underlay back", u, describeSource(rec.Source), err)
			continue
		}
		if p := engine.PolicyOf(c); p != pol {
			l.Warn("the tunnels on %s came from %s, whose policy routing is %s: "+
				"its next up moves every underlay back; give both configs the same [policy]", u, describeSource(rec.Source), p)
		}
	}
}
