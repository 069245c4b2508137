package watch

import (
	"context"
	"net/netip"
	"time"

	"github.com/gre-hook/gre-hook/hook"
	"github.com/gre-hook/gre-hook/hook/state"
)

// engine is the Engine and the Mover over package hook: the records and
// the configs say what to watch, hook.Engine.SetLiveness withdraws and
// restores routes, Retarget and Reconcile move tunnels. watch serves
// Watching on the loop's goroutine, set the changes on the worker's: they
// do not share a netlink handle. Both log to the watcher's log (their
// System's).
type engine struct {
	watch, set *hook.Engine
	dir        string // the state directory, for the liveness file
	config     string // --config, for records that name none
}

// Watching lists what hook.Engine.Watching reports.
func (e *engine) Watching() ([]Target, []Endpoint, error) {
	w, err := e.watch.Watching(e.config)
	return w.Keepalives, w.Endpoints, err
}

func (e *engine) SetLiveness(ctx context.Context, underlay, tunnel string, alive bool, lastReply time.Time) error {
	return e.set.SetLiveness(ctx, underlay, tunnel, alive, lastReply)
}

func (e *engine) WriteLiveness(entries []state.LivenessEntry) error {
	return state.WriteLiveness(e.dir, entries)
}

func (e *engine) Retarget(ctx context.Context, underlay, tunnel string, local, remote netip.Addr) error {
	return e.set.Retarget(ctx, underlay, tunnel, local, remote)
}

func (e *engine) Reconcile(ctx context.Context, underlay, tunnel string) error {
	return e.set.Reconcile(ctx, underlay, tunnel)
}
