package watch

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gre-hook/gre-hook/hook/keepalive"
	"github.com/gre-hook/gre-hook/hook/state"
)

var (
	site1 = netip.MustParseAddr("198.51.100.1")
	site2 = netip.MustParseAddr("203.0.113.1")
	site3 = netip.MustParseAddr("203.0.113.77")
)

// fakeConn reflects keepalives as a live peer would, unless the peer is
// cut off, and counts what was sent to each peer.
type fakeConn struct {
	mu          sync.Mutex
	cut         map[netip.Addr]bool
	sent        map[netip.Addr]int
	answered    map[netip.Addr]int // keepalives answered since the last cut/restore
	unanswerd   map[netip.Addr]int // keepalives not answered since the last cut/restore
	in          chan keepalive.Received
	filters     [][]netip.Addr
	from        map[netip.Addr]netip.Addr // the local of the last keepalive to each remote
	lastReply   keepalive.Received        // the last reply made
	repliesOnly []bool
	mark        uint32                // the socket's SO_MARK
	marks       map[netip.Addr]uint32 // the mark of the last keepalive to each remote
}

func (c *fakeConn) SetMark(mark uint32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mark = mark
	return nil
}

func (c *fakeConn) markOf(remote netip.Addr) (uint32, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.marks[remote]
	return m, ok
}

func newFakeConn() *fakeConn {
	return &fakeConn{cut: map[netip.Addr]bool{}, sent: map[netip.Addr]int{}, answered: map[netip.Addr]int{},
		unanswerd: map[netip.Addr]int{}, in: make(chan keepalive.Received, 1024), from: map[netip.Addr]netip.Addr{}, marks: map[netip.Addr]uint32{}}
}

func (c *fakeConn) SendNonce(local, remote netip.Addr, okey, ikey uint32, nonce []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent[remote]++
	c.from[remote] = local
	c.marks[remote] = c.mark
	if c.cut[remote] {
		c.unanswerd[remote]++
		return nil
	}
	c.answered[remote]++
	h := keepalive.Header{Src: remote, Dst: local, Proto: keepalive.ProtoKeepalive, Key: ikey, HasKey: ikey != 0}
	r := keepalive.Received{Header: h, At: time.Now(), HasNonce: len(nonce) == keepalive.NonceLen}
	copy(r.Nonce[:], nonce)
	c.in <- r
	c.lastReply = r
	return nil
}

func (c *fakeConn) Receive(ctx context.Context) (keepalive.Received, error) {
	select {
	case r := <-c.in:
		return r, nil
	case <-ctx.Done():
		return keepalive.Received{}, ctx.Err()
	}
}

func (c *fakeConn) SetFilter(peers []netip.Addr, repliesOnly bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.filters = append(c.filters, append([]netip.Addr(nil), peers...))
	c.repliesOnly = append(c.repliesOnly, repliesOnly)
	return nil
}

// setCut cuts or restores the path to remote and starts the counts again.
func (c *fakeConn) setCut(remote netip.Addr, cut bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut[remote] = cut
	c.answered[remote], c.unanswerd[remote] = 0, 0
}

func (c *fakeConn) counts(remote netip.Addr) (sent, answered, unanswered int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sent[remote], c.answered[remote], c.unanswerd[remote]
}

// call is one SetLiveness, with the fake conn's counts at the time.
type call struct {
	key                  Key
	alive                bool
	answered, unanswered int
}

type fakeEngine struct {
	mu      sync.Mutex
	conn    *fakeConn
	targets []Target
	fail    error
	calls   chan call
	written [][]state.LivenessEntry
	// mover, when set, has the endpoints Watching lists.
	mover *fakeMover
}

func (e *fakeEngine) setTargets(ts ...Target) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.targets = append([]Target(nil), ts...)
}

func (e *fakeEngine) Watching() ([]Target, []Endpoint, error) {
	e.mu.Lock()
	ts, m := append([]Target(nil), e.targets...), e.mover
	e.mu.Unlock()
	if m == nil {
		return ts, nil, nil
	}
	eps, err := m.Endpoints()
	return ts, eps, err
}

