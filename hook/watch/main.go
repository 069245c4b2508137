package watch

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/gre-hook/gre-hook/hook"
	"github.com/gre-hook/gre-hook/hook/addrpolicy"
	"github.com/gre-hook/gre-hook/hook/keepalive"
	"github.com/gre-hook/gre-hook/hook/localaddr"
	"github.com/gre-hook/gre-hook/hook/plan"
)

// Options are what the command line gives `gre-hook watch`.
type Options struct {
	// Config is --config: the config of records that name none, and of
	// what hook.Engine.Watching lists. "" for the defaults.
	Config  string
	Verbose bool
	// NewSystem opens the kernel, iptables and state directory a run
	// uses. The watcher opens two, so that the loop and route changes
	// never share a netlink handle.
	NewSystem func() (*hook.System, func(), error)
}

// Main runs `gre-hook watch` in the foreground until SIGTERM or SIGINT,
// logging to stderr, and returns 0 when it stopped cleanly, 1 otherwise.
func Main(opts Options, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "gre-hook: watch: %v\n", err)
		return 1
	}
	// One loop does the work: with one P, the replies that come back
	// while it sends a round of keepalives wait in the socket and are read
	// in a row when it is done, rather than wake a second thread each.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	reload := make(chan struct{}, 1)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go forwardHangups(hup, reload, stderr, ctx.Done())

	watchSys, closeWatch, err := opts.NewSystem()
	if err != nil {
		return fail(err)
	}
	defer closeWatch()
	setSys, closeSet, err := opts.NewSystem()
	if err != nil {
		return fail(err)
	}
	defer closeSet()
	conn, err := keepalive.Open()
	if err != nil {
		return fail(err)
	}
	defer conn.Close()
	// Each keepalive then carries its link's mark (Watcher.send); this
	// one, the default, says at once when the watcher may not mark
	// (SO_MARK needs CAP_NET_ADMIN).
	if err := conn.SetMark(plan.DefaultPolicy.Mark); err != nil {
		return fail(err)
	}
	if err := FollowDir(ctx, watchSys.Store.Dir, reload, stderr); err != nil {
		return fail(err)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	// The changes log what they change to the watcher's log.
	watchSys.Log, setSys.Log = stderr, stderr
	eng := compacting{&engine{watch: hook.NewEngine(watchSys), set: hook.NewEngine(setSys), dir: watchSys.Store.Dir, config: opts.Config}}
	w := &Watcher{
		Engine:  eng,
		Conn:    conn,
		Log:     stderr,
		Verbose: opts.Verbose,
		Reload:  reload,
		Mover:   eng,
		Addrs:   localaddr.New(),
		// The loop's own system: it lists the endpoints there too.
		OwnAddrs: func() (addrpolicy.Own, error) { return hook.OwnAddrs(watchSys.Net) },
	}
	if err := w.Run(ctx); err != nil {
		return fail(err)
	}
	return 0
}

// NoHugePages gives the process no transparent huge pages. Debian's
// kernels back anonymous memory with them by default, and one 2 MB page is
// more than the watcher's whole heap. The runtime's first pages were
// faulted in before it is called, some as huge pages whose unused parts stay
// resident, so the watcher starts again, in place (same pid, arguments
// and environment), with the setting, which execve keeps. A kernel that
// refuses it leaves the watcher as it is, and only slightly larger. It is
// called first (cli.BeforeWatch), before the command has said or read
// anything, and only where os.Args are the watcher's own.
func NoHugePages(stderr io.Writer, verbose bool) {
	if off, err := unix.PrctlRetInt(unix.PR_GET_THP_DISABLE, 0, 0, 0, 0); err != nil || off == 1 {
		return
	}
	err := unix.Prctl(unix.PR_SET_THP_DISABLE, 1, 0, 0, 0)
	if err == nil {
		// Only once the kernel says the setting took: the watcher that
		// starts again must not start again itself.
		if off, gerr := unix.PrctlRetInt(unix.PR_GET_THP_DISABLE, 0, 0, 0, 0); gerr != nil || off != 1 {
			err = fmt.Errorf("the kernel does not keep it (%d, %v)", off, gerr)
		} else {
			err = unix.Exec("/proc/self/exe", os.Args, os.Environ())
		}
	}
	if verbose {
		fmt.Fprintf(stderr, "gre-hook: watch: transparent huge pages stay on: %v\n", err)
	}
}

// forwardHangups turns SIGHUPs into reloads until done. A SIGHUP that
// comes while a reload is already pending is that reload, and logs
// nothing: one line per reload that runs, not per signal.
func forwardHangups(hup <-chan os.Signal, reload chan<- struct{}, log io.Writer, done <-chan struct{}) {
	for {
		select {
		case <-hup:
			select {
			case reload <- struct{}{}:
				fmt.Fprintln(log, "gre-hook: watch: SIGHUP: reading the config again")
			default:
			}
		case <-done:
			return
		}
	}
}

// gcPercent is the watcher's GOGC, unless the environment sets one.
// Between reloads it allocates little (a liveness file now and then), so
// a tighter heap goal than the default 100 costs next to no collections
// and keeps the heap small (TestWatchFootprint and scripts/bench report
// the resident memory).
const gcPercent = 25

// compacting is the engine, whose listings hand the memory they used
// back to the kernel: reading the records, the config and the kernel's
// links at a reload (an ifup, an ifdown, a SIGHUP) is the one burst of
// allocations, and the heap it grew would otherwise stay resident until
// the runtime's scavenger returns it, slowly.
type compacting struct{ *engine }

func (c compacting) Watching() ([]Target, []Endpoint, error) {
	ts, es, err := c.engine.Watching()
	debug.FreeOSMemory()
	return ts, es, err
}
