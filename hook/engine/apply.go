package engine

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/gre-hook/gre-hook/hook/mss"
	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/rtnl"
	"github.com/gre-hook/gre-hook/hook/state"
)

// undo is the reverse of one applied step.
type undo struct {
	cmd string
	fn  func(x *Executor) error
}

// Executor applies the diff's steps in order, printing each as it goes,
// and keeps their undos so that a failed bring-up can put back the state
// it found. In a dry run it prints them and changes nothing.
type Executor struct {
	Ctx      context.Context
	Sys      *System
	Log      *Logger
	Dry      bool
	Underlay string
	// Snap is the run's kernel snapshot, shared with the teardown of
	// tunnels no longer configured.
	Snap *Snapshot
	// Tables are the iptables backends of the families with rules.
	Tables map[int]mss.Backend
	// NewRec is the record being built; checkpoint saves it as it stands
	// (with what the old record lists), before the first change.
	NewRec     *state.Record
	Checkpoint func() error
	// Ledger is every underlay's record of default routes.
	Ledger *Ledger
	// Unlisted names stale links that no record lists.
	Unlisted map[string]bool
	// Policy is the run's policy routing; defaults says the run may change
	// default routes or rules, and others is then every other record.
	Policy plan.Policy
	// Move is a change of policy, run before anything else; nil if none.
	Move     *Move
	Defaults bool
	Others   map[string]*state.Record
	// Unreadable names the other records that could not be read: no
	// rule is then deleted.
	Unreadable string
	undos      []undo
}

