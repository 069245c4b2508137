// Package watch is `gre-hook watch`: it sends GRE keepalives on every
// tunnel whose config asks for them, tells from the replies whether each
// peer is alive, and on a change has the tunnel's routes withdrawn or put
// back (Engine.SetLiveness).
//
// One goroutine owns all the state. It sleeps in a select on: the packets
// the raw socket reads, one timer set to the next keepalive due, a reload
// signal (a record written or removed, a SIGHUP), and the result of the one
// SetLiveness in progress. SetLiveness runs on a goroutine of its own,
// because it takes the run lock and may wait for an ifup; keepalives go on
// meanwhile. With nothing to watch there is no timer at all.
package watch

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"time"

	"github.com/gre-hook/gre-hook/hook"
	"github.com/gre-hook/gre-hook/hook/addrpolicy"
	"github.com/gre-hook/gre-hook/hook/keepalive"
	"github.com/gre-hook/gre-hook/hook/resolve"
	"github.com/gre-hook/gre-hook/hook/state"
)

// Key names a tunnel: its underlay and its name.
type Key struct{ Underlay, Tunnel string }

func (k Key) String() string { return k.Tunnel + " on " + k.Underlay }

// Target is a tunnel to watch, as the engine lists it.
type Target = hook.WatchedTunnel

func targetKey(t Target) Key { return Key{t.Underlay, t.Tunnel} }

// Engine is the hook side the watcher drives.
type Engine interface {
	// Watching lists, from one read, the tunnels to watch (those in a
	// record whose config has keepalive) and those whose endpoints move
	// (whose remote is a name or whose local is "auto"), which a watcher
	// without a Mover ignores. An error with some of either listed is a record or
	// config that could not be read: the rest is listed all the same.
	Watching() ([]Target, []Endpoint, error)
	// SetLiveness records a peer dead or alive and brings the kernel in
	// line: routes withdrawn, or put back.
	SetLiveness(ctx context.Context, underlay, tunnel string, alive bool, lastReply time.Time) error
	// WriteLiveness replaces the file that status reads.
	WriteLiveness(entries []state.LivenessEntry) error
}

// Conn is the keepalive socket; *keepalive.Conn implements it.
type Conn interface {
	SendNonce(local, remote netip.Addr, okey, ikey uint32, nonce []byte) error
	Receive(ctx context.Context) (keepalive.Received, error)
}

// marker is a Conn whose packets can carry a fwmark, as *keepalive.Conn's
// can.
type marker interface {
	SetMark(mark uint32) error
}

// filterer is a Conn that can have the kernel drop packets from sources
// that are not peers, as *keepalive.Conn can.
type filterer interface {
	SetFilter(peers []netip.Addr, repliesOnly bool) error
}

// Watcher is the loop. Set the fields, then call Run once.
type Watcher struct {
	Engine Engine
	Conn   Conn
	Log    io.Writer
	// Verbose also logs each reload.
	Verbose bool
	// Reload receives a value whenever the set of tunnels may have
	// changed: a record written or removed, a SIGHUP.
	Reload <-chan struct{}

	// Mover, when set, has the watcher follow the tunnels whose remote
	// is a DNS name or whose local is "auto" (dynamic.go).
	Mover Mover
	// Lookup resolves names (nil: resolve.System), each lookup within
	// LookupWait (0: resolve.DefaultWait).
	Lookup     resolve.LookupFunc
	LookupWait time.Duration
	// OwnAddrs reads the router's addresses, which a name's answers may
	// not be (nil: the rest of the address policy applies).
	OwnAddrs func() (addrpolicy.Own, error)
	// Addrs follows underlay addresses; nil: local = "auto" is not
	// followed.
	Addrs AddrFollower
	dyn   dynamic
	// Nonces makes the keepalives' nonces (nil: Run draws a key).
	Nonces *keepalive.Nonces
	nonce  [keepalive.NonceLen]byte // the one being sent
	seq    uint64                   // the last sequence number sent, on any tunnel
	// mark is the socket's fwmark, once markSet: one socket serves every
	// tunnel, so it changes only when a tunnel has another mark.
	mark    uint32
	markSet bool

	tunnels map[Key]*tunnel
	// byPair finds the tunnels a packet from Src to Dst belongs to.
	byPair  map[[2]netip.Addr][]*tunnel
	peers   []netip.Addr // the filter last set, sorted
	filtSet bool

	queue []change // SetLiveness, Retarget and Reconcile calls waiting their turn
	busy  bool     // one in progress

	watching int  // tunnels at the last reload, for -v
	reloaded bool // a reload has been done

	dirty     bool // the liveness file is behind
	lastFlush time.Time
}

