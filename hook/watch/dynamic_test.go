package watch

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gre-hook/gre-hook/hook/addrpolicy"
	"github.com/gre-hook/gre-hook/hook/localaddr"
)

var (
	site2new  = netip.MustParseAddr("203.0.113.9")
	site1new  = netip.MustParseAddr("198.51.100.7")
	site2v6   = netip.MustParseAddr("2001:db8::2")
	testEvery = 30 * time.Millisecond
)

// move is one Retarget or Reconcile the fake mover was asked for.
type move struct {
	op            string // "retarget" or "reconcile"
	key           Key
	local, remote netip.Addr
}

func (m move) String() string {
	if m.op == "reconcile" {
		return fmt.Sprintf("reconcile %s", m.key)
	}
	return fmt.Sprintf("retarget %s local %v remote %v", m.key, m.local, m.remote)
}

// fakeMover keeps the endpoints as a record and kernel would: a Retarget
// changes the endpoint, and the keepalive target of the same tunnel if
// there is one; a Reconcile brings the tunnel up with the name's address.
type fakeMover struct {
	mu    sync.Mutex
	eng   *fakeEngine
	eps   []Endpoint
	moves chan move
	hold  time.Duration // how long each move takes
	names *fakeNames
	// fail: that many Retargets fail with failErr, before changing
	// anything.
	fail    int
	failErr error
}

// Endpoints is what the fake engine's Watching lists of m.
func (m *fakeMover) Endpoints() ([]Endpoint, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Endpoint(nil), m.eps...), nil
}

func (m *fakeMover) Retarget(ctx context.Context, underlay, tunnel string, local, remote netip.Addr) error {
	time.Sleep(m.hold)
	m.moves <- move{"retarget", Key{underlay, tunnel}, local, remote}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail > 0 {
		m.fail--
		return m.failErr
	}
	for i := range m.eps {
		if keyOf(m.eps[i]) == (Key{underlay, tunnel}) {
			if local.IsValid() {
				m.eps[i].Local = local
			}
			if remote.IsValid() {
				m.eps[i].Remote = remote
			}
		}
	}
	m.eng.mu.Lock()
	defer m.eng.mu.Unlock()
	for i := range m.eng.targets {
		if targetKey(m.eng.targets[i]) == (Key{underlay, tunnel}) {
			if local.IsValid() {
				m.eng.targets[i].Local = local
			}
			if remote.IsValid() {
				m.eng.targets[i].Remote = remote
			}
		}
	}
	return nil
}

func (m *fakeMover) Reconcile(ctx context.Context, underlay, tunnel string) error {
	time.Sleep(m.hold)
	m.moves <- move{op: "reconcile", key: Key{underlay, tunnel}}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.eps {
		if keyOf(m.eps[i]) == (Key{underlay, tunnel}) {
			as, err := m.names.lookup(context.Background(), m.eps[i].RemoteName)
			if err != nil {
				return err
			}
			m.eps[i].Unresolved, m.eps[i].Remote, m.eps[i].Local = false, as[0], site1
		}
	}
	return nil
}

// fakeNames is a resolver with a table that tests change, counting the
// lookups of each name.
type fakeNames struct {
	mu    sync.Mutex
	table map[string][]netip.Addr
	count map[string]int
	// seq, when set, answers instead of the table: the i-th lookup of
	// a name, from 1.
	seq func(name string, i int) ([]netip.Addr, error)
}

func newFakeNames(table map[string][]netip.Addr) *fakeNames {
	return &fakeNames{table: table, count: map[string]int{}}
}

func (n *fakeNames) lookup(ctx context.Context, name string) ([]netip.Addr, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.count[name]++
	if n.seq != nil {
		seq, i := n.seq, n.count[name]
		n.mu.Unlock()
		defer n.mu.Lock()
		return seq(name, i)
	}
	as, ok := n.table[name]
	if !ok {
		return nil, errors.New("no such host")
	}
	return as, nil
}

func (n *fakeNames) set(name string, as ...netip.Addr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.table[name] = as
}

func (n *fakeNames) lookups(name string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.count[name]
}

// fakeAddrs is an AddrFollower whose events the test sends.
type fakeAddrs struct {
	mu       sync.Mutex
	followed map[string]netip.Addr
	runs     int // Runs started
	running  int // Runs not ended
	events   chan localaddr.Change
}

func (f *fakeAddrs) Follow(underlay string, addr netip.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.followed[underlay] = addr
}

func (f *fakeAddrs) Forget(underlay string, family int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.followed, underlay)
}

