package watch

import (
	"context"
	"errors"
	"net/netip"
	"sort"
	"time"

	"github.com/gre-hook/gre-hook/hook"
	"github.com/gre-hook/gre-hook/hook/addrpolicy"
	"github.com/gre-hook/gre-hook/hook/localaddr"
	"github.com/gre-hook/gre-hook/hook/resolve"
)

// Endpoints that move (issue 14). A tunnel whose remote is a DNS name has
// the name resolved again every ResolveInterval, on a goroutine of its
// own, so that a slow DNS server holds neither keepalives nor the other
// names; when the address changes, the tunnel is moved in place
// (Mover.Retarget). One that up left unresolved is brought up when the
// name resolves (Mover.Reconcile). A tunnel with local = "auto" follows
// its underlay's address from the kernel's address events (AddrFollower):
// that costs no timer, and the follower runs only while such a tunnel is
// up. Moves run on the worker, one at a time, as SetLiveness does; after
// each the lists are read again, so keepalives go to the new addresses.

// Endpoint is a tunnel whose endpoints the watcher follows, as
// Mover.Endpoints reports it.
type Endpoint = hook.DynamicTunnel

func keyOf(e Endpoint) Key { return Key{e.Underlay, e.Tunnel} }

// Mover is the hook side of following endpoints.
type Mover interface {
	// Endpoints lists the tunnels in a record whose remote is a name or
	// whose local is "auto".
	Endpoints() ([]Endpoint, error)
	// Retarget changes a tunnel's endpoints in place; a zero address
	// keeps that endpoint.
	Retarget(ctx context.Context, underlay, tunnel string, local, remote netip.Addr) error
	// Reconcile brings up a tunnel the record lists as unresolved.
	Reconcile(ctx context.Context, underlay, tunnel string) error
}

// AddrFollower follows underlay addresses; *localaddr.Follower is one.
type AddrFollower interface {
	Follow(underlay string, addr netip.Addr)
	Forget(underlay string, family int)
	Run(ctx context.Context, out chan<- localaddr.Change) error
}

// retryUnresolved is how often a name no tunnel could come up with is
// tried again, when its resolve_interval is longer: such a tunnel is down,
// typically at boot before DNS is reachable.
const retryUnresolved = 10 * time.Second

// defaultResolveInterval is resolve_interval's default, for an Endpoint
// that gives none.
const defaultResolveInterval = 300 * time.Second

// endpoint is a followed tunnel's state.
type endpoint struct {
	Endpoint
	next      time.Time // next resolution due; zero without a name
	resolving bool      // a lookup is in flight
	pending   bool      // a Retarget or Reconcile is queued or running
	failed    string    // the last resolution error logged
	// repin is when to try again to pin the remote of a tunnel whose pin
	// the kernel flushed and whose underlay had no route to pin it
	// through (hook.ErrNoPinPath); zero when none is missing. repinWait
	// is the wait after that, doubled each time up to repinMax, and
	// repinErr the last error logged.
	repin     time.Time
	repinWait time.Duration
	repinErr  string
}

// repinFirst and repinMax bound the wait between two tries to pin a
// remote again: the route a DHCP client adds comes a moment after the
// address, and the watcher follows address events, not routes.
const (
	repinFirst = time.Second
	repinMax   = 30 * time.Second
)

// period is the time between two resolutions of e's name.
func (e *endpoint) period() time.Duration {
	p := e.ResolveInterval
	if p <= 0 {
		p = defaultResolveInterval
	}
	if e.Unresolved && p > retryUnresolved {
		p = retryUnresolved
	}
	return p
}

type addrKey struct {
	underlay string
	family   int
}

// resolution is a lookup's answer, for the loop.
type resolution struct {
	key  Key
	name string
	res  resolve.Result
}

// dynamic is the watcher's state for moving endpoints.
type dynamic struct {
	endpoints map[Key]*endpoint
	// followed is the address given to the AddrFollower per underlay and
	// family; stopAddrs ends its Run, nil when it does not run.
	followed  map[addrKey]netip.Addr
	stopAddrs func()
	// addrGen numbers the follower's Runs, so that the error of one
	// stopped meanwhile is told from the current one's.
	addrGen  int
	addrCh   chan localaddr.Change
	addrErr  chan addrFailure
	resolved chan resolution
	// stopped is closed when Run returns, so that lookups still in
	// flight do not wait for the loop for ever.
	stopped chan struct{}
}