// run applies steps in order and stops at the first that fails. A run of
// two or more steps of one phase goes to the kernel together (runPhase),
// where the kernel makes the rest of the phase even when one fails, and
// each that it made is undone with the others.
func (x *Executor) run(steps []Step) error {
	for i := 0; i < len(steps); {
		j := i + 1
		for j < len(steps) && pipelined(&steps[j]) && steps[j].phase == steps[i].phase {
			j++
		}
		if x.Dry || !pipelined(&steps[i]) || j-i < 2 {
			if err := x.apply(&steps[i]); err != nil {
				return tunnelError(&steps[i], err)
			}
			i++
			continue
		}
		if err := x.runPhase(steps[i:j]); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// pipelined reports whether st can go to the kernel with others: it is
// one request of bringing a tunnel up, with nothing to do around it.
func pipelined(st *Step) bool {
	return st.op.Kind != rtnl.OpNone && st.phase != 0 && st.change != nil && st.prepare == nil && st.dropsRoutesVia == "" && !st.self
}

func tunnelError(st *Step, err error) error {
	if st.Tunnel != "" {
		return fmt.Errorf("tunnel %q: %w", st.Tunnel, err)
	}
	return err
}

// runPhase applies steps, all of one phase, as one pipeline (Net.Apply):
// their commands are printed, their requests go out together, and every
// one the kernel made gets its undo, in order, so that a rollback undoes
// exactly what was made. The error is the first step's that failed, as
// apply would give it, once all of them are accounted for.
func (x *Executor) runPhase(steps []Step) error {
	if err := x.Ctx.Err(); err != nil {
		return tunnelError(&steps[0], fmt.Errorf("interrupted before %q: %w", bareCmd(steps[0].Cmds[0]), err))
	}
	ops := make([]rtnl.Op, len(steps))
	for i := range steps {
		if steps[i].note != "" {
			x.Log.Note("%s", steps[i].note)
		}
		x.Log.Change(steps[i].Cmds...)
		ops[i] = steps[i].op
	}
	errs := x.Sys.Net.Apply(ops)
	var first error
	for i := range steps {
		st, err := &steps[i], errs[i]
		if st.made != nil {
			err = st.made(x, err)
		}
		if err := x.settle(st, err); err != nil && first == nil {
			first = tunnelError(st, err)
		}
	}
	return first
}

// settle is the end of a step whose change returned err: its undo kept
// when it was made, else the error, saying which command failed. A change
// the kernel got but never answered (rtnl.Unanswered), made or not, keeps
// its undo too: the rollback undoes it as if made (a route it replaced
// comes back), and Net's deletes take what is not there for done.
func (x *Executor) settle(st *Step, err error) error {
	if st.undo != nil && (err == nil || rtnl.IsUnanswered(err)) {
		x.undos = append(x.undos, undo{cmd: st.undoCmd, fn: st.undo})
	}
	if err == nil {
		return nil
	}
	if st.bare {
		return err
	}
	return fmt.Errorf("%s: %w", bareCmd(st.Cmds[0]), err)
}

func (x *Executor) apply(st *Step) error {
	if st.note != "" {
		x.Log.Note("%s", st.note)
	}
	if st.change == nil {
		return nil
	}
	if err := x.Ctx.Err(); err != nil {
		switch {
		case st.Tunnel == "":
			return fmt.Errorf("interrupted before the MSS rules: %w", err)
		case len(st.Cmds) == 0:
			return fmt.Errorf("interrupted: %w", err)
		}
		return fmt.Errorf("interrupted before %q: %w", bareCmd(st.Cmds[0]), err)
	}
	if st.prepare != nil {
		st.prepare(x)
	}
	if st.dropsRoutesVia != "" {
		x.Snap.Routes = withoutRoutesVia(x.Snap.Routes, st.dropsRoutesVia)
	}
	if st.self {
		return st.change(x)
	}
	x.Log.Change(st.Cmds...)
	if x.Dry {
		return nil
	}
	return x.settle(st, st.change(x))
}

// Rollback runs the undos in reverse and returns what it could not undo.
func (x *Executor) Rollback() []error {
	var errs []error
	for i := len(x.undos) - 1; i >= 0; i-- {
		u := x.undos[i]
		if u.cmd != "" {
			x.Log.Change(u.cmd)
		}
		if err := u.fn(x); err != nil {
			errs = append(errs, fmt.Errorf("undoing: %s: %w", u.cmd, err))
		}
	}
	return errs
}

// Teardown removes things for this run: it shares the run's kernel
// snapshot and its view of the default routes.
func (x *Executor) teardown() *Teardown {
	return &Teardown{Sys: x.Sys, Log: x.Log, Dry: x.Dry, Underlay: x.Underlay, Links: x.Snap.Links, Routes: x.Snap.Routes,
		Ledger: x.Ledger, Unlisted: x.Unlisted}
}

// addLink creates the link, loading the GRE module on the way if the
// kernel did not do it by itself.
func (x *Executor) addLink(l plan.Link) error {
	return x.linkMade(l, x.Sys.Net.AddLink(kernelLink(l)))
}

// linkMade is what the creation of l that returned err comes to: a kernel
// without the GRE module loaded gets it, and the creation again; a
// refusal for a twin says which tunnel it is.
func (x *Executor) linkMade(l plan.Link, err error) error {
	if errors.Is(err, unix.EOPNOTSUPP) {
		if merr := x.Sys.LoadModule(module(l.Mode)); merr != nil {
			return merr
		}
		err = x.Sys.Net.AddLink(kernelLink(l))
	}
	if errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("%w (%s)", err, explainExists(x.Sys.Net, l, false))
	}
	return err
}

// setTunnel changes the tunnel attributes of l's link in place.
func (x *Executor) setTunnel(l plan.Link) error {
	err := x.Sys.Net.SetTunnel(kernelLink(l))
	if errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("%w (%s)", err, explainExists(x.Sys.Net, l, true))
	}
	return err
}

// explainExists says why the kernel refused a new tunnel, or new
// attributes for one, with EEXIST when no other link has its name: another
// tunnel, perhaps the kernel's fallback device, already has the same
// local, remote and key. inPlace: l's link exists, and was to take them.
func explainExists(n Net, l plan.Link, inPlace bool) string {
	links, err := n.Links()
	if err != nil {
		return "the kernel already has a tunnel with these parameters"
	}
	for _, o := range links {
		if o.GRE && o.Name != l.Name && o.Local == l.Local && o.Remote == l.Remote && o.IKey == l.IKey && o.Kind == string(l.Mode) {
			return fmt.Sprintf("tunnel %s already uses local %s remote %s key %d", o.Name, l.Local, l.Remote, l.IKey)
		}
		if o.Name == l.Name && !inPlace {
			return fmt.Sprintf("a link named %s appeared meanwhile", l.Name)
		}
	}
	return fmt.Sprintf("another tunnel already uses local %s remote %s key %d", l.Local, l.Remote, l.IKey)
}