func (f *fakeAddrs) Run(ctx context.Context, out chan<- localaddr.Change) error {
	f.mu.Lock()
	f.runs++
	f.running++
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.running--
		f.mu.Unlock()
	}()
	for {
		select {
		case c := <-f.events:
			out <- c
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (f *fakeAddrs) state() (followed string, runs, running int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fmt.Sprint(f.followed), f.runs, f.running
}

type dynRig struct {
	*rig
	mover *fakeMover
	names *fakeNames
	addrs *fakeAddrs
}

func startDyn(t *testing.T, names map[string][]netip.Addr, eps []Endpoint, targets ...Target) *dynRig {
	t.Helper()
	d := &dynRig{names: newFakeNames(names), addrs: &fakeAddrs{followed: map[string]netip.Addr{}, events: make(chan localaddr.Change)}}
	d.mover = &fakeMover{eps: eps, moves: make(chan move, 100), names: d.names}
	d.rig = startRig(t, newFakeConn(), func(w *Watcher) {
		d.mover.eng = w.Engine.(*fakeEngine)
		d.mover.eng.mover = d.mover
		w.Mover, w.Lookup, w.Addrs, w.LookupWait = d.mover, d.names.lookup, d.addrs, time.Second
		w.OwnAddrs = func() (addrpolicy.Own, error) {
			return addrpolicy.Own{Prefixes: []netip.Prefix{netip.PrefixFrom(site1, 24)}}, nil
		}
	}, targets...)
	return d
}

func (d *dynRig) nextMove(within time.Duration) move {
	d.t.Helper()
	return receive(d.rig, d.mover.moves, "move", within)
}

func (d *dynRig) noMove(within time.Duration) {
	d.t.Helper()
	nothing(d.rig, d.mover.moves, "move", within)
}

func named(tunnel, name string, remote netip.Addr) Endpoint {
	return Endpoint{Underlay: "eth1", Tunnel: tunnel, Local: site1, Remote: remote, RemoteName: name, Family: 4, ResolveInterval: testEvery}
}

// A name is resolved again every resolve_interval, the first time one
// interval after the watcher starts (up has just resolved it), and an
// address that does not change moves nothing.
func TestNameResolvedEveryInterval(t *testing.T) {
	d := startDyn(t, map[string][]netip.Addr{"site2.test": {site2}}, []Endpoint{named("gre-site2", "site2.test", site2)})
	time.Sleep(testEvery / 2)
	if n := d.names.lookups("site2.test"); n != 0 {
		t.Errorf("%d lookups before the first interval ended", n)
	}
	span := 20 * testEvery
	time.Sleep(span)
	n := d.names.lookups("site2.test")
	// One per interval; a loaded machine may lose a few, never add.
	if n > 21 || n < 10 {
		t.Errorf("%d lookups in %v with resolve_interval %v, want about 20", n, span, testEvery)
	}
	d.noMove(0)
}

// When the name moves, the tunnel is retargeted once, even though more
// lookups fall due while the move runs; and the keepalives go to the new
// address afterwards.
func TestNameMovesRetargetOnce(t *testing.T) {
	tg := target("gre-site2", site2)
	d := startDyn(t, map[string][]netip.Addr{"site2.test": {site2}}, []Endpoint{named("gre-site2", "site2.test", site2)}, tg)
	d.mover.hold = 5 * testEvery
	d.waitFor("keepalives to the old address", func() bool { s, _, _ := d.conn.counts(site2); return s > 0 })
	d.names.set("site2.test", site2new, site3)
	m := d.nextMove(5 * time.Second)
	if want := (move{"retarget", Key{"eth1", "gre-site2"}, netip.Addr{}, site2new}); m != want {
		t.Fatalf("%s, want %s", m, want)
	}
	d.waitFor("keepalives to the new address", func() bool { s, _, _ := d.conn.counts(site2new); return s > 0 })
	d.noMove(10 * testEvery)
	if n := d.names.lookups("site2.test"); n < 3 {
		t.Errorf("%d lookups: resolution stopped after the move", n)
	}
	// A name with several addresses, the tunnel's among them: no move.
	d.names.set("site2.test", site3, site2new)
	d.noMove(5 * testEvery)
	if strings.Contains(d.log.String(), "site2.test") {
		t.Errorf("the watcher logged of the name (Retarget logs the move):\n%s", d.log.String())
	}
}

// A name that stops resolving leaves the tunnel where it is, and says so
// once.
func TestNameGoneKeepsTheAddress(t *testing.T) {
	d := startDyn(t, map[string][]netip.Addr{}, []Endpoint{named("gre-site2", "site2.test", site2)})
	d.waitFor("several lookups", func() bool { return d.names.lookups("site2.test") >= 4 })
	d.noMove(0)
	if n := strings.Count(d.log.String(), "gre-site2: remote site2.test: resolving site2.test: no such host; keeping 203.0.113.1"); n != 1 {
		t.Errorf("%d lines about the failing name, want 1:\n%s", n, d.log.String())
	}
	// The family is checked.
	d.names.set("site2.test", site2v6)
	d.waitFor("the family error logged", func() bool {
		return strings.Contains(d.log.String(), "site2.test has no IPv4 address (it resolves to 2001:db8::2 only)")
	})
	d.noMove(2 * testEvery)
}

// A tunnel up left unresolved is brought up once its name resolves, once;
// then its name is followed as any other.
func TestUnresolvedBroughtUpWhenItResolves(t *testing.T) {
	ep := named("gre-site2", "site2.test", netip.Addr{})
	ep.Local, ep.Unresolved = netip.Addr{}, true
	d := startDyn(t, map[string][]netip.Addr{}, []Endpoint{ep})
	d.waitFor("lookups of the unresolved name", func() bool { return d.names.lookups("site2.test") >= 3 })
	d.noMove(0)
	d.names.set("site2.test", site2)
	m := d.nextMove(5 * time.Second)
	if want := (move{op: "reconcile", key: Key{"eth1", "gre-site2"}}); m != want {
		t.Fatalf("%s, want %s", m, want)
	}
	if !strings.Contains(d.log.String(), "gre-site2: remote site2.test resolves now (203.0.113.1); bringing the tunnel up\n") {
		t.Errorf("log:\n%s", d.log.String())
	}
	before := d.names.lookups("site2.test")
	d.noMove(10 * testEvery)
	if d.names.lookups("site2.test") <= before {
		t.Error("the name is no longer resolved once the tunnel is up")
	}
	// And it moves as any other.
	d.names.set("site2.test", site2new)
	if m := d.nextMove(5 * time.Second); m.op != "retarget" || m.remote != site2new {
		t.Errorf("%s, want a retarget to %s", m, site2new)
	}
}

// A local = "auto" tunnel follows its underlay's address: the follower
// runs while there is such a tunnel, an address change retargets the
// tunnel's local, once, and keepalives leave from the new address.
func TestLocalAutoFollowsTheUnderlay(t *testing.T) {
	ep := Endpoint{Underlay: "eth1", Tunnel: "gre-site2", Local: site1, Remote: site2, Family: 4, LocalAuto: true}
	tg := target("gre-site2", site2)
	d := startDyn(t, nil, []Endpoint{ep}, tg)
	d.waitFor("the follower running", func() bool { _, _, running := d.addrs.state(); return running == 1 })
	if f, _, _ := d.addrs.state(); f != "map[eth1:198.51.100.1]" {
		t.Errorf("followed %s", f)
	}
	d.addrs.events <- localaddr.Change{Underlay: "eth1", Family: 4, Old: site1, New: site1new}
	m := d.nextMove(5 * time.Second)
	if want := (move{"retarget", Key{"eth1", "gre-site2"}, site1new, netip.Addr{}}); m != want {
		t.Fatalf("%s, want %s", m, want)
	}
	d.waitFor("keepalives from the new address", func() bool {
		d.conn.mu.Lock()
		defer d.conn.mu.Unlock()
		return d.conn.from[site2] == site1new
	})
	d.noMove(5 * testEvery)
	// Another underlay's change is not this tunnel's.
	d.addrs.events <- localaddr.Change{Underlay: "eth2", Family: 4, Old: site1new, New: site1}
	d.noMove(5 * testEvery)
	if d.names.lookups("") != 0 {
		t.Error("a tunnel without a name was resolved")
	}

	// The tunnel goes (ifdown): the follower stops.
	d.mover.mu.Lock()
	d.mover.eps = nil
	d.mover.mu.Unlock()
	d.reload <- struct{}{}
	d.waitFor("the follower stopped", func() bool { f, _, running := d.addrs.state(); return running == 0 && f == "map[]" })
}

// Following endpoints costs no timer when no tunnel has a name: a local =
// "auto" tunnel is followed from address events alone, and with nothing
// to follow the address follower does not run.
func TestEndpointsWithoutNameNeedNoTimer(t *testing.T) {
	eps := []Endpoint{{Underlay: "eth1", Tunnel: "gre-x", Local: site1, Remote: site2, Family: 4, LocalAuto: true}}
	w := &Watcher{Mover: &fakeMover{eps: eps}}
	w.initDynamic()
	w.reloadEndpoints(time.Now(), eps, nil)
	if due, ok := w.nextDue(); ok {
		t.Errorf("a local = \"auto\" tunnel wants a wake-up at %v", due)
	}
	d := startDyn(t, nil, nil)
	time.Sleep(5 * testEvery)
	if _, runs, _ := d.addrs.state(); runs != 0 {
		t.Errorf("the address follower ran %d times with nothing to follow", runs)
	}
}