func (w *Watcher) initDynamic() {
	w.dyn = dynamic{
		endpoints: map[Key]*endpoint{},
		followed:  map[addrKey]netip.Addr{},
		addrCh:    make(chan localaddr.Change, 16),
		addrErr:   make(chan addrFailure, 1),
		resolved:  make(chan resolution, 16),
		stopped:   make(chan struct{}),
	}
}

func (w *Watcher) stopDynamic() {
	close(w.dyn.stopped)
	if w.dyn.stopAddrs != nil {
		w.dyn.stopAddrs()
		w.dyn.stopAddrs = nil
	}
}

func (w *Watcher) endpointsSorted() []*endpoint {
	out := make([]*endpoint, 0, len(w.dyn.endpoints))
	for _, e := range w.dyn.endpoints {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := keyOf(out[i].Endpoint), keyOf(out[j].Endpoint)
		return a.Underlay < b.Underlay || a.Underlay == b.Underlay && a.Tunnel < b.Tunnel
	})
	return out
}

// reloadEndpoints asks the Mover for the tunnels to follow and merges
// them with those followed: a new name is resolved after its interval
// (up has just resolved it) or at once if unresolved; one followed
// already keeps its schedule.
func (w *Watcher) reloadEndpoints(now time.Time) {
	if w.Mover == nil {
		return
	}
	eps, err := w.Mover.Endpoints()
	if err != nil {
		w.logf("reading the tunnels whose endpoints move: %v; keeping the %d followed so far", err, len(w.dyn.endpoints))
		return
	}
	seen := map[Key]bool{}
	for _, ep := range eps {
		k := keyOf(ep)
		seen[k] = true
		e := w.dyn.endpoints[k]
		if e == nil {
			e = &endpoint{Endpoint: ep}
			w.dyn.endpoints[k] = e
			if ep.RemoteName != "" {
				e.next = now.Add(e.period())
				if ep.Unresolved {
					e.next = now
				}
			}
			if w.Verbose {
				w.logf("%s: following %s", ep.Tunnel, describeEndpoint(ep, e.period()))
			}
			continue
		}
		was := e.Unresolved
		e.Endpoint = ep
		switch {
		case ep.RemoteName == "":
			e.next = time.Time{}
		case e.next.IsZero(), was != ep.Unresolved, e.next.After(now.Add(e.period())):
			e.next = now.Add(e.period())
		}
	}
	for k := range w.dyn.endpoints {
		if !seen[k] {
			delete(w.dyn.endpoints, k)
		}
	}
	w.followAddrs()
}

func describeEndpoint(e Endpoint, every time.Duration) string {
	s := ""
	if e.RemoteName != "" {
		s = "remote " + e.RemoteName
		if e.Unresolved {
			s += " (not resolved yet)"
		} else {
			s += " (" + e.Remote.String() + ")"
		}
		s += ", resolved every " + every.String()
	}
	if e.LocalAuto {
		if s != "" {
			s += ", and "
		}
		s += "the address of " + e.Underlay
		if e.Local.IsValid() {
			s += " (" + e.Local.String() + ")"
		}
	}
	return s
}