// recreate puts back a link deleted to be recreated with new attributes,
// with its addresses and the routes that went with it.
func recreate(n Net, old rtnl.Link, addrs []rtnl.Addr, routes []rtnl.Route) error {
	if err := n.AddLink(old); err != nil {
		return err
	}
	for _, a := range addrs {
		if a.Prefix.Addr().IsLinkLocalUnicast() {
			continue
		}
		if err := n.AddAddr(old.Name, rtnl.Addr{Prefix: a.Prefix, Broadcast: a.Broadcast}); err != nil {
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
		if err := n.ReplaceRoute(r); err != nil {
			return err
		}
	}
	return nil
}

func commandEnv(tunnel, underlay string, phase Phase) []string {
	return []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"GRE_HOOK_TUNNEL=" + tunnel,
		"GRE_HOOK_UNDERLAY=" + underlay,
		"GRE_HOOK_PHASE=" + string(phase),
	}
}

// Apply runs the diff of want against the kernel, in the order diff
// gives it. The links and routes go first, while the iptables rules are
// read in the background; then the rules, the up_commands, and last the
// removal of tunnels the config no longer has.
func Apply(x *Executor, want []plan.Tunnel, rec *state.Record) error {
	if x.Move != nil {
		// The policy first, on every underlay; what follows sees the
		// kernel as the move leaves it.
		if err := x.run(x.Move.steps); err != nil {
			return err
		}
		x.Snap.Links, x.Snap.Routes = x.Move.Links, x.Move.Routes
	}
	steps := diffTunnels(want, x.Snap, rec)
	if err := x.run(steps); err != nil {
		return err
	}
	if x.Defaults {
		// The tunnels' default routes are in gre-hook's table; now the rules
		// that select it, and then the previous release's main-table
		// default goes back: there is a default route at every moment.
		rules, err := ReadRules(x.Sys.Net)
		if err != nil {
			return err
		}
		if x.Dry && x.Move != nil {
			rules = x.Move.Rules // as the move would leave them
		}
		need := NeedsRules(x.Others, map[string]*state.Record{x.Underlay: x.NewRec})
		if x.Unreadable != "" {
			x.Log.Warn("%s", KeepRulesNote(x.Unreadable))
		}
		if err := x.run(DiffPolicy(x.Policy, need, DefaultFamilies(want), rules, x.Unreadable != "")); err != nil {
			return err
		}
		if err := x.run(DiffLegacy(want, rec)); err != nil {
			return err
		}
	}
	if err := x.run(diffSysctls(want, x.Snap)); err != nil {
		return err
	}
	warnReflection(x.Sys.Sysctl, want, x.Log)
	chains, err := readChains(x.Tables, RuleChains(want, rec), x.Dry, x.Log)
	if err != nil {
		return err
	}
	if err := x.run(diffRules(x.Underlay, want, chains)); err != nil {
		return err
	}
	if err := x.run(diffCommands(x.Underlay, want, touched(steps))); err != nil {
		return err
	}
	// Tunnels gre-hook made earlier on this underlay that the config no
	// longer has: their rules went with the write above; now the rest.
	stale, unlisted := staleTunnels(x.Underlay, want, x.Snap, rec)
	if len(stale) == 0 {
		return nil
	}
	x.Unlisted = unlisted
	td := x.teardown()
	td.RunDown(stale)
	if errs := td.Tunnels(stale); len(errs) > 0 {
		// The new tunnels are up; what is left of the old ones stays in
		// the record for the next down or gc.
		// An unresolved entry is stale too (no plan has it), and this run
		// listed it already if it still waits: once is enough.
		for _, t := range stale {
			if prev := x.NewRec.Find(t.Name); prev == nil {
				x.NewRec.Tunnels = append(x.NewRec.Tunnels, t)
			} else if prev.Unresolved && !t.Unresolved {
				// A tunnel that was up and now waits for its new name:
				// what is left of it in the kernel comes first.
				*prev = t
			}
		}
		x.Log.Warn("removing tunnels no longer configured on %s: %v", x.Underlay, Join(errs))
	}
	return nil
}
