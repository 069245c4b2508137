package hook

import (
	"context"
	"fmt"

	"github.com/gre-hook/gre-hook/hook/config"
	"github.com/gre-hook/gre-hook/hook/engine"
	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/rtnl"
	"github.com/gre-hook/gre-hook/hook/state"
)

func down(ctx context.Context, req Request, cfg *config.Config, cfgErr error, sys *System, l *engine.Logger) error {
	var names []string
	if cfgErr == nil {
		for _, t := range cfg.For(req.Iface) {
			names = append(names, t.Name)
		}
	}
	if !sys.Store.Exists(req.Iface) && len(names) == 0 {
		if cfgErr == nil {
			// The common case for most interfaces: stay fast and silent.
			l.Note("no tunnels on %s", req.Iface)
			return nil
		}
		// No record and no readable config: the kernel's marks are all
		// there is to go by, so look for them rather than give up.
		l.Warn("%v; looking for gre-hook's links on %s by their marks", cfgErr, req.Iface)
	}
	// Read under the lock: an up that ran while this run waited may have
	// changed what the record lists. Without the record, what the tunnels
	// took from the kernel is unknown: an error, not a guess.
	rec, unlock, err := openRecord(req, sys, l, !req.DryRun, "taking down")
	if err != nil {
		return err
	}
	defer unlock()

	links, err := sys.Net.Links()
	if err != nil {
		return fmt.Errorf("taking down tunnels on %s: %w", req.Iface, err)
	}
	byName := map[string]rtnl.Link{}
	for _, lk := range links {
		byName[lk.Name] = lk
	}
	// Victims: what the record lists, plus any link the kernel says is
	// ours on this underlay (the record may be lost or stale).
	var victims []state.Tunnel
	seen := map[string]bool{}
	unlisted := map[string]bool{}
	if rec != nil {
		if rec.Source != "" && rec.Source != sourceOf(req) {
			l.Note("%s: its tunnels came from %s; removing them as the record lists them", req.Iface, describeSource(rec.Source))
		}
		for _, t := range rec.Tunnels {
			victims = append(victims, t)
			seen[t.Name] = true
		}
	}
	for _, lk := range links {
		if lk.Alias == plan.Alias(req.Iface) && !seen[lk.Name] {
			victims = append(victims, state.Tunnel{Name: lk.Name})
			seen[lk.Name] = true
			unlisted[lk.Name] = true
		}
	}
	if err := engine.FindPins(sys, rec, victims, byName); err != nil {
		return fmt.Errorf("taking down tunnels on %s: %w", req.Iface, err)
	}

	var errs []error
	chains := engine.RecordChains(rec)
	if rec == nil {
		chains = engine.AllChains
	}
	td := &engine.Teardown{Sys: sys, Log: l, Dry: req.DryRun, Underlay: req.Iface, Links: byName,
		Ledger: engine.NewLedger(sys.Store, "", nil), Unlisted: unlisted}
	td.RunDown(victims)
	errs = append(errs, td.Rules(chains, rec != nil)...)
	errs = append(errs, td.Tunnels(victims)...)
	// The tunnels' default routes in gre-hook's table went with their
	// links; the rules go with the last of them.
	if others, unreadable := engine.OthersOf(sys.Store, req.Iface); unreadable != "" {
		l.Warn("%s", engine.KeepRulesNote(unreadable))
	} else {
		errs = append(errs, td.DropRules(engine.NeedsRules(others))...)
	}
	if req.DryRun {
		return engine.Join(errs)
	}
	errs = append(errs, td.Ledger.Save()...)
	if len(errs) == 0 {
		if err := sys.Store.Remove(req.Iface); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("taking down tunnels on %s: %w", req.Iface, engine.Join(errs))
	}
	if !l.Changed {
		l.Note("nothing of gre-hook's left on %s", req.Iface)
	}
	return nil
}
