package peer

import (
	"net/netip"
	"time"

	"github.com/gre-hook/gre-hook/hook/config"
	"github.com/gre-hook/gre-hook/hook/engine"
	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/rtnl"
	"github.com/gre-hook/gre-hook/hook/state"
)

// What gre-hook watch follows, read in one pass over the records, the
// configs they name and the kernel's links (Engine.Watching).

// WatchedTunnel is a tunnel gre-hook watch sends keepalives on.
// The watcher takes it as it is (watch.Target).
type WatchedTunnel struct {
	Underlay string
	Tunnel   string
	// Local, Remote and the keys are the kernel link's, which a resolved
	// or moved endpoint may have changed since the config was read.
	Local, Remote netip.Addr
	IKey, OKey    uint32
	// Mark is the link's fwmark: the keepalives carry the same, so that
	// they are routed as the tunnel's own outer packets are, whatever
	// the policy in force (a config edit not yet applied changes neither).
	Mark     uint32
	Interval time.Duration
	Retries  int
	// Alive is the record's liveness, so that a watcher started while a
	// peer is dead carries on from there; DeadSince and LastReply are the
	// times the record and the watcher's liveness file kept (zero: none).
	// Sync: the record says a change is due or was cut short (dead, or
	// routes still to put back), and SetLiveness with the record's
	// liveness brings the kernel in line.
	Alive     bool
	DeadSince time.Time
	LastReply time.Time
	Sync      bool
}

// watchedTunnel is t, on underlay u, as the watcher sends keepalives on
// it: lk is its link, ct its config, and live the watcher's last liveness
// file, whose newer replies count.
func watchedTunnel(u string, t *state.Tunnel, ct config.Tunnel, lk *rtnl.Link, live []state.LivenessEntry) WatchedTunnel {
	w := WatchedTunnel{Underlay: u, Tunnel: t.Name, Local: lk.Local, Remote: lk.Remote, IKey: lk.IKey, OKey: lk.OKey, Mark: lk.FwMark,
		Interval: time.Duration(ct.Keepalive.Interval) * time.Second, Retries: ct.Keepalive.Retries, Alive: !t.Dead,
		Sync: t.Dead || len(t.Withdrawn) > 0}
	if t.DeadSince != nil {
		w.DeadSince = *t.DeadSince
	}
	if t.LastReply != nil {
		w.LastReply = *t.LastReply
	}
	for _, e := range live {
		if e.Underlay == u && e.Tunnel == t.Name && e.LastReply.After(w.LastReply) {
			w.LastReply = e.LastReply
		}
	}
	return w
}

// DynamicTunnel is a tunnel whose endpoints gre-hook watch follows: its
// remote is a DNS name, or its local is "auto", or both.
type DynamicTunnel struct {
	Underlay string
	Tunnel   string
	// Local and Remote are the kernel link's; zero while Unresolved.
	Local, Remote netip.Addr
	// RemoteName is the config's name for the remote, "" for an address,
	// and Family the family (4 or 6) the tunnel's mode needs of it.
	RemoteName      string
	Family          int
	ResolveInterval time.Duration
	// LocalAuto: the config gives no local, so the tunnel takes the
	// underlay's address, and follows it.
	LocalAuto bool
	// Unresolved: up found no address for RemoteName, and brought
	// nothing of the tunnel up.
	Unresolved bool
}

// Watching is what gre-hook watch follows, from one read of the records,
// the configs they name and the kernel's links: each record's tunnels
// judged by the config the record names, else by the watcher's --config.
type Watching struct {
	// Keepalives: every tunnel whose config has keepalive, with the
	// endpoints and keys its link has and the record's liveness.
	Keepalives []WatchedTunnel
	// Endpoints: every tunnel whose config gives its remote as a name or
	// its local as "auto". One with an address for its remote and a fixed
	// local is not listed.
	Endpoints []DynamicTunnel
}

// List lists what the watcher follows, each record's tunnels judged
// by the config explain gives for the record. A record or config that
// cannot be read leaves its tunnels out and is reported in err, with the
// others listed all the same.
func List(sys *engine.System, explain func(*state.Record) (*config.Config, error)) (Watching, error) {
	var out Watching
	live, _ := state.ReadLiveness(sys.Store.Dir)
	err := eachRecordTunnel(sys, explain, func(u string, t *state.Tunnel, ct config.Tunnel, lk *rtnl.Link) {
		if ct.Keepalive != nil && lk != nil {
			out.Keepalives = append(out.Keepalives, watchedTunnel(u, t, ct, lk, live))
		}
		if d, ok := dynamicTunnel(u, t, ct, lk); ok {
			out.Endpoints = append(out.Endpoints, d)
		}
	})
	return out, err
}

// dynamicTunnel is t, on underlay u, as the watcher follows its
// endpoints, if it does.
func dynamicTunnel(u string, t *state.Tunnel, ct config.Tunnel, lk *rtnl.Link) (DynamicTunnel, bool) {
	auto := !ct.Local.IsValid()
	if ct.RemoteName == "" && !auto {
		return DynamicTunnel{}, false
	}
	d := DynamicTunnel{Underlay: u, Tunnel: t.Name, RemoteName: ct.RemoteName, Family: 4,
		ResolveInterval: time.Duration(ct.ResolveInterval) * time.Second, LocalAuto: auto}
	if ct.Mode.Outer6() {
		d.Family = 6
	}
	switch {
	case t.Unresolved && ct.RemoteName != "":
		d.Unresolved = true
	case lk == nil:
		return DynamicTunnel{}, false // not (or no longer) gre-hook's tunnel
	default:
		d.Local, d.Remote = lk.Local, lk.Remote
	}
	return d, true
}

// eachRecordTunnel calls fn for every tunnel of every record that the
// config explaining the record (explain's) still has, with the kernel's
// link if it is gre-hook's GRE tunnel on that underlay (else nil). A
// record or config that cannot be read leaves its tunnels out and is
// reported in the error, the others listed all the same.
func eachRecordTunnel(sys *engine.System, explain func(*state.Record) (*config.Config, error),
	fn func(underlay string, t *state.Tunnel, ct config.Tunnel, lk *rtnl.Link)) error {
	recs, broken, err := sys.Store.All()
	if err != nil {
		return err
	}
	var errs []error
	for _, u := range engine.SortedKeys(broken) {
		errs = append(errs, broken[u])
	}
	list, err := sys.Net.Links()
	if err != nil {
		return err
	}
	links := map[string]rtnl.Link{}
	for _, l := range list {
		links[l.Name] = l
	}
	for _, u := range engine.SortedKeys(recs) {
		rec := recs[u]
		c, err := explain(rec)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		conf := map[string]config.Tunnel{}
		for _, t := range c.For(u) {
			conf[t.Name] = t
		}
		for i := range rec.Tunnels {
			t := &rec.Tunnels[i]
			ct, ok := conf[t.Name]
			if !ok {
				continue
			}
			var lk *rtnl.Link
			if l, ok := links[t.Name]; ok && l.GRE && l.Alias == plan.Alias(u) {
				lk = &l
			}
			fn(u, t, ct, lk)
		}
	}
	return engine.Join(errs)
}
