package watch

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gre-hook/gre-hook/hook/localaddr"
)

// Answers the address policy refuses (an ad-blocking resolver's 0.0.0.0,
// a hosts file's 127.0.0.1, the router's own address): the tunnel keeps
// its remote, and the refusal is said once, naming the name and what was
// refused.
func TestNameRefusedAnswersKeepTheRemote(t *testing.T) {
	for _, c := range []struct {
		answer netip.Addr
		why    string
	}{
		{netip.MustParseAddr("0.0.0.0"), "0.0.0.0 is the unspecified address"},
		{netip.MustParseAddr("127.0.0.1"), "127.0.0.1 is a loopback address, this host itself"},
		{site1, "198.51.100.1 is an address of this router"},
		{netip.MustParseAddr("198.51.100.255"), "198.51.100.255 is the broadcast address of 198.51.100.0/24, a subnet of this router"},
	} {
		t.Run(c.answer.String(), func(t *testing.T) {
			d := startDyn(t, map[string][]netip.Addr{"site2.test": {c.answer}}, []Endpoint{named("gre-site2", "site2.test", site2)})
			d.waitFor("several lookups", func() bool { return d.names.lookups("site2.test") >= 5 })
			d.noMove(2 * testEvery)
			want := "gre-site2: remote site2.test: site2.test resolves to no address a tunnel can use (" + c.why
			if n := strings.Count(d.log.String(), want); n != 1 || strings.Count(d.log.String(), "\n") != 1 {
				t.Errorf("%d lines with %q, want 1 line in all:\n%s", n, want, d.log.String())
			}
			if !strings.Contains(d.log.String(), "; keeping 203.0.113.1, trying again every") {
				t.Errorf("log does not say the remote is kept:\n%s", d.log.String())
			}
		})
	}
}

// An unresolved tunnel whose name answers only refused addresses stays
// down: no Reconcile.
func TestUnresolvedStaysDownOnRefusedAnswers(t *testing.T) {
	ep := named("gre-site2", "site2.test", netip.Addr{})
	ep.Local, ep.Unresolved = netip.Addr{}, true
	d := startDyn(t, map[string][]netip.Addr{"site2.test": {netip.MustParseAddr("0.0.0.0")}}, []Endpoint{ep})
	d.waitFor("lookups of the unresolved name", func() bool { return d.names.lookups("site2.test") >= 3 })
	d.noMove(5 * testEvery)
	if !strings.Contains(d.log.String(), "site2.test resolves to no address a tunnel can use (0.0.0.0 is the unspecified address") ||
		!strings.Contains(d.log.String(), "the tunnel stays down") {
		t.Errorf("log:\n%s", d.log.String())
	}
	_ = time.Second
}

// answering has the fake resolver give, at the i-th lookup of a name, the
// i-th answer of the list, in a loop; a nil answer is an error.
func (d *dynRig) answering(answers ...[]netip.Addr) {
	d.names.mu.Lock()
	defer d.names.mu.Unlock()
	d.names.seq = func(name string, i int) ([]netip.Addr, error) {
		a := answers[(i-1)%len(answers)]
		if a == nil {
			return nil, errors.New("server misbehaving")
		}
		return a, nil
	}
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// countMoves counts the moves made within d, and fails on any that is not
// a retarget of the remote.
func (d *dynRig) countMoves(within time.Duration) []netip.Addr {
	d.t.Helper()
	var got []netip.Addr
	end := time.After(within)
	for {
		select {
		case m := <-d.mover.moves:
			if m.op != "retarget" || m.local.IsValid() {
				d.t.Errorf("unexpected %s", m)
			}
			got = append(got, m.remote)
		case <-end:
			return got
		}
	}
}

// Stability: a tunnel keeps its remote while the name still answers it.
// A round-robin resolver that gives one address at a time (two or three
// of them) moves a tunnel on one of them never, and one on another
// address once; a flapping resolver likewise.
func TestNameStability(t *testing.T) {
	a, b, c := "203.0.113.1", "203.0.113.2", "203.0.113.3"
	for _, tc := range []struct {
		name    string
		remote  string
		answers [][]netip.Addr
		moves   int
	}{
		{"round-robin of two, on one", a, [][]netip.Addr{addrs(b), addrs(a)}, 0},
		{"round-robin of three, on one", a, [][]netip.Addr{addrs(b), addrs(c), addrs(a)}, 0},
		{"round-robin of two, on neither", "203.0.113.9", [][]netip.Addr{addrs(a), addrs(b)}, 1},
		{"round-robin of three, on none", "203.0.113.9", [][]netip.Addr{addrs(a), addrs(b), addrs(c)}, 1},
		{"flapping between two sets", a, [][]netip.Addr{addrs(a, b), addrs(b, c)}, 0},
		{"flapping with errors", a, [][]netip.Addr{addrs(b), nil}, 1},
		{"one answer lacking it", a, [][]netip.Addr{addrs(b), addrs(a), addrs(a), addrs(a)}, 0},
		{"gone for good", a, [][]netip.Addr{addrs(b)}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := startDyn(t, nil, []Endpoint{named("gre-site2", "site2.test", netip.MustParseAddr(tc.remote))})
			d.answering(tc.answers...)
			got := d.countMoves(25 * testEvery)
			if n := d.names.lookups("site2.test"); n < 12 {
				t.Errorf("only %d lookups", n)
			}
			if len(got) != tc.moves {
				t.Errorf("%d moves %v, want %d", len(got), got, tc.moves)
			}
		})
	}
}

