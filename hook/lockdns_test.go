package hook

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gre-hook/gre-hook/hook/state"
)

// The watcher's SetLiveness and Reconcile run up under the run lock; a
// name lookup there would hold a concurrent ifup for as long as a DNS
// server that does not answer takes. Every lookup must happen with the
// lock free.
func TestNoLookupUnderTheLock(t *testing.T) {
	e := newEnv(t)
	e.names(map[string][]string{"site2.test": {"203.0.113.1"}})
	e.write(`
[[tunnel]]
name = "gre-a"
underlay = "eth1"
remote = "site2.test"
address = ["10.0.0.1/30"]
keepalive = { interval = 1, retries = 3 }
[[tunnel.route]]
to = "192.168.2.0/24"

[[tunnel]]
name = "gre-late"
underlay = "eth1"
remote = "late.test"
address = ["10.0.9.1/30"]
`)
	e.mustRun(PhaseUp)

	var mu sync.Mutex
	var lookups []string
	e.sys.Resolve = func(ctx context.Context, name string) ([]netip.Addr, error) {
		// A slow server: the lookup takes a while, and meanwhile an
		// ifup must be able to take the lock.
		unlock, err := state.Lock(e.sys.Store.Dir, 10*time.Millisecond)
		held := err != nil
		if err == nil {
			unlock()
		}
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		lookups = append(lookups, name+map[bool]string{true: " under the lock", false: ""}[held])
		mu.Unlock()
		switch name {
		case "site2.test":
			return []netip.Addr{netip.MustParseAddr("203.0.113.1")}, nil
		case "late.test":
			return []netip.Addr{netip.MustParseAddr("203.0.113.50")}, nil
		}
		return nil, context.DeadlineExceeded
	}
	e.sys.ResolveWait = time.Second
	check := func(what string) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		if strings.Contains(strings.Join(lookups, ","), "under the lock") {
			t.Errorf("%s: lookups %q", what, lookups)
		}
		lookups = nil
	}

	if err := engineTo(e.sys, &e.log).SetLiveness(bg(), "eth1", "gre-a", false, time.Now().Add(-5*time.Second)); err != nil {
		t.Fatal(err)
	}
	check("SetLiveness dead")
	if strings.Contains(e.dump(), "192.168.2.0/24") {
		t.Errorf("dead: the route is still there:\n%s", e.dump())
	}
	if err := engineTo(e.sys, &e.log).SetLiveness(bg(), "eth1", "gre-a", true, time.Now()); err != nil {
		t.Fatal(err)
	}
	check("SetLiveness alive")
	if !strings.Contains(e.dump(), "192.168.2.0/24") || strings.Contains(e.dump(), "gre-late") {
		t.Errorf("alive: the route is not back, or gre-late came up:\n%s", e.dump())
	}
	if err := engineTo(e.sys, &e.log).Reconcile(bg(), "eth1", "gre-late"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	n := len(lookups)
	mu.Unlock()
	check("Reconcile")
	if n == 0 || !strings.Contains(e.dump(), "link gre-late gre local 198.51.100.1 remote 203.0.113.50 ") {
		t.Errorf("Reconcile looked up %d names; kernel:\n%s", n, e.dump())
	}
}
