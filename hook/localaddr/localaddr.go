// Package localaddr follows the underlay addresses that tunnels with
// local = "auto" use, from the kernel's address events (RTM_NEWADDR and
// RTM_DELADDR on a netlink socket): no polling. It reports when the
// address in use on an underlay goes away and another global address of
// the same family takes its place, so that gre-hook watch can move the
// tunnels over with hook.Engine.Retarget.
//
// The decisions are in Follower.Handle, which takes plain Updates and can
// be tested without a kernel; Run feeds it from netlink.
package localaddr

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/gre-hook/gre-hook/hook/addrpolicy"
)

// Update is one address event.
type Update struct {
	Index int // the link's index
	Addr  netip.Addr
	// Added: the address was added or changed (RTM_NEWADDR); else it was
	// removed.
	Added bool
	// Usable: global scope, and neither tentative (IPv6 duplicate address
	// detection still running), failed nor deprecated. A tentative address
	// comes again, usable, when detection ends.
	Usable bool
}

// Change says that the tunnels on Underlay using Old as their local
// address should use New.
type Change struct {
	Underlay string
	Family   int // 4 or 6
	Old, New netip.Addr
}

type key struct {
	underlay string
	family   int
}

// Follower keeps, per underlay and family, the address in use.
type Follower struct {
	mu    sync.Mutex
	inUse map[key]netip.Addr
	// lost holds the address that went away while no other was there to
	// take its place: the next usable one that appears does.
	lost map[key]netip.Addr
	// names caches link names by index: an address is removed with its
	// link, and the index then no longer leads to the name.
	names map[int]string

	// LinkName returns the name of the link with an index.
	LinkName func(index int) (string, error)
	// LinkIndex returns the index of the link with a name, to seed the
	// cache of names when following begins (nil: not seeded).
	LinkIndex func(name string) (int, error)
	// Usable lists an underlay's usable addresses of a family in the
	// order local = "auto" takes them (addrpolicy.OrderLocals), as up
	// does: the first is the one it would pick.
	Usable func(underlay string, family int) ([]netip.Addr, error)
}

// New returns a Follower that asks the kernel of the current network
// namespace.
func New() *Follower {
	return &Follower{LinkName: linkName, LinkIndex: linkIndex, Usable: usable}
}

func familyOf(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

func (f *Follower) init() {
	if f.inUse == nil {
		f.inUse, f.lost, f.names = map[key]netip.Addr{}, map[key]netip.Addr{}, map[int]string{}
	}
}

// Follow starts following addr, the address tunnels on underlay use now,
// or replaces the address followed there for its family.
func (f *Follower) Follow(underlay string, addr netip.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	k := key{underlay, familyOf(addr)}
	f.inUse[k] = addr.Unmap()
	delete(f.lost, k)
	// A PPP link is deleted with its address: by the time that removal
	// is read, its index leads nowhere. Knowing the index from the start
	// keeps the removal its underlay's.
	if f.LinkIndex != nil {
		if i, err := f.LinkIndex(underlay); err == nil {
			f.names[i] = underlay
		}
	}
}

// Forget stops following an underlay's address of a family.
func (f *Follower) Forget(underlay string, family int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	delete(f.inUse, key{underlay, family})
	delete(f.lost, key{underlay, family})
}

func (f *Follower) name(index int) string {
	if n, ok := f.names[index]; ok {
		return n
	}
	if f.LinkName == nil {
		return ""
	}
	n, err := f.LinkName(index)
	if err != nil {
		return ""
	}
	f.names[index] = n
	return n
}

// Handle takes one address event and returns the changes it makes.
func (f *Follower) Handle(u Update) []Change {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	name := f.name(u.Index)
	if name == "" {
		if !u.Added {
			// The removal of an address of a link gone, whose name was
			// never learnt: whichever underlay it was, recheck them all.
			return f.recheckLocked()
		}
		return nil
	}
	a := u.Addr.Unmap()
	k := key{name, familyOf(a)}
	if !u.Added {
		if cur, ok := f.inUse[k]; ok && cur == a {
			return f.replace(k, cur, a)
		}
		return nil
	}
	if !u.Usable || a.IsLinkLocalUnicast() {
		return nil
	}
	if old, ok := f.lost[k]; ok {
		delete(f.lost, k)
		f.inUse[k] = a
		return []Change{{Underlay: name, Family: k.family, Old: old, New: a}}
	}
	if cur, ok := f.inUse[k]; ok && cur != a && !f.present(k, cur) {
		// The address in use went without a removal this Follower could
		// tell (its link deleted and created again): the link's
		// addresses now decide.
		return f.replace(k, cur, cur)
	}
	return nil
}

// present reports whether the kernel still gives underlay k the address
// a; true when it cannot tell.
func (f *Follower) present(k key, a netip.Addr) bool {
	if f.Usable == nil {
		return true
	}
	as, err := f.Usable(k.underlay, k.family)
	if err != nil {
		return true
	}
	for _, b := range as {
		if b == a {
			return true
		}
	}
	return false
}

// replace finds the address to take over from cur, which went away: one
// the underlay has already, else the next to appear.
func (f *Follower) replace(k key, cur, gone netip.Addr) []Change {
	if f.Usable != nil {
		if as, err := f.Usable(k.underlay, k.family); err == nil {
			for _, n := range as {
				if n != gone && n != cur {
					f.inUse[k] = n
					return []Change{{Underlay: k.underlay, Family: k.family, Old: cur, New: n}}
				}
			}
		}
	}
	delete(f.inUse, k)
	f.lost[k] = cur
	return nil
}

// recheck compares every followed address with the kernel's, for events
// that may have been missed (before the subscription, or when the socket
// overflowed).
func (f *Follower) recheck() []Change {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	return f.recheckLocked()
}

func (f *Follower) recheckLocked() []Change {
	var out []Change
	keys := make([]key, 0, len(f.inUse)+len(f.lost))
	for k := range f.inUse {
		keys = append(keys, k)
	}
	for k := range f.lost {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i].underlay < keys[j].underlay || (keys[i].underlay == keys[j].underlay && keys[i].family < keys[j].family)
	})
	for _, k := range keys {
		if f.Usable == nil {
			break
		}
		as, err := f.Usable(k.underlay, k.family)
		if err != nil {
			continue
		}
		if old, ok := f.lost[k]; ok {
			if len(as) > 0 {
				delete(f.lost, k)
				f.inUse[k] = as[0]
				out = append(out, Change{Underlay: k.underlay, Family: k.family, Old: old, New: as[0]})
			}
			continue
		}
		cur := f.inUse[k]
		still := false
		for _, a := range as {
			still = still || a == cur
		}
		if !still {
			out = append(out, f.replace(k, cur, cur)...)
		}
	}
	return out
}