func (e *fakeEngine) SetLiveness(ctx context.Context, underlay, tunnel string, alive bool, lastReply time.Time) error {
	e.mu.Lock()
	fail := e.fail
	e.mu.Unlock()
	var remote netip.Addr
	for _, t := range e.targets {
		if t.Underlay == underlay && t.Tunnel == tunnel {
			remote = t.Remote
		}
	}
	_, a, u := e.conn.counts(remote)
	e.calls <- call{Key{underlay, tunnel}, alive, a, u}
	return fail
}

func (e *fakeEngine) WriteLiveness(entries []state.LivenessEntry) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.written = append(e.written, append([]state.LivenessEntry(nil), entries...))
	return nil
}

func (e *fakeEngine) lastWritten() []state.LivenessEntry {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.written) == 0 {
		return nil
	}
	return e.written[len(e.written)-1]
}

// syncBuf is a log safe to read while the watcher writes it.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type rig struct {
	t      *testing.T
	conn   *fakeConn
	eng    *fakeEngine
	log    *syncBuf
	reload chan struct{}
	stop   func()
	done   chan error
}

const (
	testInterval = 40 * time.Millisecond
	testRetries  = 3
)

func target(tunnel string, remote netip.Addr) Target {
	return Target{Underlay: "eth1", Tunnel: tunnel, Local: site1, Remote: remote, Interval: testInterval, Retries: testRetries, Alive: true}
}

func start(t *testing.T, targets ...Target) *rig {
	t.Helper()
	return startWith(t, newFakeConn(), targets...)
}

func startWith(t *testing.T, conn *fakeConn, targets ...Target) *rig {
	t.Helper()
	return startRig(t, conn, nil, targets...)
}

// startRig starts a watcher that configure (if not nil) may add to.
func startRig(t *testing.T, conn *fakeConn, configure func(*Watcher), targets ...Target) *rig {
	t.Helper()
	r := &rig{t: t, conn: conn, eng: &fakeEngine{conn: conn, calls: make(chan call, 100)}, log: &syncBuf{}, reload: make(chan struct{}, 1), done: make(chan error, 1)}
	r.eng.setTargets(targets...)
	w := &Watcher{Engine: r.eng, Conn: conn, Log: r.log, Reload: r.reload}
	if configure != nil {
		configure(w)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { r.done <- w.Run(ctx) }()
	stopped := false
	r.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return within 5s of the stop")
		}
	}
	t.Cleanup(r.stop)
	return r
}

func (r *rig) nextCall(within time.Duration) call {
	r.t.Helper()
	return receive(r, r.eng.calls, "SetLiveness", within)
}

func (r *rig) noCall(within time.Duration) {
	r.t.Helper()
	nothing(r, r.eng.calls, "SetLiveness", within)
}

// receive takes the next value from ch, or fails the test after within.
func receive[T any](r *rig, ch <-chan T, what string, within time.Duration) T {
	r.t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(within):
		r.t.Fatalf("no %s within %v; log:\n%s", what, within, r.log.String())
	}
	var zero T
	return zero
}

// nothing fails the test if ch yields a value within the time.
func nothing[T any](r *rig, ch <-chan T, what string, within time.Duration) {
	r.t.Helper()
	select {
	case v := <-ch:
		r.t.Fatalf("unexpected %s %+v; log:\n%s", what, v, r.log.String())
	case <-time.After(within):
	}
}

// waitFor polls cond until it holds or 5s pass.
func (r *rig) waitFor(what string, cond func() bool) {
	r.t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	r.t.Fatalf("after 5s: not %s; log:\n%s", what, r.log.String())
}

