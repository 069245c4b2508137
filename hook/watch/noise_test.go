package watch

import (
	"errors"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// failingConn is a fakeConn whose sends fail while fail is set.
type failingConn struct {
	*fakeConn
	mu   sync.Mutex
	fail error
}

func (c *failingConn) SendNonce(local, remote netip.Addr, okey, ikey uint32, nonce []byte) error {
	c.mu.Lock()
	err := c.fail
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return c.fakeConn.SendNonce(local, remote, okey, ikey, nonce)
}

func (c *failingConn) set(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fail = err
}

// A keepalive that cannot be sent is said once, not every interval, and
// once more when keepalives go out again.
func TestSendErrorLoggedOnce(t *testing.T) {
	fc := &failingConn{fakeConn: newFakeConn()}
	fc.set(errors.New("sending a keepalive from 198.51.100.1 to 203.0.113.1: network is unreachable"))
	r := startRig(t, fc.fakeConn, func(w *Watcher) { w.Conn = fc }, target("gre-site2", site2))
	time.Sleep(10 * testInterval)
	if n := strings.Count(r.log.String(), "network is unreachable"); n != 1 {
		t.Errorf("the send error logged %d times in 10 intervals, want 1:\n%s", n, r.log.String())
	}
	fc.set(nil)
	r.waitFor("a keepalive sent", func() bool { s, _, _ := fc.counts(site2); return s > 0 })
	time.Sleep(3 * testInterval)
	if n := strings.Count(r.log.String(), "gre-site2: keepalives to 203.0.113.1 go out again"); n != 1 {
		t.Errorf("the recovery logged %d times, want 1:\n%s", n, r.log.String())
	}
	fc.set(errors.New("network is unreachable"))
	time.Sleep(3 * testInterval)
	if n := strings.Count(r.log.String(), "network is unreachable"); n != 2 {
		t.Errorf("a second failure logged %d times in all, want 2:\n%s", n, r.log.String())
	}
}

// SIGHUPs that come while a reload is already pending are one reload,
// and one line.
func TestHangupsCoalescedLogOnce(t *testing.T) {
	hup := make(chan os.Signal)
	reload := make(chan struct{}, 1)
	done := make(chan struct{})
	var log syncBuf
	go forwardHangups(hup, reload, &log, done)
	defer close(done)
	for i := 0; i < 5; i++ {
		hup <- syscall.SIGHUP
	}
	if n := strings.Count(log.String(), "SIGHUP"); n != 1 {
		t.Errorf("%d lines for 5 SIGHUPs with one reload pending, want 1:\n%s", n, log.String())
	}
	<-reload
	hup <- syscall.SIGHUP
	hup <- syscall.SIGHUP // sync: the first is handled
	if n := strings.Count(log.String(), "SIGHUP"); n != 2 {
		t.Errorf("%d lines after the reload ran and another SIGHUP came, want 2:\n%s", n, log.String())
	}
}

// brokenEngine lists no tunnel to watch and one endpoint, with the error
// of a record it could not read.
type brokenEngine struct{ *fakeEngine }

func (brokenEngine) Watching() ([]Target, []Endpoint, error) {
	return nil, []Endpoint{{Underlay: "eth1", Tunnel: "gre-x", RemoteName: "x.test"}}, errors.New("the record of eth2 is broken")
}

// A watcher without a Mover, which follows no endpoints, says a broken
// record once a reload.
func TestPartialReadLoggedOnce(t *testing.T) {
	var log syncBuf
	w := &Watcher{Engine: brokenEngine{&fakeEngine{}}, Log: &log}
	w.tunnels = map[Key]*tunnel{}
	w.reload(time.Now())
	if n := strings.Count(log.String(), "the record of eth2 is broken"); n != 1 {
		t.Errorf("logged %d times:\n%s", n, log.String())
	}
}