// Run follows the kernel's address events until ctx ends, sending each
// change to out. After subscribing, and again whenever the subscription
// had to be renewed (the socket overflowed, and events were lost), it
// compares the followed addresses with the kernel's.
func (f *Follower) Run(ctx context.Context, out chan<- Change) error {
	for {
		ch := make(chan netlink.AddrUpdate, 64)
		done := make(chan struct{})
		var subErr error
		var errMu sync.Mutex
		err := netlink.AddrSubscribeWithOptions(ch, done, netlink.AddrSubscribeOptions{
			ErrorCallback: func(err error) {
				errMu.Lock()
				subErr = err
				errMu.Unlock()
			},
		})
		if err != nil {
			return fmt.Errorf("following address changes: %w", err)
		}
		if !f.send(ctx, out, f.recheck()) {
			close(done)
			return ctx.Err()
		}
	events:
		for {
			select {
			case <-ctx.Done():
				close(done)
				return ctx.Err()
			case u, ok := <-ch:
				if !ok {
					break events
				}
				if !f.send(ctx, out, f.Handle(fromNetlink(u))) {
					close(done)
					return ctx.Err()
				}
			}
		}
		close(done)
		errMu.Lock()
		e := subErr
		errMu.Unlock()
		if e != nil && !errors.Is(e, unix.ENOBUFS) {
			return fmt.Errorf("following address changes: %w", e)
		}
	}
}

func (f *Follower) send(ctx context.Context, out chan<- Change, cs []Change) bool {
	for _, c := range cs {
		select {
		case out <- c:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

func fromNetlink(u netlink.AddrUpdate) Update {
	a, _ := netip.AddrFromSlice(u.LinkAddress.IP)
	a = a.Unmap()
	return Update{Index: u.LinkIndex, Addr: a, Added: u.NewAddr, Usable: usableFlags(a, u.Scope, u.Flags, u.PreferedLft, u.ValidLft)}
}

// usableFlags is the address policy's rule for local = "auto" (a
// removal is judged by its address alone).
func usableFlags(a netip.Addr, scope, flags, preferred, valid int) bool {
	return addrpolicy.Stable(addrpolicy.Local{Addr: a, Scope: scope, Flags: flags, PreferredLft: preferred, Known: valid != 0}) == ""
}

func linkIndex(name string) (int, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return 0, err
	}
	return l.Attrs().Index, nil
}

func linkName(index int) (string, error) {
	l, err := netlink.LinkByIndex(index)
	if err != nil {
		return "", err
	}
	return l.Attrs().Name, nil
}

// usable lists the underlay's usable addresses of a family in the order
// local = "auto" takes them.
func usable(underlay string, family int) ([]netip.Addr, error) {
	l, err := netlink.LinkByName(underlay)
	if err != nil {
		return nil, err
	}
	fam := netlink.FAMILY_V4
	if family == 6 {
		fam = netlink.FAMILY_V6
	}
	as, err := netlink.AddrList(l, fam)
	if err != nil {
		return nil, err
	}
	ls := make([]addrpolicy.Local, 0, len(as))
	for _, a := range as {
		ip, _ := netip.AddrFromSlice(a.IP)
		ls = append(ls, addrpolicy.Local{Addr: ip.Unmap(), Scope: a.Scope, Flags: a.Flags, PreferredLft: a.PreferedLft, Known: a.ValidLft != 0})
	}
	return addrpolicy.OrderLocals(ls, family, netip.Addr{}), nil
}
