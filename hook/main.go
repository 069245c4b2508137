package hook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/gre-hook/gre-hook/hook/config"
	"github.com/gre-hook/gre-hook/hook/mss"
	"github.com/gre-hook/gre-hook/hook/rtnl"
	"github.com/gre-hook/gre-hook/hook/state"
)

// Exit codes.
const (
	ExitOK     = 0
	ExitFailed = 1
	ExitUsage  = 2
	ExitDrift  = 3
)

// Main runs gre-hook with the given arguments and environment and returns
// the exit code.
func Main(args []string, getenv func(string) string, stdout, stderr io.Writer, version string) int {
	inv, err := Parse(args, getenv, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "gre-hook: %v\n", err)
		return ExitUsage
	}
	switch inv.Command {
	case CmdNothing:
		return ExitOK
	case CmdHelp:
		fmt.Fprint(stdout, Usage)
		return ExitOK
	case CmdVersion:
		fmt.Fprintf(stdout, "gre-hook %s\n", version)
		return ExitOK
	case CmdWatch:
		// hook/watch imports hook: cmd/gre-hook runs it before Main.
		fmt.Fprintln(stderr, "gre-hook: watch is not available in this build")
		return ExitUsage
	}
	// Every command left reads the config.
	if inv.Request.AllowInsecure {
		fmt.Fprintf(stderr, "gre-hook: warning: %s: the config is read without checking who owns it or can write it; this is for tests only\n", inv.InsecureConfig)
	}
	switch inv.Command {
	case CmdCheck:
		cfg, err := LoadConfig(inv.Request)
		if err != nil {
			fmt.Fprintf(stderr, "%v\n", err)
			return ExitUsage
		}
		if len(cfg.Files) == 0 {
			fmt.Fprintf(stderr, "gre-hook: no config files found (looked for %s and %s/*.toml)\n", config.DefaultFile, config.DefaultDir)
			return ExitOK
		}
		if inv.Request.Verbose {
			fmt.Fprintf(stdout, "%d tunnel(s) in %d file(s): ok\n", len(cfg.Tunnels), len(cfg.Files))
		}
		return ExitOK
	}

	if inv.Command == CmdRun && nothingToDo(inv) {
		if r := inv.Request; r.Line && r.Phase == PhaseUp {
			// ifupdown2 hides the output of a line that succeeds, and its
			// lines never see gre-hook-config: a silent no-op here is a site
			// left unjoined with no word to the admin.
			fmt.Fprintf(stderr, "gre-hook: up on %s: %s has no tunnels on %s, and gre-hook brought none up there; "+
				"ifupdown2 gives post-up lines no stanza options, gre-hook-config included: name the config on the line, "+
				"\"post-up /usr/sbin/gre-hook up --config PATH\", or leave the line out and let the if-up.d hook do it\n",
				r.Iface, describeSource(sourceOf(r)), r.Iface)
			return ExitUsage
		}
		if inv.Request.Verbose {
			fmt.Fprintf(stderr, "gre-hook: no tunnels on %s\n", inv.Request.Iface)
		}
		return ExitOK
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	sys, closeSys, err := NewSystem(inv, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "gre-hook: %v\n", err)
		return ExitFailed
	}
	defer closeSys()

	switch inv.Command {
	case CmdGC:
		err = GC(ctx, inv.Request, sys)
	case CmdStatus:
		var drift bool
		drift, err = Status(inv.Request, sys, stdout, inv.JSON)
		if err == nil && drift {
			return ExitDrift
		}
	default:
		err = Run(ctx, inv.Request, sys)
	}
	if err != nil {
		fmt.Fprintf(stderr, "gre-hook: %v\n", err)
		var cerr config.Errors
		if errors.As(err, &cerr) || errors.Is(err, ErrUsage) {
			return ExitUsage
		}
		return ExitFailed
	}
	return ExitOK
}

// nothingToDo reports, without opening netlink or taking the lock, that
// the config has no tunnels on the interface and no record says gre-hook
// made any there. ifupdown calls gre-hook for every interface at boot; for
// most of them this is the whole run. Any doubt (a config that does not
// load) means there may be work, and the full run decides; it keeps the
// config it read for that run.
func nothingToDo(inv *Invocation) bool {
	cfg, err := LoadConfig(inv.Request)
	if err != nil {
		return false
	}
	inv.Request.loaded = cfg
	if len(cfg.For(inv.Request.Iface)) > 0 {
		return false
	}
	return !state.Store{Dir: stateDir(inv)}.Exists(inv.Request.Iface)
}

func stateDir(inv *Invocation) string {
	if inv.StateDir != "" {
		return inv.StateDir
	}
	return state.DirFor(state.DefaultDir)
}

// NewSystem connects a run to the real kernel, iptables and filesystem.
func NewSystem(inv *Invocation, stderr io.Writer) (*System, func(), error) {
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
	sys := &System{
		Net:        h,
		LoadModule: rtnl.LoadModule,
		Store:      state.Store{Dir: dir, Secure: !inv.Request.AllowInsecure},
		LockWait:   inv.LockWait,
		Log:        stderr,
	}
	sys.Command = commandRunner{Limit: inv.CommandLimit, Grace: commandGrace, Out: stderr}.Run
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

func (e emptyTables) Family() int                               { return e.family }
func (emptyTables) List(string, string) ([]string, bool, error) { return nil, false, nil }
func (emptyTables) JumpExists() (bool, error)                   { return false, nil }
func (emptyTables) Restore(string) error                        { return nil }