// A tunnel whose peer is dead moves at the first answer that lacks its
// remote: it has nothing to lose.
func TestNameMovesAtOnceWhenDead(t *testing.T) {
	tg := target("gre-site2", site2)
	tg.Alive = false
	ep := named("gre-site2", "site2.test", site2)
	ep.ResolveInterval = 10 * testInterval
	d := startDyn(t, nil, []Endpoint{ep}, tg)
	d.conn.setCut(site2, true)
	d.answering(addrs("203.0.113.2"))
	m := d.nextMove(5 * time.Second)
	if m.remote != netip.MustParseAddr("203.0.113.2") || d.names.lookups("site2.test") != 1 {
		t.Errorf("%s after %d lookups, want a move to 203.0.113.2 after the first", m, d.names.lookups("site2.test"))
	}
}

// A name the config changes while its lookup is in flight is looked up
// again, at once, and the tunnel moves to the new name's address at its
// first answer; the old name's late answer changes nothing.
func TestNameChangedMidLookup(t *testing.T) {
	ep := named("gre-site2", "old.test", site2)
	d := startDyn(t, nil, []Endpoint{ep})
	release := make(chan struct{})
	d.names.mu.Lock()
	d.names.seq = func(name string, i int) ([]netip.Addr, error) {
		if name == "old.test" {
			<-release
			return addrs("203.0.113.66"), nil
		}
		return addrs("203.0.113.5"), nil
	}
	d.names.mu.Unlock()
	d.waitFor("the old name's lookup", func() bool { return d.names.lookups("old.test") == 1 })
	d.mover.mu.Lock()
	d.mover.eps[0].RemoteName = "new.test"
	d.mover.mu.Unlock()
	d.reload <- struct{}{}
	m := d.nextMove(5 * time.Second)
	close(release)
	if want := (move{"retarget", Key{"eth1", "gre-site2"}, netip.Addr{}, netip.MustParseAddr("203.0.113.5")}); m != want {
		t.Errorf("%s, want %s", m, want)
	}
	d.noMove(5 * testEvery)
	if n := d.names.lookups("new.test"); n < 2 {
		t.Errorf("%d lookups of the new name", n)
	}
	if n := d.names.lookups("old.test"); n != 1 {
		t.Errorf("%d lookups of the old name after the change", n)
	}
}

// A move that fails for any reason (here the run lock, held by an ifup)
// is tried again, 1s then 2s, until it lands, and said once; the address
// it moves to stays the one the follower reported.
func TestFailedMoveRetried(t *testing.T) {
	ep := Endpoint{Underlay: "eth1", Tunnel: "gre-site2", Local: site1, Remote: site2, Family: 4, LocalAuto: true}
	d := startDyn(t, nil, []Endpoint{ep}, target("gre-site2", site2))
	d.mover.mu.Lock()
	d.mover.fail, d.mover.failErr = 2, errors.New(`moving tunnel "gre-site2" on eth1: taking the run lock: timed out after 10s`)
	d.mover.mu.Unlock()
	d.waitFor("the follower running", func() bool { _, _, running := d.addrs.state(); return running == 1 })
	start := time.Now()
	d.addrs.events <- localaddr.Change{Underlay: "eth1", Family: 4, Old: site1, New: site1new}
	want := move{"retarget", Key{"eth1", "gre-site2"}, site1new, netip.Addr{}}
	for i := 0; i < 3; i++ {
		if m := d.nextMove(5 * time.Second); m != want {
			t.Fatalf("try %d: %s, want %s", i, m, want)
		}
	}
	if took := time.Since(start); took < 2900*time.Millisecond {
		t.Errorf("three tries in %s, want 1s then 2s between them", took)
	}
	d.waitFor("the keepalives from the new address", func() bool {
		d.conn.mu.Lock()
		defer d.conn.mu.Unlock()
		return d.conn.from[site2] == site1new
	})
	d.noMove(2500 * time.Millisecond)
	if n := strings.Count(d.log.String(), "taking the run lock: timed out"); n != 1 {
		t.Errorf("the failure logged %d times:\n%s", n, d.log.String())
	}
}
