// Package peer is what gre-hook watch changes and follows, each from the
// records: a peer dead, or alive again (failover.go: SetLiveness withdraws
// or puts back the tunnel's routes, from its record alone), what up and
// its record keep of a dead peer (liveness.go), a tunnel moved in place
// to a new local or remote (retarget.go), and the tunnels the watcher
// sends keepalives on and those whose endpoints it follows, in one read
// (watching.go). Package hook's Engine calls it.
package peer

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/gre-hook/gre-hook/hook/engine"
	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/rtnl"
	"github.com/gre-hook/gre-hook/hook/state"
)

// Failover: a dead peer is one narrow change, made from the
// record alone. SetLiveness writes the intent first (dead, and the routes
// it withdraws; or alive), then changes exactly those routes: the
// tunnel's default route in gre-hook's table and its [[tunnel.route]]s.
// It reads neither the config nor the other tunnels nor the link, so a
// config error elsewhere, an underlay that is down, has no address or is
// gone, change nothing in it. With the tunnel's default route gone from
// gre-hook's table the lookup falls through to the main table's default
// (POLICY-ROUTING.md). An up meanwhile plans a dead tunnel without its
// routes (WithdrawDead), and its record lists the routes to put back.

// SetLiveness records whether a tunnel's peer answers and makes the
// kernel match the record, under the run lock: dead withdraws the
// tunnel's routes, alive puts back those the record lists as withdrawn.
// Called again with the record's own liveness, it repairs a change a
// crash cut short. A no-op when no record lists the tunnel (an ifdown
// came first). It logs one line on a change of liveness, naming the
// tunnel, the peer and the silence, then each change as up does.
func SetLiveness(ctx context.Context, sys *engine.System, underlay, tunnel string, alive bool, lastReply time.Time) error {
	unlock, err := state.Lock(sys.Store.Dir, sys.LockWait)
	if err != nil {
		return err
	}
	defer unlock()
	rec, err := sys.Store.Load(underlay)
	if err != nil {
		return fmt.Errorf("tunnel %q on %s: %w", tunnel, underlay, err)
	}
	t := rec.Find(tunnel)
	if t == nil || t.Unresolved {
		return nil
	}
	l := &engine.Logger{Out: sys.Log, Verbose: true}
	fail := func(err error) error { return fmt.Errorf("tunnel %q on %s: %w", tunnel, underlay, err) }
	now := time.Now()
	changed := t.Dead == alive
	peer := t.Remote.String()
	if !t.Remote.IsValid() {
		peer = "?"
	}
	if !lastReply.IsZero() && (t.LastReply == nil || lastReply.After(*t.LastReply)) {
		t.LastReply = &lastReply
	}
	if alive {
		if changed {
			t.Dead, t.DeadSince = false, nil
			fmt.Fprintf(sys.Log, "gre-hook: tunnel %q on %s: peer %s answers again%s; putting its routes back\n", tunnel, underlay, peer, silence(lastReply, now, " after "))
			if err := sys.Store.Save(rec); err != nil {
				return fail(err)
			}
		}
		if len(t.Withdrawn) == 0 {
			return nil
		}
		if err := restoreRoutes(sys.Net, tunnel, t.Withdrawn, l); err != nil {
			return fail(err)
		}
		t.Withdrawn = nil
		return fail0(sys.Store.Save(rec), fail)
	}
	if changed {
		t.Dead, t.DeadSince = true, &now
		t.Withdrawn = Withdrawable(t)
		fmt.Fprintf(sys.Log, "gre-hook: tunnel %q on %s: peer %s is dead%s; withdrawing its routes\n", tunnel, underlay, peer, silence(lastReply, now, ", silent for "))
		// The intent first: a crash after this is repaired from the record.
		if err := sys.Store.Save(rec); err != nil {
			return fail(err)
		}
	}
	var errs []error
	for _, r := range t.Withdrawn {
		p := r.Plan()
		k := engine.KernelRoute(p, plan.RouteProtocol)
		k.Dev = tunnel
		if err := sys.Net.DelRoute(k); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", plan.DelRouteCmd(p), err))
			continue
		}
	}
	if t.Legacy() && len(t.LegacyDefaults()) > 0 {
		// A tunnel still in the previous release's form holds the main
		// table's default: hand it on as that release would.
		errs = append(errs, releaseLegacy(sys, rec, t, l)...)
	}
	if changed {
		warnNoDefault(sys.Net, t.OwnedDefaults(), l)
	}
	if len(errs) > 0 {
		return fail(engine.Join(errs))
	}
	return nil
}