// followAddrs has the AddrFollower follow the underlays of local =
// "auto" tunnels, and runs it while there are any. An underlay followed
// already is not given its address again: while its address is gone and
// none has come, the tunnel still has the old one, and the follower waits
// for the new.
func (w *Watcher) followAddrs() {
	if w.Addrs == nil {
		return
	}
	want := map[addrKey]netip.Addr{}
	for _, e := range w.endpointsSorted() {
		if e.LocalAuto && e.Local.IsValid() {
			want[addrKey{e.Underlay, familyOf(e.Local)}] = e.Local
		}
	}
	for k := range w.dyn.followed {
		if _, ok := want[k]; !ok {
			w.Addrs.Forget(k.underlay, k.family)
			delete(w.dyn.followed, k)
		}
	}
	for k, a := range want {
		if _, ok := w.dyn.followed[k]; !ok {
			w.Addrs.Follow(k.underlay, a)
			w.dyn.followed[k] = a
		}
	}
	switch {
	case len(want) > 0 && w.dyn.stopAddrs == nil:
		ctx, cancel := context.WithCancel(context.Background())
		w.dyn.stopAddrs = cancel
		w.dyn.addrGen++
		gen, out, stopped := w.dyn.addrGen, w.dyn.addrErr, w.dyn.stopped
		go func() {
			err := w.Addrs.Run(ctx, w.dyn.addrCh)
			if ctx.Err() == nil {
				select {
				case out <- addrFailure{gen, err}:
				case <-stopped:
				}
			}
		}()
	case len(want) == 0 && w.dyn.stopAddrs != nil:
		w.dyn.stopAddrs()
		w.dyn.stopAddrs = nil
	}
}

// addrFailure is the end of the follower's Run number gen.
type addrFailure struct {
	gen int
	err error
}

// addrsFailed takes the AddrFollower's end: it is started again at the
// next reload. The end of a Run that a reload stopped meanwhile (its
// error was on its way) is no news.
func (w *Watcher) addrsFailed(f addrFailure) {
	if f.gen != w.dyn.addrGen || w.dyn.stopAddrs == nil {
		return
	}
	w.logf("%v; the local addresses of local = \"auto\" tunnels are not followed until the next reload (SIGHUP)", f.err)
	w.dyn.stopAddrs()
	w.dyn.stopAddrs = nil
	for k := range w.dyn.followed {
		w.Addrs.Forget(k.underlay, k.family)
		delete(w.dyn.followed, k)
	}
}

