package watch

import (
	"errors"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/gre-hook/gre-hook/hook/localaddr"
)

// The address follower can fail just as a reload stops it (the last
// local = "auto" tunnel went down): its error is then read by the loop
// after the follower is gone. That must not panic, nor stop a follower
// started since.
func TestStaleAddrFollowerError(t *testing.T) {
	addrs := &fakeAddrs{followed: map[string]netip.Addr{}, events: make(chan localaddr.Change)}
	auto := Endpoint{Underlay: "eth1", Tunnel: "gre-a", Local: site1, Remote: site2, LocalAuto: true}
	mover := &fakeMover{eps: []Endpoint{auto}}
	w := &Watcher{Log: io.Discard, Mover: mover, Addrs: addrs}
	w.initDynamic()
	defer w.stopDynamic()
	now := time.Now()

	w.reloadEndpoints(now, mover.eps, nil) // follower 1 runs
	mover.eps = nil
	w.reloadEndpoints(now, mover.eps, nil) // the tunnel went down: follower 1 is stopped
	w.addrsFailed(addrFailure{1, errors.New("netlink: follower 1 failed")})

	mover.eps = []Endpoint{auto}
	w.reloadEndpoints(now, mover.eps, nil) // follower 2 runs
	if w.dyn.stopAddrs == nil {
		t.Fatal("no follower running after the tunnel came back")
	}
	w.addrsFailed(addrFailure{1, errors.New("netlink: follower 1 failed, read late")})
	if w.dyn.stopAddrs == nil || len(w.dyn.followed) != 1 {
		t.Fatal("follower 1's late error stopped follower 2")
	}
	w.addrsFailed(addrFailure{2, errors.New("netlink: follower 2 failed")})
	if w.dyn.stopAddrs != nil || len(w.dyn.followed) != 0 {
		t.Fatal("follower 2's own error did not stop it")
	}
}