func TestDeadAfterRetriesAndAliveOnFirstReply(t *testing.T) {
	r := start(t, target("gre-site2", site2))
	r.waitFor("answered 3 keepalives", func() bool { _, a, _ := r.conn.counts(site2); return a >= 3 })
	r.noCall(0)

	r.conn.setCut(site2, true)
	c := r.nextCall(5 * time.Second)
	if c.alive || c.key != (Key{"eth1", "gre-site2"}) {
		t.Fatalf("SetLiveness %+v, want gre-site2 on eth1 dead", c)
	}
	// Dead at the tick after the retries-th unanswered keepalive, which
	// sends one more before the call is made.
	if c.unanswered < testRetries || c.unanswered > testRetries+1 {
		t.Errorf("declared dead after %d unanswered keepalives, want %d (or %d, the one sent at that tick)", c.unanswered, testRetries, testRetries+1)
	}
	log := r.log.String()
	if !strings.Contains(log, "gre-site2: peer 203.0.113.1 dead: no reply for ") {
		t.Errorf("no line naming the tunnel, the peer and the silence:\n%s", log)
	}
	if strings.Count(log, " dead: ") != 1 {
		t.Errorf("want one dead line:\n%s", log)
	}
	r.waitFor("liveness file saying dead", func() bool {
		l := r.eng.lastWritten()
		return len(l) == 1 && !l[0].Alive && !l[0].DeadSince.IsZero() && !l[0].LastReply.IsZero()
	})
	r.noCall(3 * testInterval) // dead once, not at every tick

	r.conn.setCut(site2, false)
	c = r.nextCall(5 * time.Second)
	if !c.alive {
		t.Fatalf("SetLiveness %+v, want alive", c)
	}
	if c.answered != 1 {
		t.Errorf("alive after %d answered keepalives, want the first", c.answered)
	}
	if !strings.Contains(r.log.String(), "gre-site2: peer 203.0.113.1 alive again after ") {
		t.Errorf("no alive line:\n%s", r.log.String())
	}
	r.waitFor("liveness file saying alive", func() bool {
		l := r.eng.lastWritten()
		return len(l) == 1 && l[0].Alive && l[0].DeadSince.IsZero()
	})
}

func TestDeadRecordStaysDeadUntilAReply(t *testing.T) {
	tg := target("gre-site2", site2)
	tg.Alive = false
	conn := newFakeConn()
	conn.setCut(site2, true)
	r := startWith(t, conn, tg)
	r.noCall(6 * testInterval)
	r.conn.setCut(site2, false)
	if c := r.nextCall(5 * time.Second); !c.alive {
		t.Fatalf("SetLiveness %+v, want alive", c)
	}
}

// A watcher started after a crash or a restart, whose record says a
// change is due or was cut short (Sync), makes the kernel match the record
// first: one SetLiveness with the record's liveness, even with the peer
// still silent. It keeps the record's time of death and last reply.
func TestRestartSyncsAndKeepsTimes(t *testing.T) {
	tg := target("gre-site2", site2)
	tg.Alive, tg.Sync = false, true
	tg.DeadSince = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	tg.LastReply = tg.DeadSince.Add(-3 * time.Second)
	conn := newFakeConn()
	conn.setCut(site2, true)
	r := startWith(t, conn, tg)
	if c := r.nextCall(5 * time.Second); c.alive || c.key.Tunnel != "gre-site2" {
		t.Fatalf("SetLiveness %+v, want the record's dead", c)
	}
	r.noCall(4 * testInterval)
	r.waitFor("the liveness file with the record's times", func() bool {
		l := r.eng.lastWritten()
		return len(l) == 1 && !l[0].Alive && l[0].DeadSince.Equal(tg.DeadSince) && l[0].LastReply.Equal(tg.LastReply)
	})
	r.conn.setCut(site2, false)
	if c := r.nextCall(5 * time.Second); !c.alive {
		t.Fatalf("SetLiveness %+v, want alive", c)
	}
}