// tunnel is a watched tunnel's state.
type tunnel struct {
	Target
	sent   bool // a keepalive went out and its interval is not over
	heard  bool // a reply came from the peer in this interval
	missed int  // intervals in a row that ended with nothing heard
	alive  bool // what the watcher believes
	// applied is the liveness the engine last accepted (the record's);
	// pending, that a SetLiveness for this tunnel is queued or running.
	applied, pending bool
	lastReply        time.Time
	written          time.Time // the lastReply the liveness file has
	silentSince      time.Time // the last packet heard, or when watching began
	deadSince        time.Time
	next             time.Time // next keepalive due
	sendErr          string    // the send error last logged, "" once sends work

	// recent are the sequence numbers of the last keepalives sent, whose
	// replies count (0: none, or already answered); nextRecent is the
	// slot of the next.
	recent     [recentNonces]uint64
	nextRecent int
}

type change struct {
	kind      changeKind
	key       Key
	alive     bool
	lastReply time.Time
	// local and remote are a Retarget's (zero: keep that endpoint).
	local, remote netip.Addr
}

type changeKind int

const (
	setLiveness changeKind = iota
	moveLocal
	moveRemote
	bringUp
)

type result struct {
	change
	err error
}

func (w *Watcher) logf(format string, args ...interface{}) {
	fmt.Fprintf(w.Log, "gre-hook: watch: "+format+"\n", args...)
}

