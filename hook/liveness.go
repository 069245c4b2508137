package hook

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/gre-hook/gre-hook/hook/config"
	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/rtnl"
	"github.com/gre-hook/gre-hook/hook/state"
)

// Failover (issue 13). gre-hook watch finds a peer dead or alive; the
// record keeps it (state.Tunnel.Dead), and up plans a dead tunnel as if
// it had no routes and no default route. The existing machinery then does
// the rest: stale routes go, and the default route is handed on as when
// default_route is turned off (defaults.go). When the peer answers again,
// up plans the routes again and takes the default route over through the
// ledger, with a new Seq, as a new up would; except from a route the
// admin set while the peer was dead.

// withdrawDead drops the routes and default routes of the tunnels the
// record says are dead. The link, its addresses, MSS rules and pin stay:
// the pin keeps the keepalives on the underlay whatever holds the default
// route meanwhile, so the watcher sees the peer come back. A tunnel whose
// config (in tunnels) no longer has keepalive is alive again: no watcher
// would ever say so.
func withdrawDead(want []plan.Tunnel, tunnels []config.Tunnel, rec *state.Record) []plan.Tunnel {
	watched := map[string]bool{}
	for _, c := range tunnels {
		watched[c.Name] = c.Keepalive != nil
	}
	for i := range want {
		t := rec.Find(want[i].Link.Name)
		switch {
		case t == nil || !t.Dead:
		case !watched[t.Name]:
			t.Dead, t.DeadSince = false, nil
		default:
			want[i].Routes, want[i].Defaults = nil, nil
		}
	}
	return want
}

// keepLiveness carries the liveness of each tunnel over from the old
// record into the one a run builds. What a dead tunnel let go of stays
// with it until it comes back; a live one needs it no more.
func keepLiveness(rec, old *state.Record) {
	for i := range rec.Tunnels {
		t := &rec.Tunnels[i]
		o := old.Find(t.Name)
		if o == nil {
			continue
		}
		t.Dead, t.DeadSince, t.LastReply = o.Dead, o.DeadSince, o.LastReply
		if o.Dead {
			t.Withdrawn, t.Fallbacks = o.Withdrawn, o.Fallbacks
		}
	}
}

// setByAdmin reports whether cur, the route now at the key of default
// route d, is one the admin set while tunnel old was dead: old withdrew
// a default route at that key, and cur is neither gre-hook's nor a route
// gre-hook knows was there before its own (which the tunnel may take
// over again, as a new up would).
func (lg *ledger) setByAdmin(old *state.Tunnel, d plan.Route, cur *rtnl.Route) bool {
	if old == nil || cur == nil || cur.Protocol == plan.RouteProtocol {
		return false
	}
	key := state.FromPlan(d, 0)
	if routeAtKey(old.Withdrawn, key) == nil {
		return false
	}
	known := func(rs []state.Route) bool {
		for _, r := range rs {
			if sameKey(r, key) && r.Gw == cur.Gw && r.Dev == cur.Dev {
				return true
			}
		}
		return false
	}
	if known(old.Fallbacks) || known(old.Replaced) {
		return false
	}
	for _, rec := range lg.load() {
		for _, o := range rec.Tunnels {
			if known(o.Replaced) || known(o.Fallbacks) {
				return false
			}
		}
	}
	return true
}

// fallbacks returns the routes at the keys of t's default routes that
// gre-hook knows were there before its own: what t replaced, and what
// any other tunnel remembers.
func (lg *ledger) fallbacks(t *state.Tunnel) []state.Route {
	var out []state.Route
	add := func(r state.Route) {
		for _, o := range out {
			if sameKey(o, r) && o.Gw == r.Gw && o.Dev == r.Dev {
				return
			}
		}
		out = append(out, r)
	}
	for _, d := range t.Defaults {
		for _, r := range t.Replaced {
			if sameKey(r, d) {
				add(r)
			}
		}
		for _, rec := range lg.load() {
			for _, o := range rec.Tunnels {
				for _, r := range append(append([]state.Route{}, o.Replaced...), o.Fallbacks...) {
					if sameKey(r, d) {
						add(r)
					}
				}
			}
		}
	}
	return out
}

