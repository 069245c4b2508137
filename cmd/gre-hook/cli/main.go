// Package cli is gre-hook's command line: it turns arguments and the
// environment into a hook.Request, reads the config once, calls package
// hook and maps the outcome to an exit code.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/gre-hook/gre-hook/hook"
	"github.com/gre-hook/gre-hook/hook/config"
	"github.com/gre-hook/gre-hook/hook/state"
	"github.com/gre-hook/gre-hook/hook/watch"
)

// Exit codes.
const (
	ExitOK     = 0
	ExitFailed = 1
	ExitUsage  = 2
	ExitDrift  = 3
)

// BeforeWatch, when set, runs first in a watch command, before it has said
// or read anything. The program sets it to watch.NoHugePages, which starts
// the process again: a Main called in a test, with arguments of its own,
// must not.
var BeforeWatch func(stderr io.Writer, verbose bool)

// runtimeFor sets the runtime up for the command. A run lives for
// milliseconds and holds a few megabytes, so collections in it are mostly
// work for nothing: unless GOGC is set, it collects at five times its live
// heap, or sooner when it nears 64 MB (a thousand tunnels on a small
// router). The watcher, which lives for months, sets its own.
func runtimeFor(cmd Command, getenv func(string) string) {
	if cmd != CmdWatch && getenv("GOGC") == "" {
		debug.SetGCPercent(400)
		debug.SetMemoryLimit(64 << 20)
	}
}

// Main runs gre-hook with the given arguments and environment and returns
// the exit code.
func Main(args []string, getenv func(string) string, stdout, stderr io.Writer, version string) int {
	inv, err := Parse(args, getenv)
	if err != nil {
		fmt.Fprintf(stderr, "gre-hook: %v\n", err)
		return ExitUsage
	}
	switch inv.Command {
	case CmdNothing:
		return ExitOK
	case CmdHelp:
		fmt.Fprint(stdout, commandUsage[inv.HelpFor])
		return ExitOK
	case CmdVersion:
		fmt.Fprintf(stdout, "gre-hook %s\n", Version(version))
		return ExitOK
	}
	runtimeFor(inv.Command, getenv)
	if msg := needsRoot(inv); msg != "" {
		fmt.Fprintf(stderr, "gre-hook: %s\n", msg)
		return ExitFailed
	}
	if inv.Command == CmdWatch && BeforeWatch != nil {
		BeforeWatch(stderr, inv.Request.Verbose)
	}
	// Every command left reads the config, once.
	if inv.Request.AllowInsecure {
		fmt.Fprintf(stderr, "gre-hook: warning: %s: the config is read without checking who owns it or can write it; this is for tests only\n", inv.InsecureConfig)
	}
	if inv.Command == CmdCheck {
		return check(inv, stdout, stderr)
	}
	if inv.StateDir == "" {
		dir, err := netnsDir(state.DefaultDir)
		if err != nil {
			fmt.Fprintf(stderr, "gre-hook: warning: %v: records and the lock are in %s\n", err, dir)
		}
		inv.StateDir = dir
	}
	cfg, cfgErr := hook.LoadConfig(inv.Request)
	if cfgErr == nil && len(cfg.Files) == 0 && inv.Request.Config != "" {
		// A directory named, but empty: most likely a mistake, and one
		// that looks like "nothing to do" unless it is said.
		if inv.Command == CmdGC {
			fmt.Fprintf(stderr, "gre-hook: gc: refusing to run: %s, and gc would remove every tunnel of gre-hook's\n", noFiles(inv.Request.Config))
			return ExitUsage
		}
		fmt.Fprintf(stderr, "gre-hook: warning: %s, so there are no tunnels\n", noFiles(inv.Request.Config))
	}
	switch inv.Command {
	case CmdWatch:
		if cfgErr != nil {
			// Refused at start, where systemd shows it, rather than
			// watching nothing in silence.
			printErr(stderr, fmt.Errorf("watch: %w", cfgErr))
			return ExitUsage
		}
		return watch.Main(watch.Options{
			Config:  inv.Request.Config,
			Verbose: inv.Request.Verbose,
			NewSystem: func() (*hook.System, func(), error) {
				return NewSystem(inv, stderr)
			},
		}, stderr)
	}

	if inv.Command == CmdRun && nothingToDo(inv, cfg, cfgErr) {
		return noTunnels(inv.Request, stderr)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	sys, closeSys, err := NewSystem(inv, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "gre-hook: %v\n", err)
		return ExitFailed
	}
	defer closeSys()

	drift, err := runCommand(ctx, inv, cfg, cfgErr, sys, stdout)
	if err == nil && drift {
		return ExitDrift
	}
	if err != nil {
		printErr(stderr, err)
		var cerr config.Errors
		if errors.As(err, &cerr) {
			return ExitUsage
		}
		return ExitFailed
	}
	return ExitOK
}

