package cli

import (
	"fmt"
	"io"
	"os"

	"github.com/gre-hook/gre-hook/hook"
	"github.com/gre-hook/gre-hook/hook/config"
	"github.com/gre-hook/gre-hook/hook/mss"
	"github.com/gre-hook/gre-hook/hook/rtnl"
	"github.com/gre-hook/gre-hook/hook/state"
)

// NewSystem connects a run to the real kernel, iptables and filesystem.
func NewSystem(inv *Invocation, stderr io.Writer) (*hook.System, func(), error) {
	h, err := rtnl.Open()
	if err != nil {
		return nil, nil, err
	}
	dir := stateDir(inv)
	if !inv.Request.AllowInsecure && !(inv.Request.DryRun && os.Geteuid() != 0) {
		// Records say which routes to put back and which commands to run,
		// as root: they get the config's trust rules.
		if err := config.TrustedDir(dir, "state directory"); err != nil {
			h.Close()
			return nil, nil, err
		}
	}
	sys := &hook.System{
		Net:        h,
		LoadModule: rtnl.LoadModule,
		// A status or dry run foresees a kernel without GRE.
		ModuleAvailable: rtnl.ModuleAvailable,
		Store:           state.Store{Dir: dir, Secure: !inv.Request.AllowInsecure},
		LockWait:        inv.LockWait,
		Log:             stderr,
		Sysctl:          hook.ProcSys{},
	}
	sys.Command = hook.CommandRunner{Limit: inv.CommandLimit, Grace: hook.CommandGrace, Out: stderr}.Run
	readOnly := inv.Request.DryRun && os.Geteuid() != 0
	sys.Tables = func(family int) (mss.Backend, error) {
		if readOnly {
			return emptyTables{family}, nil
		}
		return mss.Open(family, inv.XtablesWait)
	}
	if readOnly {
		// Without root neither the rules nor the records can be read; the
		// plan then assumes there are none.
		fmt.Fprintln(stderr, "gre-hook: not root: the plan assumes no existing gre-hook rules or records")
		sys.Store = state.Store{Dir: "/nonexistent/gre-hook"}
	}
	return sys, h.Close, nil
}

// emptyTables stands in for iptables in an unprivileged dry run.
type emptyTables struct{ family int }

func (e emptyTables) Family() int { return e.family }
func (emptyTables) ReadChains(chains []mss.Chain) ([]mss.ChainState, error) {
	out := make([]mss.ChainState, len(chains))
	for i, c := range chains {
		out[i].Chain = c
	}
	return out, nil
}
func (emptyTables) Restore(string) error { return nil }