// SetLiveness records whether a tunnel's peer answers and brings the
// kernel in line with it, under the underlay's run lock: dead withdraws
// the tunnel's routes and default route (the replaced default returns),
// alive puts them back. It loads the config the record names (its
// source). A no-op when the record already agrees, or when no record
// lists the tunnel any more (an ifdown came first). It logs one line
// naming the tunnel, the peer and the silence, then each change as up
// does, to log (sys.Log if nil).
func SetLiveness(ctx context.Context, sys *System, underlay, tunnel string, alive bool, lastReply time.Time, log io.Writer) error {
	if log == nil {
		log = sys.Log
	}
	s := *sys
	s.Log = log
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
	if t == nil || t.Dead == !alive {
		return nil
	}
	req := Request{Iface: underlay, Phase: PhaseUp, AllowInsecure: !sys.Store.Secure, locked: true}
	if rec.Source != "" && rec.Source != state.DefaultSource {
		req.Config = rec.Source
	}
	cfg, err := LoadConfig(req)
	if err != nil {
		return fmt.Errorf("tunnel %q on %s: %w", tunnel, underlay, err)
	}
	if !hasTunnel(cfg, underlay, tunnel) {
		// Applying an edited config is for ifreload, not for the watcher.
		return fmt.Errorf("tunnel %q on %s: %s no longer has it; leaving it as it is until the underlay is brought up or down again",
			tunnel, underlay, describeSource(sourceOf(req)))
	}

	peer := "?"
	if lk, err := linkNamed(sys.Net, tunnel); err == nil && lk != nil && lk.Remote.IsValid() {
		peer = lk.Remote.String()
	}
	now := time.Now()
	was := *t
	if !lastReply.IsZero() {
		t.LastReply = &lastReply
	}
	if alive {
		t.Dead, t.DeadSince = false, nil
		fmt.Fprintf(log, "gre-hook: tunnel %q on %s: peer %s answers again%s; putting its routes back\n", tunnel, underlay, peer, silence(lastReply, now, " after "))
	} else {
		t.Dead, t.DeadSince = true, &now
		t.Withdrawn = t.Defaults
		t.Fallbacks = newLedger(sys.Store, underlay, rec).fallbacks(t)
		fmt.Fprintf(log, "gre-hook: tunnel %q on %s: peer %s is dead%s; withdrawing its routes\n", tunnel, underlay, peer, silence(lastReply, now, ", silent for "))
	}
	if err := sys.Store.Save(rec); err != nil {
		return fmt.Errorf("tunnel %q on %s: %w", tunnel, underlay, err)
	}
	if err := up(ctx, req, cfg, &s, &logger{w: log, verbose: true}); err != nil {
		// The kernel was not brought in line (up rolled back). A record
		// that still said dead (or alive) would make the watcher's retry
		// a no-op, and leave a dead peer's routes in place for good.
		return unsetLiveness(sys.Store, underlay, &was, err)
	}
	return nil
}

// unsetLiveness puts the liveness of tunnel was back into the record
// after a SetLiveness whose up failed with err, and returns err.
func unsetLiveness(store state.Store, underlay string, was *state.Tunnel, err error) error {
	rec, lerr := store.Load(underlay)
	if lerr != nil {
		return fmt.Errorf("tunnel %q on %s: %w; reading the record back: %v", was.Name, underlay, err, lerr)
	}
	t := rec.Find(was.Name)
	if t == nil {
		return err
	}
	t.Dead, t.DeadSince, t.Withdrawn, t.Fallbacks = was.Dead, was.DeadSince, was.Withdrawn, was.Fallbacks
	if serr := store.Save(rec); serr != nil {
		return fmt.Errorf("tunnel %q on %s: %w; putting its liveness back in the record: %v", was.Name, underlay, err, serr)
	}
	return err
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
	return prefix + ageOf(now.Sub(last))
}