func TestFailedSetLivenessIsRetried(t *testing.T) {
	r := start(t, target("gre-site2", site2))
	r.eng.mu.Lock()
	r.eng.fail = errors.New("lock busy")
	r.eng.mu.Unlock()
	r.conn.setCut(site2, true)
	if c := r.nextCall(5 * time.Second); c.alive {
		t.Fatalf("%+v, want dead", c)
	}
	r.eng.mu.Lock()
	r.eng.fail = nil
	r.eng.mu.Unlock()
	if c := r.nextCall(5 * time.Second); c.alive {
		t.Fatalf("%+v, want dead again (the retry)", c)
	}
	r.noCall(3 * testInterval)
	if !strings.Contains(r.log.String(), "lock busy; trying again") {
		t.Errorf("the failure is not logged:\n%s", r.log.String())
	}
}

func TestTunnelsComeAndGo(t *testing.T) {
	r := start(t, target("gre-site2", site2))
	r.waitFor("sending to site2", func() bool { s, _, _ := r.conn.counts(site2); return s >= 2 })

	r.eng.setTargets(target("gre-site2", site2), target("gre-site3", site3))
	r.reload <- struct{}{}
	r.waitFor("sending to site3", func() bool { s, _, _ := r.conn.counts(site3); return s >= 2 })
	r.waitFor("both in the liveness file", func() bool { return len(r.eng.lastWritten()) == 2 })

	r.eng.setTargets(target("gre-site3", site3))
	r.reload <- struct{}{}
	r.waitFor("site2 gone from the liveness file", func() bool {
		l := r.eng.lastWritten()
		return len(l) == 1 && l[0].Tunnel == "gre-site3"
	})
	before, _, _ := r.conn.counts(site2)
	time.Sleep(4 * testInterval)
	if after, _, _ := r.conn.counts(site2); after != before {
		t.Errorf("%d keepalives went to a tunnel no longer watched", after-before)
	}
	// A tunnel that goes while dead does not come back to life, and one
	// cut off after it went is no concern.
	r.conn.setCut(site2, true)
	r.noCall(5 * testInterval)
	log := r.log.String()
	for _, want := range []string{"gre-site3: watching peer 203.0.113.77", "gre-site2: no longer watching peer 203.0.113.1"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	r.conn.mu.Lock()
	last := r.conn.filters[len(r.conn.filters)-1]
	r.conn.mu.Unlock()
	if fmt.Sprint(last) != "[203.0.113.77]" {
		t.Errorf("socket filter %v, want only the peer still watched", last)
	}
}

func TestReloadKeepsCountsAndTakesNewSettings(t *testing.T) {
	// A reload (SIGHUP, or a record rewritten) in the middle of a silence
	// does not start the count again; a new interval applies at once.
	r := start(t, target("gre-site2", site2))
	r.waitFor("answered", func() bool { _, a, _ := r.conn.counts(site2); return a >= 2 })
	r.conn.setCut(site2, true)
	r.waitFor("2 unanswered", func() bool { _, _, u := r.conn.counts(site2); return u >= 2 })
	r.reload <- struct{}{}
	c := r.nextCall(5 * time.Second)
	if c.alive || c.unanswered > testRetries+1 {
		t.Errorf("%+v: the reload started the count again", c)
	}

	slow := target("gre-site2", site2)
	slow.Interval = time.Hour
	r.eng.setTargets(slow)
	r.reload <- struct{}{}
	time.Sleep(testInterval) // let the reload land
	s1, _, _ := r.conn.counts(site2)
	time.Sleep(5 * testInterval)
	if s2, _, _ := r.conn.counts(site2); s2 > s1+1 {
		t.Errorf("%d keepalives in 5 intervals of the old setting after the interval became 1h", s2-s1)
	}
}

// TestOnlyEchoedNoncesCount: with the path cut, a stream of everything a
// peer or a forger off the path can send with the peer's address and the
// tunnel's key must not keep the tunnel alive: the peer's own keepalives
// and data, bare replies (Cisco's format, the forger's 24 bytes), replies
// with made-up nonces, with nonces of another process's key, and an old
// genuine reply replayed. Only the replies to its own recent keepalives,
// once the path is back, bring it alive.
func TestOnlyEchoedNoncesCount(t *testing.T) {
	keyed := target("gre-keyed", site2)
	keyed.IKey, keyed.OKey = 100, 200
	r := start(t, keyed)
	// A genuine reply, to replay later.
	r.waitFor("a reply", func() bool {
		r.conn.mu.Lock()
		defer r.conn.mu.Unlock()
		return r.conn.lastReply.HasNonce
	})
	r.conn.mu.Lock()
	old := r.conn.lastReply
	r.conn.mu.Unlock()
	r.conn.setCut(site2, true)

	other := keepalive.NoncesWithKey([16]byte{7})
	var otherNonce [keepalive.NonceLen]byte
	other.Put(&otherNonce, site1, site2, 100, 1)
	forged := func(proto uint16, key uint32) keepalive.Received {
		return keepalive.Received{Header: keepalive.Header{Src: site2, Dst: site1, Proto: proto, Key: key, HasKey: key != 0}, At: time.Now()}
	}
	stopNoise := make(chan struct{})
	noiseDone := make(chan struct{})
	go func() {
		defer close(noiseDone)
		tick := time.NewTicker(testInterval / 4)
		defer tick.Stop()
		for seq := uint64(1); ; seq++ {
			select {
			case <-tick.C:
			case <-stopNoise:
				return
			}
			madeUp := forged(keepalive.ProtoKeepalive, 100)
			madeUp.HasNonce = true
			for i := range madeUp.Nonce {
				madeUp.Nonce[i] = byte(seq * uint64(i+1))
			}
			// Sequence numbers the watcher has sent, with a tag guessed.
			guessed := madeUp
			binary.BigEndian.PutUint64(guessed.Nonce[:8], seq%20)
			foreign := forged(keepalive.ProtoKeepalive, 100)
			foreign.Nonce, foreign.HasNonce = otherNonce, true
			replayed := old
			replayed.At = time.Now()
			for _, p := range []keepalive.Received{
				forged(0x0800, 100), forged(0x0800, 0), forged(0x0800, 101), // the peer's data and keepalives
				forged(keepalive.ProtoKeepalive, 100), // a bare reply
				madeUp, guessed, foreign, replayed,
			} {
				r.conn.in <- p
			}
		}
	}()
	defer func() {
		select {
		case <-stopNoise:
		default:
			close(stopNoise)
		}
		<-noiseDone
	}()
	if c := r.nextCall(5 * time.Second); c.alive {
		t.Fatalf("%+v, want dead: forged packets kept it alive", c)
	}
	// And it stays dead for 10 intervals of noise.
	r.noCall(10 * testInterval)
	close(stopNoise)
	<-noiseDone
	r.conn.setCut(site2, false)
	if c := r.nextCall(5 * time.Second); !c.alive {
		t.Fatalf("%+v, want alive once the peer answers", c)
	}
}

// TestRepliesOnlyFilter: the kernel filter the watcher sets passes only
// replies, so the peer's own traffic does not even wake it.
func TestRepliesOnlyFilter(t *testing.T) {
	r := start(t, target("gre-site2", site2))
	r.waitFor("a filter", func() bool {
		r.conn.mu.Lock()
		defer r.conn.mu.Unlock()
		return len(r.conn.repliesOnly) > 0
	})
	r.conn.mu.Lock()
	defer r.conn.mu.Unlock()
	for i, only := range r.conn.repliesOnly {
		if !only {
			t.Errorf("filter %d (%v) passes more than replies", i, r.conn.filters[i])
		}
	}
}

func TestNothingToWatchMeansNoTimer(t *testing.T) {
	r := start(t)
	r.waitFor("an empty liveness file", func() bool {
		r.eng.mu.Lock()
		defer r.eng.mu.Unlock()
		return len(r.eng.written) == 1 && len(r.eng.written[0]) == 0
	})
	time.Sleep(200 * time.Millisecond)
	r.eng.mu.Lock()
	n := len(r.eng.written)
	r.eng.mu.Unlock()
	if n != 1 {
		t.Errorf("the liveness file was written %d times with nothing to watch", n)
	}
	w := &Watcher{}
	if due, ok := w.nextDue(); ok {
		t.Errorf("an empty watcher wants to wake at %v", due)
	}
	r.conn.mu.Lock()
	f := r.conn.filters
	r.conn.mu.Unlock()
	if len(f) != 1 || fmt.Sprint(f[0]) != "[0.0.0.0]" {
		t.Errorf("filters %v, want one passing nothing (0.0.0.0)", f)
	}
}

// blockingEngine holds SetLiveness until released.
type blockingEngine struct {
	*fakeEngine
	release chan struct{}
	entered chan struct{}
}

func (b *blockingEngine) SetLiveness(ctx context.Context, underlay, tunnel string, alive bool, lastReply time.Time) error {
	close(b.entered)
	<-b.release
	return nil
}

func TestStopWaitsForARouteChange(t *testing.T) {
	conn := newFakeConn()
	conn.setCut(site2, true)
	eng := &blockingEngine{fakeEngine: &fakeEngine{conn: conn, calls: make(chan call, 10)}, release: make(chan struct{}), entered: make(chan struct{})}
	eng.setTargets(target("gre-site2", site2))
	w := &Watcher{Engine: eng, Conn: conn, Log: &syncBuf{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	select {
	case <-eng.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("no SetLiveness")
	}
	cancel()
	select {
	case <-done:
		t.Fatal("Run returned while SetLiveness was still changing routes")
	case <-time.After(100 * time.Millisecond):
	}
	close(eng.release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	if l := eng.lastWritten(); len(l) != 1 || l[0].Alive {
		t.Errorf("last liveness file %+v, want gre-site2 dead", l)
	}
}

func TestSocketErrorEndsRun(t *testing.T) {
	eng := &fakeEngine{calls: make(chan call, 10)}
	w := &Watcher{Engine: eng, Conn: brokenConn{}, Log: &syncBuf{}}
	if err := w.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "socket gone") {
		t.Fatalf("Run: %v, want the socket's error", err)
	}
}

type brokenConn struct{}

func (brokenConn) SendNonce(local, remote netip.Addr, okey, ikey uint32, nonce []byte) error {
	return nil
}
func (brokenConn) Receive(ctx context.Context) (keepalive.Received, error) {
	return keepalive.Received{}, errors.New("socket gone")
}

// echoConn is a Conn whose peer reflects at once: SendNonce keeps the reply.
type echoConn struct{ reply keepalive.Received }

func (c *echoConn) SendNonce(local, remote netip.Addr, okey, ikey uint32, nonce []byte) error {
	c.reply.Src, c.reply.Dst, c.reply.Proto = remote, local, keepalive.ProtoKeepalive
	c.reply.Key, c.reply.HasKey = ikey, ikey != 0
	c.reply.HasNonce = copy(c.reply.Nonce[:], nonce) == keepalive.NonceLen
	return nil
}

func (c *echoConn) Receive(ctx context.Context) (keepalive.Received, error) {
	<-ctx.Done()
	return keepalive.Received{}, ctx.Err()
}

// BenchmarkKeepaliveAndReply is the watcher's own work for one keepalive
// and its reply: the nonce made, and the reply's nonce checked and
// counted. With 100 tunnels it is done 100 times per interval.
func BenchmarkKeepaliveAndReply(b *testing.B) {
	conn := &echoConn{}
	w := &Watcher{Conn: conn, Nonces: keepalive.NoncesWithKey([16]byte{1}), Log: &syncBuf{}}
	t := &tunnel{Target: target("gre-site2", site2), alive: true, applied: true}
	t.IKey, t.OKey = 100, 100
	w.byPair = map[[2]netip.Addr][]*tunnel{{t.Remote, t.Local}: {t}}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		w.send(t)
		t.heard = false
		w.heard(conn.reply)
		if !t.heard {
			b.Fatal("the reply did not count")
		}
	}
}
