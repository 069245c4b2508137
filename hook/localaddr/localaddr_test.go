package localaddr

import (
	"fmt"
	"net/netip"
	"reflect"
	"testing"
)

// kernel is a fake of the two questions a Follower asks.
type kernel struct {
	names map[int]string
	addrs map[string][]netip.Addr
}

func (k *kernel) follower() *Follower {
	return &Follower{
		LinkName: func(i int) (string, error) {
			if n, ok := k.names[i]; ok {
				return n, nil
			}
			return "", fmt.Errorf("no link %d", i)
		},
		Usable: func(u string, fam int) ([]netip.Addr, error) {
			var out []netip.Addr
			for _, a := range k.addrs[u] {
				if a.Is4() == (fam == 4) {
					out = append(out, a)
				}
			}
			return out, nil
		},
	}
}

var (
	old4 = netip.MustParseAddr("203.0.113.1")
	new4 = netip.MustParseAddr("203.0.113.9")
	v6   = netip.MustParseAddr("2001:db8::1")
)

// A renumbering: the old address goes, and the new one comes after.
func TestRenumber(t *testing.T) {
	k := &kernel{names: map[int]string{2: "eth1", 3: "eth2"}, addrs: map[string][]netip.Addr{"eth1": {old4, v6}}}
	f := k.follower()
	f.Follow("eth1", old4)
	f.Follow("eth1", v6)

	steps := []struct {
		u    Update
		kern []netip.Addr
		want []Change
	}{
		// Another link's address, and an extra address: nothing.
		{Update{Index: 3, Addr: old4, Added: false}, []netip.Addr{old4, v6}, nil},
		{Update{Index: 2, Addr: netip.MustParseAddr("203.0.113.77"), Added: true, Usable: true}, []netip.Addr{old4, v6}, nil},
		{Update{Index: 2, Addr: netip.MustParseAddr("203.0.113.77"), Added: false}, []netip.Addr{old4, v6}, nil},
		// The address in use goes; no other is there yet.
		{Update{Index: 2, Addr: old4, Added: false}, []netip.Addr{v6}, nil},
		// A link-local or tentative one does not count.
		{Update{Index: 2, Addr: netip.MustParseAddr("fe80::1"), Added: true, Usable: true}, []netip.Addr{v6}, nil},
		{Update{Index: 2, Addr: netip.MustParseAddr("2001:db8::2"), Added: true, Usable: false}, []netip.Addr{v6}, nil},
		// The new one arrives.
		{Update{Index: 2, Addr: new4, Added: true, Usable: true}, []netip.Addr{new4, v6}, []Change{{"eth1", 4, old4, new4}}},
		// Only once.
		{Update{Index: 2, Addr: new4, Added: true, Usable: true}, []netip.Addr{new4, v6}, nil},
	}
	for i, s := range steps {
		k.addrs["eth1"] = s.kern
		if got := f.Handle(s.u); !reflect.DeepEqual(got, s.want) {
			t.Errorf("step %d (%+v): got %+v, want %+v", i, s.u, got, s.want)
		}
	}
}

// The address in use goes while another of its family is there: that one
// takes over at once, as up would pick it.
func TestSecondaryTakesOver(t *testing.T) {
	k := &kernel{names: map[int]string{2: "eth1"}, addrs: map[string][]netip.Addr{"eth1": {new4}}}
	f := k.follower()
	f.Follow("eth1", old4)
	got := f.Handle(Update{Index: 2, Addr: old4, Added: false})
	if want := []Change{{"eth1", 4, old4, new4}}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

// The link is gone by the time its address's removal is read: the name
// cached from earlier events still says whose it was.
func TestRecheckAndGoneLink(t *testing.T) {
	k := &kernel{names: map[int]string{2: "ppp0"}, addrs: map[string][]netip.Addr{"ppp0": {old4}}}
	f := k.follower()
	f.Follow("ppp0", old4)
	if got := f.recheck(); got != nil {
		t.Errorf("recheck with nothing changed: %+v", got)
	}
	f.Handle(Update{Index: 2, Addr: v6, Added: true, Usable: true}) // caches the name
	delete(k.names, 2)
	k.addrs["ppp0"] = nil
	if got := f.Handle(Update{Index: 2, Addr: old4}); got != nil {
		t.Errorf("got %+v", got)
	}
	// A new ppp0 (another index) comes with a new address; its event was
	// missed, and the recheck finds it.
	k.names[5] = "ppp0"
	k.addrs["ppp0"] = []netip.Addr{new4}
	if got, want := f.recheck(), []Change{{"ppp0", 4, old4, new4}}; !reflect.DeepEqual(got, want) {
		t.Errorf("recheck: got %+v, want %+v", got, want)
	}
	f.Forget("ppp0", 4)
	if got := f.Handle(Update{Index: 5, Addr: new4}); got != nil {
		t.Errorf("after Forget: %+v", got)
	}
}

// PPP: the underlay is deleted and created again, with a new index and a
// new address, and no event of the old link came before its deletion. The
// removal of the old address arrives when its index no longer resolves;
// the new link's address is reported all the same, whether the name was
// seeded when following began, or the removal is recognised at the new
// address.
func TestUnderlayRecreated(t *testing.T) {
	for _, seeded := range []bool{true, false} {
		k := &kernel{names: map[int]string{2: "ppp0"}, addrs: map[string][]netip.Addr{"ppp0": {old4}}}
		f := k.follower()
		if seeded {
			f.LinkIndex = func(name string) (int, error) {
				for i, n := range k.names {
					if n == name {
						return i, nil
					}
				}
				return 0, fmt.Errorf("no link %s", name)
			}
		}
		f.Follow("ppp0", old4)
		delete(k.names, 2)
		delete(k.addrs, "ppp0")
		got := f.Handle(Update{Index: 2, Addr: old4})
		if got != nil {
			t.Errorf("seeded %v: the removal: %+v", seeded, got)
		}
		k.names[7] = "ppp0"
		k.addrs["ppp0"] = []netip.Addr{new4}
		got = f.Handle(Update{Index: 7, Addr: new4, Added: true, Usable: true})
		if want := []Change{{"ppp0", 4, old4, new4}}; !reflect.DeepEqual(got, want) {
			t.Errorf("seeded %v: the new link's address: got %+v, want %+v", seeded, got, want)
		}
		if got := f.Handle(Update{Index: 7, Addr: new4, Added: true, Usable: true}); got != nil {
			t.Errorf("seeded %v: again: %+v", seeded, got)
		}
	}
}

// An address that comes while the one in use is still there moves
// nothing: the one in use is kept while it is present.
func TestInUseKept(t *testing.T) {
	k := &kernel{names: map[int]string{2: "eth1"}, addrs: map[string][]netip.Addr{"eth1": {new4, old4}}}
	f := k.follower()
	f.Follow("eth1", old4)
	if got := f.Handle(Update{Index: 2, Addr: new4, Added: true, Usable: true}); got != nil {
		t.Errorf("got %+v", got)
	}
}