func ageOf(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	if d < 10*time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// WatchedTunnel is a tunnel gre-hook watch sends keepalives on.
type WatchedTunnel struct {
	Underlay string
	Tunnel   string
	// Local, Remote and the keys are the kernel link's, which a resolved
	// or moved endpoint may have changed since the config was read.
	Local, Remote netip.Addr
	IKey, OKey    uint32
	Interval      time.Duration
	Retries       int
	// The record's liveness.
	Dead      bool
	DeadSince time.Time
	LastReply time.Time
}

// Watched lists what the watcher must follow: every tunnel in a record
// (state dir) whose config has keepalive, with local/remote/ikey/okey as
// the kernel link has them, interval, retries, and the record's
// liveness. Each record's tunnels are judged by the config the record
// names, else by cfgPath ("" for the defaults). A record or config that
// cannot be read leaves its tunnels out and is reported in err, with the
// others listed all the same.
func Watched(sys *System, cfgPath string) ([]WatchedTunnel, error) {
	var out []WatchedTunnel
	err := eachRecordTunnel(sys, cfgPath, func(u string, t *state.Tunnel, ct config.Tunnel, lk *rtnl.Link) {
		if ct.Keepalive == nil || lk == nil {
			return
		}
		w := WatchedTunnel{Underlay: u, Tunnel: t.Name, Local: lk.Local, Remote: lk.Remote, IKey: lk.IKey, OKey: lk.OKey,
			Interval: time.Duration(ct.Keepalive.Interval) * time.Second, Retries: ct.Keepalive.Retries, Dead: t.Dead}
		if t.DeadSince != nil {
			w.DeadSince = *t.DeadSince
		}
		if t.LastReply != nil {
			w.LastReply = *t.LastReply
		}
		out = append(out, w)
	})
	return out, err
}

// KeepaliveStatus is a watched tunnel's liveness, as status shows it.
type KeepaliveStatus struct {
	Alive     bool       `json:"alive"`
	DeadSince *time.Time `json:"dead_since,omitempty"`
	LastReply *time.Time `json:"last_reply,omitempty"`
	// LastReplyAge is the seconds since the last reply, when one is known.
	LastReplyAge *float64 `json:"last_reply_age_seconds,omitempty"`
}

func (k *KeepaliveStatus) String() string {
	s := "alive"
	if !k.Alive {
		s = "dead"
		if k.DeadSince != nil {
			s += " since " + k.DeadSince.Local().Format(time.RFC3339) + " (" + ageOf(now().Sub(*k.DeadSince)) + ")"
		}
	}
	if k.LastReplyAge == nil {
		return s + ", no reply known (is gre-hook watch running?)"
	}
	return s + ", last reply " + ageOf(time.Duration(*k.LastReplyAge*float64(time.Second))) + " ago"
}

// now is the clock of status, for tests.
var now = time.Now

// keepaliveStatus is tunnel c's liveness: dead or alive as its record
// says (the record is what up acts on), with the latest reply that the
// record or the watcher's liveness file knows. Nil for a tunnel without
// keepalive or not brought up.
func keepaliveStatus(c config.Tunnel, rec *state.Record, live []state.LivenessEntry) *KeepaliveStatus {
	t := rec.Find(c.Name)
	if c.Keepalive == nil || t == nil {
		return nil
	}
	k := &KeepaliveStatus{Alive: !t.Dead, DeadSince: t.DeadSince, LastReply: t.LastReply}
	for _, e := range live {
		if e.Underlay == c.Underlay && e.Tunnel == c.Name && !e.LastReply.IsZero() && (k.LastReply == nil || e.LastReply.After(*k.LastReply)) {
			last := e.LastReply
			k.LastReply = &last
		}
	}
	if k.LastReply != nil {
		age := now().Sub(*k.LastReply).Seconds()
		if age < 0 {
			age = 0
		}
		k.LastReplyAge = &age
	}
	return k
}

// adminKey names default route d of tunnel for snapshot.adminDefaults.
func adminKey(tunnel string, d plan.Route) string {
	return fmt.Sprintf("%s %s %d %d", tunnel, d.Dst, d.Table, d.Metric)
}

// adminDefaultsOf finds, for the diff, the default routes of want that
// the admin set by hand while the tunnel's peer was dead (setByAdmin):
// the tunnel does not take those back when its peer answers again.
func adminDefaultsOf(lg *ledger, want []plan.Tunnel, rec *state.Record, s *snapshot) map[string]bool {
	out := map[string]bool{}
	for _, t := range want {
		old := rec.Find(t.Link.Name)
		if old == nil || len(old.Withdrawn) == 0 {
			continue
		}
		for _, d := range t.Defaults {
			if lg.setByAdmin(old, d, routeAt(s.routes, d)) {
				out[adminKey(t.Link.Name, d)] = true
			}
		}
	}
	return out
}
