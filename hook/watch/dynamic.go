package watch

import (
	"context"
	"net/netip"
	"sort"
	"time"

	"github.com/gre-hook/gre-hook/hook"
	"github.com/gre-hook/gre-hook/hook/addrpolicy"
	"github.com/gre-hook/gre-hook/hook/localaddr"
	"github.com/gre-hook/gre-hook/hook/resolve"
)

// Endpoints that move. A tunnel whose remote is a DNS name has
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
// Engine.Watching lists it.
type Endpoint = hook.DynamicTunnel

func keyOf(e Endpoint) Key { return Key{e.Underlay, e.Tunnel} }

// Mover is the hook side of following endpoints.
type Mover interface {
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
	// lookup numbers the lookups started, so that the answer of one
	// started before the config changed the name is told apart.
	lookup  int
	pending bool   // a Retarget or Reconcile is queued or running
	failed  string // the last resolution error logged
	// answers are the addresses of the last lookups that resolved,
	// newest last; missed, how many of them in a row lacked the remote in
	// use; renamed, that the config gave the tunnel a new name whose first
	// answer decides at once.
	answers [][]netip.Addr
	missed  int
	renamed bool
	// retry is a Retarget that failed, to try again at retryAt; zero
	// addresses where nothing is left to retry. retryWait is the wait
	// after that, doubled each time up to retryMax, and retryErr the
	// last error logged.
	retry     change
	retryAt   time.Time
	retryWait time.Duration
	retryErr  string
}

// retryFirst and retryMax bound the wait between two tries of a move
// that failed: the run lock held by an ifup, or any other error of
// Retarget's.
const (
	retryFirst = time.Second
	retryMax   = 30 * time.Second
)

// answerMemory is how many answers of a name are kept to judge whether
// the remote in use is still among them.
const answerMemory = 8

// window is how many lookups in a row must lack the remote in use before
// the tunnel moves: two, or as many as the name has shown addresses
// lately, the one in use counted (an up took it from the name), so that a
// round-robin resolver that returns one address at a time never moves a
// tunnel that is among them.
func (e *endpoint) window() int {
	seen := map[netip.Addr]bool{e.Remote: true}
	for _, as := range e.answers {
		for _, a := range as {
			seen[a] = true
		}
	}
	if len(seen) > 2 {
		return len(seen)
	}
	return 2
}

func (e *endpoint) remember(as []netip.Addr) {
	e.answers = append(e.answers, as)
	if len(e.answers) > answerMemory {
		e.answers = e.answers[len(e.answers)-answerMemory:]
	}
}

// supersede drops from the retry what a newer change c replaces.
func (e *endpoint) supersede(c change) {
	if c.local.IsValid() {
		e.retry.local = netip.Addr{}
	}
	if c.remote.IsValid() {
		e.retry.remote = netip.Addr{}
	}
	if !e.retry.local.IsValid() && !e.retry.remote.IsValid() {
		e.retry, e.retryAt, e.retryWait, e.retryErr = change{}, time.Time{}, 0, ""
	}
}

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
	key    Key
	name   string
	lookup int // the endpoint's lookup number
	res    resolve.Result
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

// reloadEndpoints merges eps, the tunnels to follow as the engine lists
// them, with those followed: a new name is resolved after its interval
// (up has just resolved it) or at once if unresolved; one followed
// already keeps its schedule. err is the engine's: with none listed, the
// followed stay as they are.
func (w *Watcher) reloadEndpoints(now time.Time, eps []Endpoint, err error) {
	if w.Mover == nil {
		return
	}
	if err != nil && len(eps) == 0 {
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
		renamed := e.RemoteName != ep.RemoteName
		e.Endpoint = ep
		switch {
		case renamed:
			// A lookup of the old name in flight is no answer for the
			// new one: it is looked up now.
			e.resolving, e.answers, e.missed, e.failed = false, nil, 0, ""
			e.renamed = ep.RemoteName != "" && !ep.Unresolved
			e.next = time.Time{}
			if ep.RemoteName != "" {
				e.next = now
			}
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
		if !e.retryAt.IsZero() && !e.pending && (due.IsZero() || e.retryAt.Before(due)) {
			due = e.retryAt
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
		if !e.retryAt.IsZero() && !e.pending && !now.Before(e.retryAt) {
			// Not enqueueMove: the retry supersedes nothing, and keeps
			// its wait and the error logged.
			e.retryAt, e.pending = time.Time{}, true
			w.queue = append(w.queue, e.retry)
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
		e.lookup++
		q := resolve.Query{Name: e.RemoteName, Family: e.Family}
		k, n, out, stopped, o := keyOf(e.Endpoint), e.lookup, w.dyn.resolved, w.dyn.stopped, *own
		go func() {
			r := resolve.All(context.Background(), lookup, []resolve.Query{q}, wait, o)[q]
			select {
			case out <- resolution{key: k, name: q.Name, lookup: n, res: r}:
			case <-stopped:
			}
		}()
	}
}

// lookedUp takes a lookup's answer: an unresolved tunnel whose name now
// resolves is brought up. A tunnel keeps its remote while the remote is
// among the answers; it moves to the first address of the last answer
// once the remote has been missing from window lookups in a row (two,
// unless the name has shown more addresses lately), at once when its
// peer is dead or the config renamed it. An error, a refused answer
// included, is logged when it differs from the last; the tunnel keeps
// its address.
func (w *Watcher) lookedUp(r resolution, now time.Time) {
	e := w.dyn.endpoints[r.key]
	if e == nil || e.RemoteName != r.name || r.lookup != e.lookup {
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
	e.remember(r.res.All)
	for _, a := range r.res.All {
		if a == e.Remote {
			e.missed = 0
			return
		}
	}
	e.missed++
	t := w.tunnels[r.key]
	dead := t != nil && !t.alive
	if !e.renamed && !dead && e.missed < e.window() {
		return
	}
	if w.enqueueMove(e, change{kind: moveRemote, key: keyOf(e.Endpoint), remote: r.res.Addr}) {
		e.missed, e.renamed = 0, false
	}
}

// enqueueMove queues c for e, and reports whether it did.
func (w *Watcher) enqueueMove(e *endpoint, c change) bool {
	if e.pending {
		// The move in progress is followed by a reload and, for a name,
		// by the next lookup; an address change is queued after it.
		if c.kind != moveLocal {
			return false
		}
	}
	e.supersede(c)
	e.pending = true
	w.queue = append(w.queue, c)
	return true
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
	move := r.kind == moveLocal || r.kind == moveRemote
	switch {
	case e != nil && move && r.err != nil:
		// Any failure, a lock held by an ifup as much as another:
		// the move is tried again until it lands.
		e.retry = r.change
		if e.retryWait = e.retryWait * 2; e.retryWait < retryFirst {
			e.retryWait = retryFirst
		} else if e.retryWait > retryMax {
			e.retryWait = retryMax
		}
		e.retryAt = now.Add(e.retryWait)
		// Said once, not at every try.
		if msg := r.err.Error(); msg != e.retryErr {
			e.retryErr = msg
			w.logf("%s: %v; trying again in %s, then at most every %s, and at each address change", r.key.Tunnel, r.err, e.retryWait, retryMax)
		}
	case e != nil && move:
		e.supersede(r.change)
	case r.err != nil:
		w.logf("%s: %v", r.key.Tunnel, r.err)
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