// Run watches until ctx is done, then lets a SetLiveness in progress
// finish, writes the liveness file a last time and returns nil. It
// returns an error only if the socket fails.
func (w *Watcher) Run(ctx context.Context) error {
	if w.Nonces == nil {
		n, err := keepalive.NewNonces()
		if err != nil {
			return err
		}
		w.Nonces = n
	}
	w.tunnels = map[Key]*tunnel{}
	w.byPair = map[[2]netip.Addr][]*tunnel{}
	w.initDynamic()
	defer w.stopDynamic()

	recvCtx, stopRecv := context.WithCancel(context.Background())
	defer stopRecv()
	packets, recvErr := w.receive(recvCtx)
	work := make(chan change)
	results := make(chan result, 1)
	defer close(work)
	go func() {
		for c := range work {
			results <- result{c, w.apply(c)}
		}
	}()

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	// The file a watcher before this one left is stale: replace it.
	w.dirty = true
	w.reload(time.Now())
	for {
		var timerC <-chan time.Time
		if due, ok := w.nextDue(); ok {
			timer.Reset(time.Until(due))
			timerC = timer.C
		}
		var workC chan<- change
		var next change
		if len(w.queue) > 0 && !w.busy {
			workC, next = work, w.queue[0]
		}
		select {
		case <-ctx.Done():
			if w.busy {
				w.done(<-results)
			}
			w.flush(time.Now())
			return nil
		case err := <-recvErr:
			if w.busy {
				w.done(<-results)
			}
			w.flush(time.Now())
			return err
		case r := <-packets:
			w.heard(r)
		case <-timerC:
			// Packets already read count for the interval that
			// ends now, whichever case select picked first.
			for n := len(packets); n > 0; n-- {
				w.heard(<-packets)
			}
			now := time.Now()
			w.tick(now)
			w.resolveDue(now)
		case r := <-w.dyn.resolved:
			w.lookedUp(r, time.Now())
		case c := <-w.dyn.addrCh:
			w.addrChanged(c)
		case f := <-w.dyn.addrErr:
			w.addrsFailed(f)
		case <-w.Reload:
			w.reload(time.Now())
		case workC <- next:
			w.queue = w.queue[1:]
			w.busy = true
		case r := <-results:
			w.done(r)
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// receive reads the socket on its own goroutine until ctx is done: the
// replies, and the error that ends it, if the socket fails.
func (w *Watcher) receive(ctx context.Context) (<-chan keepalive.Received, <-chan error) {
	packets := make(chan keepalive.Received, 256)
	recvErr := make(chan error, 1)
	go func() {
		for {
			r, err := w.Conn.Receive(ctx)
			if err != nil {
				if ctx.Err() == nil {
					recvErr <- err
				}
				return
			}
			select {
			case packets <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	return packets, recvErr
}

// nextDue is when the loop must next wake: the earliest keepalive due,
// name to resolve again, or the liveness file's next write. None when
// there is nothing to watch.
func (w *Watcher) nextDue() (time.Time, bool) {
	due, _ := w.nextResolve()
	for _, t := range w.tunnels {
		if due.IsZero() || t.next.Before(due) {
			due = t.next
		}
	}
	if w.dirty {
		f := w.lastFlush.Add(w.flushGap())
		if due.IsZero() || f.Before(due) {
			due = f
		}
	}
	return due, !due.IsZero()
}

// refreshGap is how often, at most, the liveness file is rewritten only
// because peers that keep answering have newer replies. A change a reader
// must see at once is written at once: a peer dead or alive again, the
// first reply from a peer, the first interval a peer leaves unanswered
// (from then on its last reply in the file is exact), a tunnel watched or
// no longer. So while a peer answers, status may show its last reply up
// to refreshGap (or its interval, if longer) older than it is.
var refreshGap = 10 * time.Second

// flushGap is the least time between two writes of the liveness file for
// replies alone: refreshGap, or the shortest interval watched if longer,
// so that a busy peer does not cost a write per packet nor 100 tunnels a
// write a second.
func (w *Watcher) flushGap() time.Duration {
	gap := time.Duration(0)
	for _, t := range w.tunnels {
		if gap == 0 || t.Interval < gap {
			gap = t.Interval
		}
	}
	if gap < refreshGap {
		gap = refreshGap
	}
	return gap
}

// tick ends the interval of every tunnel whose keepalive is due, declares
// dead those that have now gone retries intervals unheard, and sends the
// next keepalives.
func (w *Watcher) tick(now time.Time) {
	for _, t := range w.tunnelsSorted() {
		if now.Before(t.next) {
			continue
		}
		if t.sent {
			if t.heard {
				t.missed = 0
			} else {
				t.missed++
				if !t.lastReply.Equal(t.written) {
					w.dirty = true
					w.lastFlush = time.Time{}
				}
			}
		}
		t.heard = false
		if t.alive && t.missed >= t.Retries {
			t.alive = false
			t.deadSince = now
			w.logf("%s: peer %s dead: no reply for %s (%d keepalives every %s unanswered); withdrawing its routes",
				t.Tunnel, t.Remote, now.Sub(t.silentSince).Round(time.Millisecond), t.missed, t.Interval)
			w.dirty = true
			w.lastFlush = time.Time{}
		}
		if t.alive != t.applied && !t.pending {
			w.enqueue(t)
		}
		if err := w.send(t); err != nil {
			// A missing route or address: the underlay is going
			// away, or the kernel refuses the local address. The
			// interval still counts as unanswered. Said once, and
			// again when it clears, not every interval.
			if msg := err.Error(); msg != t.sendErr {
				t.sendErr = msg
				w.logf("%s: %v", t.Tunnel, err)
			}
		} else if t.sendErr != "" {
			t.sendErr = ""
			w.logf("%s: keepalives to %s go out again", t.Tunnel, t.Remote)
		}
		t.sent = true
		t.next = t.next.Add(t.Interval)
		if !t.next.After(now) {
			// The loop was held up: start again from now rather
			// than send a burst.
			t.next = now.Add(t.Interval)
		}
	}
	if w.dirty && !now.Before(w.lastFlush.Add(w.flushGap())) {
		w.flush(now)
	}
}

// recentNonces is how many of a tunnel's last keepalives can still be
// answered: a reply that comes up to 3 intervals late counts.
const recentNonces = 4

// send sends t's next keepalive, with a nonce of a sequence number never
// sent before by this process, which the reply must bring back.
func (w *Watcher) send(t *tunnel) error {
	w.seq++
	w.Nonces.Put(&w.nonce, t.Local, t.Remote, t.IKey, w.seq)
	t.recent[t.nextRecent] = w.seq
	t.nextRecent = (t.nextRecent + 1) % recentNonces
	if m, ok := w.Conn.(marker); ok && (!w.markSet || w.mark != t.Mark) {
		if err := m.SetMark(t.Mark); err != nil {
			return err
		}
		w.mark, w.markSet = t.Mark, true
	}
	return w.Conn.SendNonce(t.Local, t.Remote, t.OKey, t.IKey, w.nonce[:])
}

// heard counts a reply as a sign of life of the tunnel whose keepalive it
// answers: same outer addresses, the key the inner header carried (our
// input key), if any, and the nonce of one of that tunnel's recent
// keepalives, which then counts no more. Nothing else counts: not the
// peer's own keepalives nor its data, not a reply without a nonce or with
// a stale or made-up one. Anyone can send GRE with the peer's address as
// its source; only the peer, or the path to it, has seen the nonce.
func (w *Watcher) heard(r keepalive.Received) {
	if !r.Reply() || !r.HasNonce {
		return
	}
	for _, t := range w.byPair[[2]netip.Addr{r.Src, r.Dst}] {
		if t.IKey != 0 && (!r.HasKey || r.Key != t.IKey) || t.IKey == 0 && r.HasKey {
			continue
		}
		if !t.answers(w.Nonces, &r.Nonce) {
			continue
		}
		t.heard = true
		if t.lastReply.IsZero() {
			w.lastFlush = time.Time{} // the first reply: write it now
		}
		t.lastReply = r.At
		t.silentSince = r.At
		t.missed = 0
		w.dirty = true
		if !t.alive {
			w.logf("%s: peer %s alive again after %s dead; putting its routes back",
				t.Tunnel, t.Remote, r.At.Sub(t.deadSince).Round(time.Millisecond))
			t.alive = true
			t.deadSince = time.Time{}
			w.lastFlush = time.Time{}
			if !t.pending {
				w.enqueue(t)
			}
		}
	}
}

// answers reports whether nonce is that of one of t's recent keepalives
// not yet answered, and marks it answered.
func (t *tunnel) answers(n *keepalive.Nonces, nonce *[keepalive.NonceLen]byte) bool {
	seq, ok := n.Check(nonce, t.Local, t.Remote, t.IKey)
	if !ok || seq == 0 {
		return false
	}
	for i, s := range t.recent {
		if s == seq {
			t.recent[i] = 0
			return true
		}
	}
	return false
}

func (w *Watcher) enqueue(t *tunnel) {
	t.pending = true
	w.queue = append(w.queue, change{kind: setLiveness, key: targetKey(t.Target), alive: t.alive, lastReply: t.lastReply})
}

// done takes the result of a SetLiveness. If the tunnel's liveness changed
// again meanwhile, or the call failed, the next tick queues another.
func (w *Watcher) done(r result) {
	if r.kind != setLiveness {
		w.moved(r, time.Now())
		return
	}
	w.busy = false
	t := w.tunnels[r.key]
	if t == nil {
		return
	}
	t.pending = false
	if r.err != nil {
		what := "dead"
		if r.alive {
			what = "alive"
		}
		w.logf("%s: marking peer %s %s: %v; trying again in %s", t.Tunnel, t.Remote, what, r.err, t.Interval)
		return
	}
	t.applied = r.alive
}

// reload asks the engine for the tunnels to watch and merges them with
// what is watched: new ones start at once, gone ones are forgotten, and
// those that stay keep their counts. The tunnels whose endpoints move are
// read again too.
func (w *Watcher) reload(now time.Time) {
	targets, eps, err := w.Engine.Watching()
	if w.Mover == nil {
		eps = nil // nothing follows them
	}
	if err != nil && (len(targets) > 0 || len(eps) > 0) {
		// Some records or configs could not be read; the others are
		// followed all the same.
		w.logf("%v", err)
	}
	w.reloadEndpoints(now, eps, err)
	if err != nil && len(targets) == 0 {
		w.logf("reading what to watch: %v; keeping the %d tunnel(s) watched so far", err, len(w.tunnels))
		return
	}
	seen := map[Key]bool{}
	for _, tg := range targets {
		k := targetKey(tg)
		seen[k] = true
		t := w.tunnels[k]
		if t == nil {
			t = &tunnel{Target: tg, alive: tg.Alive, applied: tg.Alive, silentSince: now, next: now, lastReply: tg.LastReply}
			if !tg.Alive {
				t.deadSince = now
				if !tg.DeadSince.IsZero() {
					t.deadSince = tg.DeadSince
				}
			}
			if tg.Sync {
				// After a crash or a restart: make the kernel match the
				// record; a failure is tried again at the next tick.
				t.applied = !tg.Alive
				w.enqueue(t)
			}
			w.tunnels[k] = t
			w.logf("%s: watching peer %s from %s, a keepalive every %s, dead after %d unanswered",
				tg.Tunnel, tg.Remote, tg.Local, tg.Interval, tg.Retries)
			w.dirty = true
			continue
		}
		if t.Interval != tg.Interval && t.next.After(now.Add(tg.Interval)) {
			t.next = now.Add(tg.Interval)
		}
		if t.Remote != tg.Remote || t.Local != tg.Local {
			// Moved: a new peer, whose silence counts from now and
			// whose first reply is written at once. Replies to the
			// old addresses no longer match (byPair, the nonces).
			t.lastReply, t.silentSince, t.missed, t.sent, t.heard = time.Time{}, now, 0, false, false
			t.recent = [recentNonces]uint64{}
			w.dirty = true
		}
		alive := t.alive
		t.Target = tg
		if !t.pending {
			t.applied = tg.Alive
		}
		t.alive = alive
	}
	for k, t := range w.tunnels {
		if !seen[k] {
			w.logf("%s: no longer watching peer %s", t.Tunnel, t.Remote)
			delete(w.tunnels, k)
			w.dirty = true
		}
	}
	if w.dirty {
		w.lastFlush = time.Time{}
	}
	w.byPair = map[[2]netip.Addr][]*tunnel{}
	peers := map[netip.Addr]bool{}
	for _, t := range w.tunnelsSorted() {
		p := [2]netip.Addr{t.Remote, t.Local}
		w.byPair[p] = append(w.byPair[p], t)
		peers[t.Remote] = true
	}
	if w.Verbose && (len(w.tunnels) != w.watching || !w.reloaded) {
		w.logf("watching %d tunnel(s)", len(w.tunnels))
	}
	w.watching, w.reloaded = len(w.tunnels), true
	w.setFilter(peers)
}

// setFilter has the kernel pass only replies with a nonce from peers, so
// that the tunnels' own traffic and other GRE do not wake the watcher. With no
// peers it passes nothing: 0.0.0.0 is never a source. Setting it discards
// what the socket holds, at worst one reply: it is set only when the peers
// change.
func (w *Watcher) setFilter(set map[netip.Addr]bool) {
	f, ok := w.Conn.(filterer)
	if !ok {
		return
	}
	peers := make([]netip.Addr, 0, len(set))
	for p := range set {
		peers = append(peers, p)
	}
	sort.Slice(peers, func(i, j int) bool { return peers[i].Less(peers[j]) })
	if len(peers) == 0 {
		peers = []netip.Addr{netip.IPv4Unspecified()}
	}
	if len(peers) > maxFilterPeers {
		peers = nil // any source: the filter cannot hold them all
	}
	if w.filtSet && equalAddrs(peers, w.peers) {
		return
	}
	if err := f.SetFilter(peers, true); err != nil {
		w.logf("%v; every GRE packet the host receives will wake the watcher", err)
		return
	}
	w.peers, w.filtSet = peers, true
}

// maxFilterPeers is what keepalive.SetFilter accepts.
const maxFilterPeers = 250

func equalAddrs(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (w *Watcher) tunnelsSorted() []*tunnel {
	out := make([]*tunnel, 0, len(w.tunnels))
	for _, t := range w.tunnels {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := targetKey(out[i].Target), targetKey(out[j].Target)
		if a.Underlay != b.Underlay {
			return a.Underlay < b.Underlay
		}
		return a.Tunnel < b.Tunnel
	})
	return out
}

// flush writes the liveness file.
func (w *Watcher) flush(now time.Time) {
	w.lastFlush = now
	w.dirty = false
	var entries []state.LivenessEntry
	for _, t := range w.tunnelsSorted() {
		e := state.LivenessEntry{Underlay: t.Underlay, Tunnel: t.Tunnel, Remote: t.Remote, Alive: t.alive, LastReply: t.lastReply}
		t.written = t.lastReply
		if !t.alive {
			e.DeadSince = t.deadSince
		}
		entries = append(entries, e)
	}
	if err := w.Engine.WriteLiveness(entries); err != nil {
		w.logf("%v", err)
	}
}