func familyOf(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

// addrChanged moves the local = "auto" tunnels on an underlay whose
// address went away to the one that took its place.
func (w *Watcher) addrChanged(c localaddr.Change) {
	k := addrKey{c.Underlay, c.Family}
	if _, ok := w.dyn.followed[k]; ok {
		w.dyn.followed[k] = c.New
	}
	for _, e := range w.endpointsSorted() {
		if !e.LocalAuto || e.Underlay != c.Underlay || !e.Local.IsValid() || familyOf(e.Local) != c.Family || e.Local == c.New {
			continue
		}
		w.enqueueMove(e, change{kind: moveLocal, key: keyOf(e.Endpoint), local: c.New})
	}
}

// nextResolve is when the next name is due to be resolved.
func (w *Watcher) nextResolve() (time.Time, bool) {
	var due time.Time
	for _, e := range w.dyn.endpoints {
		if !e.repin.IsZero() && !e.pending && (due.IsZero() || e.repin.Before(due)) {
			due = e.repin
		}
		if e.next.IsZero() || e.resolving || e.pending {
			continue
		}
		if due.IsZero() || e.next.Before(due) {
			due = e.next
		}
	}
	return due, !due.IsZero()
}

// resolveDue starts a lookup of every name that is due.
func (w *Watcher) resolveDue(now time.Time) {
	lookup := w.Lookup
	if lookup == nil {
		lookup = resolve.System
	}
	wait := w.LookupWait
	if wait <= 0 {
		wait = resolve.DefaultWait
	}
	var own *addrpolicy.Own
	for _, e := range w.endpointsSorted() {
		if !e.repin.IsZero() && !e.pending && !now.Before(e.repin) {
			// Zero addresses: Retarget keeps the endpoints and only
			// pins the remote again.
			e.repin = time.Time{}
			w.enqueueMove(e, change{kind: moveLocal, key: keyOf(e.Endpoint)})
		}
		if e.next.IsZero() || e.resolving || e.pending || now.Before(e.next) {
			continue
		}
		if own == nil {
			own = &addrpolicy.Own{}
			if w.OwnAddrs != nil {
				if o, err := w.OwnAddrs(); err == nil {
					own = &o
				}
			}
		}
		e.resolving = true
		q := resolve.Query{Name: e.RemoteName, Family: e.Family}
		k, out, stopped, o := keyOf(e.Endpoint), w.dyn.resolved, w.dyn.stopped, *own
		go func() {
			r := resolve.All(context.Background(), lookup, []resolve.Query{q}, wait, o)[q]
			select {
			case out <- resolution{key: k, name: q.Name, res: r}:
			case <-stopped:
			}
		}()
	}
}

// lookedUp takes a lookup's answer: an unresolved tunnel whose name now
// resolves is brought up, and a tunnel whose address is no longer among
// the name's moves to the first. An error is logged when it differs from
// the last; the tunnel keeps its address.
func (w *Watcher) lookedUp(r resolution, now time.Time) {
	e := w.dyn.endpoints[r.key]
	if e == nil || e.RemoteName != r.name {
		return
	}
	e.resolving = false
	e.next = now.Add(e.period())
	if r.res.Err != nil {
		if msg := r.res.Err.Error(); msg != e.failed {
			e.failed = msg
			if e.Unresolved {
				w.logf("%s: remote %s: %v; the tunnel stays down, trying again every %s", e.Tunnel, e.RemoteName, r.res.Err, e.period())
			} else {
				w.logf("%s: remote %s: %v; keeping %s, trying again every %s", e.Tunnel, e.RemoteName, r.res.Err, e.Remote, e.period())
			}
		}
		return
	}
	e.failed = ""
	if e.Unresolved {
		w.logf("%s: remote %s resolves now (%s); bringing the tunnel up", e.Tunnel, e.RemoteName, r.res.Addr)
		w.enqueueMove(e, change{kind: bringUp, key: keyOf(e.Endpoint)})
		return
	}
	for _, a := range r.res.All {
		if a == e.Remote {
			return // a name with several addresses must not move the tunnel
		}
	}
	w.enqueueMove(e, change{kind: moveRemote, key: keyOf(e.Endpoint), remote: r.res.Addr})
}

func (w *Watcher) enqueueMove(e *endpoint, c change) {
	if e.pending {
		// The move in progress is followed by a reload and, for a name,
		// by the next lookup; an address change is queued after it.
		if c.kind != moveLocal {
			return
		}
	}
	e.pending = true
	w.queue = append(w.queue, c)
}

// moved takes the result of a Retarget or Reconcile, and reads the lists
// again: the tunnel's addresses changed, or it came up.
func (w *Watcher) moved(r result, now time.Time) {
	w.busy = false
	e := w.dyn.endpoints[r.key]
	if e != nil {
		e.pending = false
		for _, q := range w.queue {
			e.pending = e.pending || q.key == r.key && q.kind != setLiveness
		}
	}
	switch {
	case e != nil && errors.Is(r.err, hook.ErrNoPinPath):
		if e.repinWait = e.repinWait * 2; e.repinWait < repinFirst {
			e.repinWait = repinFirst
		} else if e.repinWait > repinMax {
			e.repinWait = repinMax
		}
		e.repin = now.Add(e.repinWait)
		// Said once, not at every try.
		if msg := r.err.Error(); msg != e.repinErr {
			e.repinErr = msg
			w.logf("%s: %v; trying again in %s, then at most every %s, and at each address change", r.key.Tunnel, r.err, e.repinWait, repinMax)
		}
	case r.err != nil:
		w.logf("%s: %v", r.key.Tunnel, r.err)
	}
	if e != nil && r.err == nil && (r.kind == moveLocal || r.kind == moveRemote) {
		e.repin, e.repinWait, e.repinErr = time.Time{}, 0, ""
	}
	w.reload(now)
}

// apply runs a change on the worker's goroutine.
func (w *Watcher) apply(c change) error {
	// Changes do not get Run's ctx: a SIGTERM must not cut a route
	// change short halfway. Run waits for them instead.
	ctx := context.Background()
	switch c.kind {
	case moveLocal, moveRemote:
		return w.Mover.Retarget(ctx, c.key.Underlay, c.key.Tunnel, c.local, c.remote)
	case bringUp:
		return w.Mover.Reconcile(ctx, c.key.Underlay, c.key.Tunnel)
	}
	return w.Engine.SetLiveness(ctx, c.key.Underlay, c.key.Tunnel, c.alive, c.lastReply)
}
