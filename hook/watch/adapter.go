package watch

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/gre-hook/gre-hook/hook"
	"github.com/gre-hook/gre-hook/hook/state"
)

// engine is the Engine over package hook: the records and the config say
// what to watch, and hook.SetLiveness withdraws and restores routes.
type engine struct {
	// watchSys serves Watched on the loop's goroutine, setSys
	// SetLiveness on the worker's: they do not share a netlink handle.
	watchSys, setSys *hook.System
	config           string // --config, for records that name none
	log              io.Writer
}

// Watched lists the tunnels hook.Watched reports. A record or config that
// cannot be read is logged, and the others are watched all the same.
func (e *engine) Watched() ([]Target, error) {
	ws, err := hook.Watched(e.watchSys, e.config)
	if err != nil && len(ws) == 0 {
		return nil, err
	}
	if err != nil {
		fmt.Fprintf(e.log, "gre-hook: watch: %v\n", err)
	}
	out := make([]Target, 0, len(ws))
	for _, w := range ws {
		out = append(out, Target{
			Underlay: w.Underlay, Tunnel: w.Tunnel,
			Local: w.Local, Remote: w.Remote, IKey: w.IKey, OKey: w.OKey, Mark: w.FwMark,
			Interval: w.Interval, Retries: w.Retries,
			Alive: !w.Dead, DeadSince: w.DeadSince, LastReply: w.LastReply, Sync: w.Sync,
		})
	}
	return out, nil
}

func (e *engine) SetLiveness(ctx context.Context, underlay, tunnel string, alive bool, lastReply time.Time) error {
	return hook.SetLiveness(ctx, e.setSys, underlay, tunnel, alive, lastReply, e.log)
}

func (e *engine) WriteLiveness(entries []state.LivenessEntry) error {
	return state.WriteLiveness(e.watchSys.Store.Dir, entries)
}

// Endpoints lists the tunnels hook.Dynamic reports. A record or config
// that cannot be read is logged, and the others are followed all the same.
func (e *engine) Endpoints() ([]Endpoint, error) {
	ds, err := hook.Dynamic(e.watchSys, e.config)
	if err != nil && len(ds) > 0 {
		fmt.Fprintf(e.log, "gre-hook: watch: %v\n", err)
		err = nil
	}
	return ds, err
}

func (e *engine) Retarget(ctx context.Context, underlay, tunnel string, local, remote netip.Addr) error {
	return hook.Retarget(ctx, e.setSys, underlay, tunnel, local, remote, e.log)
}

func (e *engine) Reconcile(ctx context.Context, underlay, tunnel string) error {
	return hook.Reconcile(ctx, e.setSys, underlay, tunnel, e.log)
}
