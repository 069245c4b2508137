package watch

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/gre-hook/gre-hook/hook"
	"github.com/gre-hook/gre-hook/hook/keepalive"
)

// Main runs `gre-hook watch` in the foreground until SIGTERM or SIGINT,
// logging to stderr, and returns the exit code.
func Main(inv *hook.Invocation, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "gre-hook: watch: %v\n", err)
		return hook.ExitFailed
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	reload := make(chan struct{}, 1)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				fmt.Fprintln(stderr, "gre-hook: watch: SIGHUP: reading the config again")
				select {
				case reload <- struct{}{}:
				default:
				}
			case <-ctx.Done():
				return
			}
		}
	}()

	watchSys, closeWatch, err := hook.NewSystem(inv, stderr)
	if err != nil {
		return fail(err)
	}
	defer closeWatch()
	setSys, closeSet, err := hook.NewSystem(inv, stderr)
	if err != nil {
		return fail(err)
	}
	defer closeSet()
	conn, err := keepalive.Open()
	if err != nil {
		return fail(err)
	}
	defer conn.Close()
	if err := FollowDir(ctx, watchSys.Store.Dir, reload, stderr); err != nil {
		return fail(err)
	}
	w := &Watcher{
		Engine:  newStandin(watchSys, setSys, inv.Request),
		Conn:    conn,
		Log:     stderr,
		Verbose: inv.Request.Verbose,
		Reload:  reload,
	}
	if err := w.Run(ctx); err != nil {
		return fail(err)
	}
	return hook.ExitOK
}
