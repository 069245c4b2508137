package watch

import (
	"net/netip"
	"testing"
	"time"

	"github.com/gre-hook/gre-hook/hook/state"
)

// The liveness file is written when a reader would see something change,
// not for every reply: see refreshGap.
func TestLivenessFileWrittenOnChangesNotPerReply(t *testing.T) {
	defer func(g time.Duration) { refreshGap = g }(refreshGap)
	refreshGap = 30 * testInterval
	r := start(t, target("gre-site2", site2))
	writes := func() (int, []state.LivenessEntry) {
		r.eng.mu.Lock()
		defer r.eng.mu.Unlock()
		if len(r.eng.written) == 0 {
			return 0, nil
		}
		return len(r.eng.written), r.eng.written[len(r.eng.written)-1]
	}
	started := time.Now()

	// The first reply is written at once.
	r.waitFor("the first reply in the liveness file", func() bool {
		_, l := writes()
		return len(l) == 1 && !l[0].LastReply.IsZero()
	})
	if d := time.Since(started); d > refreshGap/2 {
		t.Errorf("the first reply was written after %v, want at once", d)
	}
	n1, l1 := writes()
	first := l1[0].LastReply

	// Later replies alone wait for refreshGap.
	time.Sleep(refreshGap / 2)
	if n, _ := writes(); n != n1 {
		t.Errorf("the liveness file was written %d more times in %v of replies alone, want none before %v", n-n1, refreshGap/2, refreshGap)
	}
	r.waitFor("a newer reply in the liveness file", func() bool {
		_, l := writes()
		return len(l) == 1 && !l[0].LastReply.IsZero() && l[0].LastReply.After(first)
	})
	if d := time.Since(first); d < refreshGap-2*testInterval {
		t.Errorf("newer replies were written %v after the first one, want after %v", d, refreshGap)
	}

	// The first unanswered interval makes the last reply in the file
	// exact at once, well before the peer is dead: cut it off halfway
	// to the next refresh.
	time.Sleep(refreshGap / 2)
	r.conn.setCut(site2, true)
	cut := time.Now()
	r.waitFor("the exact last reply in the liveness file", func() bool {
		_, l := writes()
		return len(l) == 1 && !l[0].LastReply.IsZero() && !l[0].LastReply.Before(cut.Add(-2*testInterval))
	})
	if d := time.Since(cut); d > time.Duration(testRetries)*testInterval {
		t.Errorf("the last reply was written %v after the peer fell silent, want within its first unanswered interval", d)
	}
	_, l := writes()
	if !l[0].Alive {
		t.Errorf("the peer is dead in the file %v after it fell silent, before %d retries", time.Since(cut), testRetries)
	}
	if c := r.nextCall(5 * time.Second); c.alive {
		t.Fatalf("SetLiveness %+v, want dead", c)
	}
	r.waitFor("the peer dead in the liveness file", func() bool {
		_, l := writes()
		return len(l) == 1 && !l[0].Alive
	})
}

// A tunnel whose remote moves has a new peer: the liveness file shows the
// new remote at once, never with the old peer's last reply, and the first
// reply from the new one is written at once, as a first reply is (the
// real-kernel TestWatchDynamicEndpoints waited up to refreshGap for it).
func TestLivenessFileFollowsAMove(t *testing.T) {
	defer func(g time.Duration) { refreshGap = g }(refreshGap)
	refreshGap = 200 * testEvery
	d := startDyn(t, map[string][]netip.Addr{"site2.test": {site2}}, []Endpoint{named("gre-site2", "site2.test", site2)}, target("gre-site2", site2))
	d.waitFor("a reply from the old address in the liveness file", func() bool {
		l := d.eng.lastWritten()
		return len(l) == 1 && l[0].Remote == site2 && !l[0].LastReply.IsZero()
	})
	// Let one refresh of the old peer's replies pass, so that the
	// next is refreshGap away.
	time.Sleep(5 * testEvery)
	d.names.set("site2.test", site2new)
	d.nextMove(5 * time.Second)
	moved := time.Now()
	d.waitFor("the new remote in the liveness file", func() bool {
		l := d.eng.lastWritten()
		return len(l) == 1 && l[0].Remote == site2new
	})
	if l := d.eng.lastWritten(); !l[0].LastReply.IsZero() && l[0].LastReply.Before(moved) {
		t.Errorf("the new remote is shown with a reply from before the move: %+v", l[0])
	}
	d.waitFor("a reply from the new address in the liveness file", func() bool {
		l := d.eng.lastWritten()
		return len(l) == 1 && l[0].Remote == site2new && l[0].LastReply.After(moved)
	})
	if took := time.Since(moved); took > refreshGap/2 {
		t.Errorf("the first reply from the new address was written %v after the move, want at once (refreshGap %v)", took, refreshGap)
	}
}