// warnNoDefault says so when withdrawing a dead tunnel's defaults left the
// router with no default route of that family at all: neither the main
// table nor another tunnel in gre-hook's table has one. gre-hook never
// adds one to main, but it must not take the last one away in silence.
func warnNoDefault(n engine.Net, withdrawn []state.Route, l *engine.Logger) {
	for _, f := range []int{4, 6} {
		had := false
		for _, d := range withdrawn {
			had = had || engine.FamilyOf(d.Dst.Addr()) == f
		}
		if !had {
			continue
		}
		routes, err := n.Routes(f)
		if err != nil {
			continue
		}
		// The main table, or the table of gre-hook's the withdrawn
		// routes were in.
		tables := map[uint32]bool{0: true}
		for _, d := range withdrawn {
			tables[d.Table] = true
		}
		left := false
		for _, r := range routes {
			left = left || (r.Dst.Bits() == 0 && tables[r.Table])
		}
		if !left {
			l.Warn("with the dead tunnel's default route withdrawn, this router has no IPv%d default route: the main table has none, "+
				"and no other default_route tunnel is alive", f)
		}
	}
}

func fail0(err error, fail func(error) error) error {
	if err != nil {
		return fail(err)
	}
	return nil
}

// restoreRoutes puts back routes of tunnel that a dead peer withdrew. A
// route that someone else has put at the same key meanwhile stays theirs.
// Each is printed before it is made; a failure is returned, and the
// watcher tries again.
func restoreRoutes(n engine.Net, tunnel string, routes []state.Route, l *engine.Logger) error {
	kernel := map[int][]rtnl.Route{}
	var errs []error
	for _, r := range routes {
		p := r.Plan()
		if p.IsDefault() && p.Table == 0 {
			continue // never the main table's default (engine/legacy.go)
		}
		p.Dev = tunnel
		f := engine.FamilyOf(p.Dst.Addr())
		if _, ok := kernel[f]; !ok {
			rs, err := n.Routes(f)
			if err != nil {
				return err
			}
			kernel[f] = rs
		}
		if have := engine.RouteAt(kernel, p); have != nil {
			if have.Protocol == plan.RouteProtocol && have.Dev == tunnel && have.Gw == p.Gw {
				continue
			}
			if have.Protocol != plan.RouteProtocol {
				l.Note("tunnel %q: %s is there now, set while the peer was dead; leaving it", tunnel, engine.DescribeRoute(engine.PlanRoute(*have), have.Protocol))
				continue
			}
		}
		cmd := plan.ReplaceRouteCmd(p)
		l.Change(cmd)
		if err := n.ReplaceRoute(engine.KernelRoute(p, plan.RouteProtocol)); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", cmd, err))
		}
	}
	return engine.Join(errs)
}

// releaseLegacy hands on the main-table default route of tunnel t of the
// previous release, whose peer died, and forgets it: t gets a default
// route again in gre-hook's table at the next up of its underlay.
func releaseLegacy(sys *engine.System, rec *state.Record, t *state.Tunnel, l *engine.Logger) []error {
	links, err := sys.Net.Links()
	if err != nil {
		return []error{err}
	}
	byName := map[string]rtnl.Link{}
	for _, lk := range links {
		byName[lk.Name] = lk
	}
	lg := engine.NewLedger(sys.Store, rec.Underlay, rec)
	td := &engine.Teardown{Sys: sys, Log: l, Underlay: rec.Underlay, Links: byName, Ledger: lg, Unlisted: map[string]bool{}}
	errs := td.ReleaseDefaults(t, t.LegacyDefaults(), map[string]bool{t.Name: true}, false)
	if len(errs) > 0 {
		return errs
	}
	l.Warn("tunnel %q on %s: its default route was in the main table (the previous release's form); "+
		"run `gre-hook up --iface %s` to give it one in gre-hook's table", t.Name, rec.Underlay, rec.Underlay)
	t.Defaults = t.OwnedDefaults()
	t.Replaced, t.Seq, t.Displaced, t.Fallbacks = nil, 0, false, nil
	errs = append(errs, lg.Save()...)
	if err := sys.Store.Save(rec); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// silence says how long ago the last reply was, after prefix; nothing
// when no reply was ever seen.
func silence(last, now time.Time, prefix string) string {
	if last.IsZero() {
		if strings.HasPrefix(prefix, ",") {
			return ", no reply seen"
		}
		return ""
	}
	return prefix + AgeOf(now.Sub(last))
}
