package watch

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/gre-hook/gre-hook/hook"
	"github.com/gre-hook/gre-hook/hook/config"
	"github.com/gre-hook/gre-hook/hook/state"
)

// standin is a TEMPORARY Engine over the hook code on main, until the
// liveness branch's hook.Watched and hook.SetLiveness replace it. What it
// does, and does not:
//
//   - Watched lists the tunnels of every record whose config (the one the
//     record names as its source; --config for a record without one) gives
//     them keepalive and mode gre, with the outer addresses and keys the
//     kernel's link has. Liveness is kept in this process only: a tunnel
//     is alive unless this watcher found it dead, and records hold nothing.
//   - SetLiveness runs up on the underlay (hook.UpWithConfig) with a copy
//     of that config in which every tunnel it holds dead on the underlay
//     has no [[tunnel.route]]s and default_route off. up then withdraws
//     those routes, the pin, and puts the replaced default route back,
//     exactly as after such a config edit; alive runs up with the config
//     as it is, which puts them back.
//   - It does not stop an ifup or ifreload from putting a dead tunnel's
//     routes back (the real one does, from the record), and status knows
//     nothing of liveness.
type standin struct {
	// watchSys serves Watched on the loop's goroutine, setSys
	// SetLiveness on the worker's: they do not share a netlink handle.
	watchSys, setSys *hook.System
	req              hook.Request // Config (--config) and AllowInsecure

	mu   sync.Mutex
	dead map[Key]bool
}

func newStandin(watchSys, setSys *hook.System, req hook.Request) *standin {
	return &standin{watchSys: watchSys, setSys: setSys, req: req, dead: map[Key]bool{}}
}

// configPath turns a record's source into the path a Request takes.
func (s *standin) configPath(source string) string {
	switch source {
	case state.DefaultSource:
		return ""
	case "":
		return s.req.Config
	}
	return source
}

func (s *standin) Watched() ([]Target, error) {
	recs, _, err := s.watchSys.Store.All()
	if err != nil {
		return nil, err
	}
	links, err := s.watchSys.Net.Links()
	if err != nil {
		return nil, err
	}
	byName := map[string]int{}
	for i, l := range links {
		byName[l.Name] = i
	}
	underlays := make([]string, 0, len(recs))
	for u := range recs {
		underlays = append(underlays, u)
	}
	sort.Strings(underlays)
	cfgs := map[string]*config.Config{}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Target
	var errs []error
	for _, u := range underlays {
		rec := recs[u]
		path := s.configPath(rec.Source)
		cfg, ok := cfgs[path]
		if !ok {
			cfg, err = config.Read(path, s.req.AllowInsecure)
			if err != nil {
				errs = append(errs, fmt.Errorf("the config of %s: %w", u, err))
			}
			cfgs[path] = cfg
		}
		if cfg == nil {
			continue
		}
		for _, rt := range rec.Tunnels {
			ct := findTunnel(cfg, u, rt.Name)
			if ct == nil || ct.Keepalive == nil || ct.Mode != config.ModeGRE {
				continue
			}
			i, ok := byName[rt.Name]
			if !ok || !links[i].GRE {
				continue
			}
			l := links[i]
			k := Key{u, rt.Name}
			out = append(out, Target{
				Underlay: u, Tunnel: rt.Name,
				Local: l.Local, Remote: l.Remote, IKey: l.IKey, OKey: l.OKey,
				Interval: time.Duration(ct.Keepalive.Interval) * time.Second,
				Retries:  ct.Keepalive.Retries,
				Alive:    !s.dead[k],
			})
		}
	}
	if len(errs) > 0 && len(out) == 0 {
		return nil, errs[0]
	}
	return out, nil
}

func findTunnel(cfg *config.Config, underlay, name string) *config.Tunnel {
	for i := range cfg.Tunnels {
		if t := &cfg.Tunnels[i]; t.Underlay == underlay && t.Name == name {
			return t
		}
	}
	return nil
}

func (s *standin) SetLiveness(ctx context.Context, underlay, tunnel string, alive bool, _ time.Time) error {
	s.mu.Lock()
	if alive {
		delete(s.dead, Key{underlay, tunnel})
	} else {
		s.dead[Key{underlay, tunnel}] = true
	}
	dead := map[string]bool{}
	for k := range s.dead {
		if k.Underlay == underlay {
			dead[k.Tunnel] = true
		}
	}
	s.mu.Unlock()

	rec, err := s.setSys.Store.Load(underlay)
	if err != nil || rec == nil {
		return err // no record: the tunnel is gone, nothing to change
	}
	path := s.configPath(rec.Source)
	cfg, err := config.Read(path, s.req.AllowInsecure)
	if err != nil {
		return err
	}
	edited := *cfg
	edited.Tunnels = append([]config.Tunnel(nil), cfg.Tunnels...)
	for i := range edited.Tunnels {
		if t := &edited.Tunnels[i]; t.Underlay == underlay && dead[t.Name] {
			t.Routes, t.DefaultRoute = nil, false
		}
	}
	req := s.req
	req.Iface, req.Config, req.Verbose, req.ByHand = underlay, path, false, false
	return hook.UpWithConfig(ctx, req, s.setSys, &edited)
}

func (s *standin) WriteLiveness(entries []Liveness) error {
	return writeLivenessFile(s.watchSys.Store.Dir, entries)
}
