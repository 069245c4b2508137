package hook

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
	fn  func(x *executor) error
}

// executor applies the diff's steps in order, printing each as it goes,
// and keeps their undos so that a failed bring-up can put back the state
// it found. In a dry run it prints them and changes nothing.
type executor struct {
	ctx      context.Context
	sys      *System
	l        *logger
	dry      bool
	underlay string
	// snap is the run's kernel snapshot, shared with the teardown of
	// tunnels no longer configured.
	snap *snapshot
	// tables are the iptables backends of the families with rules.
	tables map[int]mss.Backend
	// newRec is the record being built; checkpoint saves it as it stands
	// (with what the old record lists), before the first change.
	newRec     *state.Record
	checkpoint func() error
	// ledger is every underlay's record of default routes.
	ledger *ledger
	// unlisted names stale links that no record lists.
	unlisted map[string]bool
	// policy is the run's policy routing; defaults says the run may change
	// default routes or rules, and others is then every other record.
	policy plan.Policy
	// move is a change of policy, run before anything else; nil if none.
	move     *move
	defaults bool
	others   map[string]*state.Record
	// unreadable names the other records that could not be read: no
	// rule is then deleted.
	unreadable string
	undos      []undo
}

// run applies steps in order and stops at the first that fails.
func (x *executor) run(steps []step) error {
	for i := range steps {
		if err := x.apply(&steps[i]); err != nil {
			if steps[i].tunnel != "" {
				return fmt.Errorf("tunnel %q: %w", steps[i].tunnel, err)
			}
			return err
		}
	}
	return nil
}

func (x *executor) apply(st *step) error {
	if st.note != "" {
		x.l.note("%s", st.note)
	}
	if st.change == nil {
		return nil
	}
	if err := x.ctx.Err(); err != nil {
		switch {
		case st.tunnel == "":
			return fmt.Errorf("interrupted before the MSS rules: %w", err)
		case len(st.cmds) == 0:
			return fmt.Errorf("interrupted: %w", err)
		}
		return fmt.Errorf("interrupted before %q: %w", bareCmd(st.cmds[0]), err)
	}
	if st.prepare != nil {
		st.prepare(x)
	}
	if st.dropsRoutesVia != "" {
		x.snap.routes = withoutRoutesVia(x.snap.routes, st.dropsRoutesVia)
	}
	if st.self {
		return st.change(x)
	}
	x.l.change(st.cmds...)
	if x.dry {
		return nil
	}
	if err := st.change(x); err != nil {
		if st.bare {
			return err
		}
		return fmt.Errorf("%s: %w", bareCmd(st.cmds[0]), err)
	}
	if st.undo != nil {
		x.undos = append(x.undos, undo{cmd: st.undoCmd, fn: st.undo})
	}
	return nil
}

// rollback runs the undos in reverse and returns what it could not undo.
func (x *executor) rollback() []error {
	var errs []error
	for i := len(x.undos) - 1; i >= 0; i-- {
		u := x.undos[i]
		if u.cmd != "" {
			x.l.change(u.cmd)
		}
		if err := u.fn(x); err != nil {
			errs = append(errs, fmt.Errorf("undoing: %s: %w", u.cmd, err))
		}
	}
	return errs
}

// teardown removes things for this run: it shares the run's kernel
// snapshot and its view of the default routes.
func (x *executor) teardown() *teardown {
	return &teardown{sys: x.sys, l: x.l, dry: x.dry, underlay: x.underlay, links: x.snap.links, routes: x.snap.routes,
		ledger: x.ledger, unlisted: x.unlisted}
}

// addLink creates the link, loading the GRE module on the way if the
// kernel did not do it by itself.
func (x *executor) addLink(l plan.Link) error {
	err := x.sys.Net.AddLink(kernelLink(l))
	if errors.Is(err, unix.EOPNOTSUPP) {
		if merr := x.sys.LoadModule(module(l.Mode)); merr != nil {
			return merr
		}
		err = x.sys.Net.AddLink(kernelLink(l))
	}
	if errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("%w (%s)", err, explainExists(x.sys.Net, l, false))
	}
	return err
}

// setTunnel changes the tunnel attributes of l's link in place.
func (x *executor) setTunnel(l plan.Link) error {
	err := x.sys.Net.SetTunnel(kernelLink(l))
	if errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("%w (%s)", err, explainExists(x.sys.Net, l, true))
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
