package hook

import (
	"context"
	"fmt"

	"github.com/gre-hook/gre-hook/hook/config"
	"github.com/gre-hook/gre-hook/hook/engine"
	"github.com/gre-hook/gre-hook/hook/state"
)

// reconcile brings up a tunnel that up recorded as unresolved, now that
// gre-hook watch found its name resolves: it runs up for the underlay,
// with the config its record names, under the run lock, as peer.SetLiveness
// does. A no-op when the record no longer lists the tunnel as unresolved
// (an ifdown, or an up, came first). Changes are logged as up logs them.
func reconcile(ctx context.Context, sys *System, underlay, tunnel string) error {
	// The names are looked up first, without the lock: a DNS server that
	// does not answer must not hold an ifup. What changed meanwhile is
	// read again under the lock.
	load := func() (*state.Record, Request, *config.Config, error) {
		rec, err := sys.Store.Load(underlay)
		if err != nil {
			return nil, Request{}, nil, fmt.Errorf("tunnel %q on %s: %w", tunnel, underlay, err)
		}
		if t := rec.Find(tunnel); t == nil || !t.Unresolved {
			return nil, Request{}, nil, nil
		}
		req := Request{Iface: underlay, Phase: PhaseUp, AllowInsecure: !sys.Store.Secure}
		if rec.Source != "" && rec.Source != state.DefaultSource {
			req.Config = rec.Source
		}
		cfg, err := LoadConfig(req)
		if err != nil {
			return nil, Request{}, nil, fmt.Errorf("tunnel %q on %s: %w", tunnel, underlay, err)
		}
		return rec, req, cfg, nil
	}
	rec, _, cfg, err := load()
	if err != nil || rec == nil {
		return err
	}
	resolved := resolveRemotes(ctx, sys, cfg.For(underlay))
	unlock, err := state.Lock(sys.Store.Dir, sys.LockWait)
	if err != nil {
		return err
	}
	defer unlock()
	rec, req, cfg, err := load()
	if err != nil || rec == nil {
		return err
	}
	l := &engine.Logger{Out: sys.Log}
	distrust(rec, req, l)
	return upLocked(ctx, req, cfg, sys, l, rec, resolved, true)
}
