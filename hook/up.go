package hook

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/gre-hook/gre-hook/hook/config"
	"github.com/gre-hook/gre-hook/hook/mss"
	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/state"
)

// up brings up the tunnels of an underlay: config -> plan -> diff ->
// apply -> record. The plan is what the config wants (package plan), the
// diff the steps from the kernel as it is to the plan (diff.go), apply
// runs them or undoes them all (apply.go), and the record remembers what
// the run made (record.go).
func up(ctx context.Context, req Request, cfg *config.Config, sys *System, l *logger) error {
	tunnels := cfg.For(req.Iface)
	if len(tunnels) == 0 && !sys.Store.Exists(req.Iface) {
		l.note("no tunnels on %s", req.Iface)
		return nil
	}
	resolved := req.resolved
	if !req.locked {
		resolved = resolveRemotes(ctx, sys, tunnels)
	}
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
	if req.locked {
		resolved = withRecorded(resolved, tunnels, rec)
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
	case !u.Up:
		l.warn("underlay %s is down, so a real up would fail now (\"bring it up first\"); planning as if it were up", req.Iface)
	}
	tunnels = autoLocals(tunnels, snap, req.Iface, rec)
	defaults := involvesDefaults(tunnels, rec)
	// Every record: the policy is the router's, and a change of it moves
	// every underlay (policymove.go).
	others, unreadable := othersOf(sys.Store, req.Iface)
	choice := choosePolicy(policyOf(cfg), rec, others, unreadable, snap)
	pol := choice.use
	if choice.refuse != "" {
		return fmt.Errorf("bringing up tunnels on %s: %s", req.Iface, choice.refuse)
	}
	if choice.why != "" {
		l.warn("%s", choice.why)
	}
	forgetUnwatched(tunnels, rec)
	want, err := plan.Up(tunnels, u, plan.Options{Policy: pol, Metrics: defaultMetrics(cfg, tunnels, rec, others, snap, pol)})
	if err != nil {
		return fmt.Errorf("bringing up tunnels on %s: %w", req.Iface, err)
	}
	if err := precheck(want, snap); err != nil {
		return fmt.Errorf("bringing up tunnels on %s: %w", req.Iface, err)
	}
	for _, c := range tunnels {
		if msg := absentLocal(snap, c); msg != "" {
			l.warn("tunnel %q: %s", c.Name, msg)
		}
	}
	// The record lists what each tunnel has when its peer is alive; a dead
	// one's routes are then withdrawn from the plan.
	newRec := merged(req.Iface, rec, want)
	newRec.Policy = &pol
	keepLiveness(newRec, rec)
	want = withdrawDead(want, rec)
	var mv *move
	if choice.moving {
		rules, err := readRules(sys.Net)
		if err != nil {
			return fmt.Errorf("bringing up tunnels on %s: %w", req.Iface, err)
		}
		if mv, err = planMove(pol, snap, rules, needsRules(others, map[string]*state.Record{req.Iface: newRec})); err != nil {
			return fmt.Errorf("bringing up tunnels on %s: %w", req.Iface, err)
		}
	}
	if err := readSysctls(sys.Sysctl, want, snap); err != nil {
		return fmt.Errorf("bringing up tunnels on %s: %w", req.Iface, err)
	}

	// Everything that can be checked without changing anything has been;
	// what follows needs the tools to be there.
	if !req.DryRun {
		for _, m := range modules(want) {
			if err := sys.LoadModule(m); err != nil {
				return fmt.Errorf("bringing up tunnels on %s: %w", req.Iface, err)
			}
		}
	} else if err := modulesMissing(sys, want); err != nil {
		l.warn("%v; a real up would fail", err)
	}
	tables := map[int]mss.Backend{}
	for f, chains := range ruleChains(want, rec) {
		b, err := sys.Tables(f)
		if err != nil {
			return fmt.Errorf("bringing up tunnels on %s: %w", req.Iface, err)
		}
		// Read now, in the background, and used once the links are made.
		tables[f] = newReadAhead(b, chains)
	}

	newRec.Tunnels = append(newRec.Tunnels, unresolved...)
	newRec.Source = src
	newRec.Insecure = req.AllowInsecure
	switch {
	case mv != nil && req.DryRun:
		l.change("# policy routing moves, on every underlay, from " + describeFrom(choice, snap) + " to " + pol.String())
	case mv != nil:
		l.note("policy routing moves, on every underlay, from %s to %s", describeFrom(choice, snap), pol)
	case req.DryRun && defaults:
		l.change("# policy routing: " + pol.String())
	}
	if mv != nil {
		warnOtherSources(req, cfg, others, pol, l)
	}
	lg := newLedger(sys.Store, req.Iface, rec)
	lg.setOwn(newRec)
	x := &executor{ctx: ctx, sys: sys, l: l, dry: req.DryRun, underlay: req.Iface, snap: snap, tables: tables,
		newRec: newRec, ledger: lg, unlisted: map[string]bool{}, policy: pol, move: mv, defaults: defaults, others: others, unreadable: unreadable}
	x.checkpoint = func() error {
		if req.DryRun {
			return nil
		}
		// A superset of what this run may create, so that a run killed
		// midway can still be torn down; with a move, of every record.
		cp := union(rec, newRec)
		if mv != nil {
			for _, u := range sortedKeys(others) {
				if err := sys.Store.Save(movedRecord(others[u], pol, true)); err != nil {
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
	err = apply(x, want, rec)
	if err != nil {
		if req.DryRun {
			return err
		}
		undoErrs := x.rollback()
		// A complete rollback put the kernel back as the old record
		// describes it. An incomplete one may have left a replaced
		// default route out of the kernel, and only the new record
		// remembers it: keep both.
		back := restoreRecord(req.Iface, rec)
		if len(undoErrs) > 0 {
			back = union(rec, newRec)
		} else if mv != nil {
			// The other records as they were: the move is undone.
			for _, u := range sortedKeys(others) {
				if serr := sys.Store.Save(others[u]); serr != nil {
					undoErrs = append(undoErrs, serr)
				}
			}
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
		if errs := lg.save(); len(errs) > 0 {
			return join(errs)
		}
		if mv != nil {
			// Read again: the ledger may have saved some of them.
			if errs := saveMoved(sys.Store, sortedKeys(others), pol); len(errs) > 0 {
				return fmt.Errorf("bringing up tunnels on %s: every underlay is moved to %s, but: %w", req.Iface, pol, join(errs))
			}
		}
		if len(choice.mend) > 0 {
			// The kernel is in pol already: only the records change.
			l.note("the records of %s said another policy routing than the kernel's, %s; rewritten", strings.Join(choice.mend, ", "), pol)
			if errs := saveMoved(sys.Store, choice.mend, pol); len(errs) > 0 {
				return fmt.Errorf("bringing up tunnels on %s: %w", req.Iface, join(errs))
			}
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