// noTunnels ends a run on an underlay that has no tunnels and no record.
func noTunnels(r hook.Request, stderr io.Writer) int {
	if r.Line && r.Phase == hook.PhaseUp {
		// ifupdown2 hides the output of a line that succeeds, and its
		// lines never see gre-hook-config: a silent no-op here is a site
		// left unjoined with no word to the admin.
		fmt.Fprintf(stderr, "gre-hook: up on %s: %s has no tunnels on %s, and gre-hook brought none up there; "+
			"ifupdown2 gives post-up lines no stanza options, gre-hook-config included: name the config on the line, "+
			"\"post-up /usr/sbin/gre-hook up --config PATH\", or leave the line out and let the if-up.d hook do it\n",
			r.Iface, hook.DescribeConfig(r), r.Iface)
		return ExitUsage
	}
	if r.Verbose {
		fmt.Fprintf(stderr, "gre-hook: no tunnels on %s\n", r.Iface)
	}
	return ExitOK
}

// runCommand calls package hook for a run, gc or status, with the config
// Main read (cfgErr if it could not be read).
func runCommand(ctx context.Context, inv *Invocation, cfg *config.Config, cfgErr error, sys *hook.System, stdout io.Writer) (drift bool, err error) {
	req, eng := inv.Request, hook.NewEngine(sys)
	if inv.Command == CmdRun && req.Phase == hook.PhaseDown {
		// Down goes on without a config: the record and the kernel's
		// marks say what is gre-hook's.
		return false, eng.Down(ctx, req, cfg, cfgErr)
	}
	if cfgErr != nil {
		if inv.Command == CmdGC {
			// What no config explains would be everything.
			return false, fmt.Errorf("gc: refusing to run with a broken config: %w", cfgErr)
		}
		return false, cfgErr
	}
	switch inv.Command {
	case CmdGC:
		return false, eng.GC(ctx, req, cfg)
	case CmdStatus:
		return eng.Status(req, cfg, stdout, inv.JSON)
	}
	return false, eng.Up(ctx, req, cfg)
}

// nothingToDo reports, without opening netlink or taking the lock, that
// cfg has no tunnels on the interface and no record says gre-hook made
// any there. ifupdown calls gre-hook for every interface at boot; for
// most of them this is the whole run. Any doubt (a config that does not
// load) means there may be work, and the full run decides.
func nothingToDo(inv *Invocation, cfg *config.Config, cfgErr error) bool {
	if cfgErr != nil || len(cfg.For(inv.Request.Iface)) > 0 {
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

// netnsDir is state.NetnsDir; tests replace it.
var netnsDir = state.NetnsDir

// geteuid is os.Geteuid; tests replace it.
var geteuid = os.Geteuid

// needsRoot says why the run cannot work unless it is root, or "": a
// plain permission error from deep inside (mkdir /run/gre-hook) would not
// say what to do.
func needsRoot(inv *Invocation) string {
	if geteuid() == 0 {
		return ""
	}
	r := inv.Request
	switch {
	case inv.Command == CmdRun && !r.DryRun:
		phase := "up"
		if r.Phase == hook.PhaseDown {
			phase = "down"
		}
		return fmt.Sprintf("%s on %s needs root: it changes links, addresses, routes and iptables rules (run it as root, or add --dry-run to print the plan)", phase, r.Iface)
	case inv.Command == CmdGC && !r.DryRun:
		return "gc needs root: it removes links, routes and iptables rules (run it as root, or add --dry-run to print what it would remove)"
	case inv.Command == CmdStatus:
		return "status needs root: it reads iptables rules and gre-hook's records (run it as root)"
	case inv.Command == CmdWatch:
		return "watch needs root: it sends keepalives on raw sockets and changes routes (run it as root)"
	}
	return ""
}

// Version is the version to report: the one stamped at build time
// (debian/rules and scripts/build-deb stamp the package's), or for a
// source build "dev" and the commit it was built from.
func Version(stamp string) string {
	info, _ := debug.ReadBuildInfo()
	return versionOf(stamp, info)
}

func versionOf(stamp string, info *debug.BuildInfo) string {
	if stamp != "dev" {
		return stamp
	}
	var rev, modified string
	if info != nil {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
	}
	if rev == "" {
		return "dev (commit unknown: built without version control information)"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if modified == "true" {
		return fmt.Sprintf("dev (commit %s, modified)", rev)
	}
	return fmt.Sprintf("dev (commit %s)", rev)
}
