// Package resolve turns the DNS names a config gives as tunnel remotes
// into addresses, with the system's rules as Go's own resolver reads them:
// /etc/nsswitch.conf, /etc/hosts, then the servers in /etc/resolv.conf.
//
// gre-hook is a static binary (CGO_ENABLED=0), so there is no libc
// resolver to call; the Go resolver is used on purpose everywhere, so that
// a build with cgo would behave the same. Inside `ip netns exec NAME`, ip
// bind-mounts /etc/netns/NAME/hosts (and resolv.conf) over the files in
// /etc, so reading /etc/hosts reads the namespace's own.
package resolve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"time"

	"github.com/gre-hook/gre-hook/hook/addrpolicy"
)

// DefaultWait bounds the resolution of every name of one run together. A
// hook runs at boot, maybe before any DNS server is reachable, and ifup
// waits for it: a few seconds, not resolv.conf's timeout times attempts
// times servers.
const DefaultWait = 3 * time.Second

// LookupFunc returns the addresses of a name, of both families.
type LookupFunc func(ctx context.Context, name string) ([]netip.Addr, error)

// System looks names up with Go's own resolver.
func System(ctx context.Context, name string) ([]netip.Addr, error) {
	r := &net.Resolver{PreferGo: true}
	return r.LookupNetIP(ctx, "ip", name)
}

// Query is one name to resolve, and the family (4 or 6) its tunnel needs.
type Query struct {
	Name   string
	Family int
}

// Result is the outcome of one Query: Addr, or Err.
type Result struct {
	Addr netip.Addr
	// All are every address of the family that the address policy
	// accepts, sorted; Addr is the first of them the resolver returned.
	All []netip.Addr
	Err error
}

// RefusedError is a name whose addresses of the family the tunnel needs
// are all refused by the address policy (hook/addrpolicy): 0.0.0.0 from
// an ad-blocking resolver, localhost's 127.0.0.1, the router's own.
type RefusedError struct {
	Name    string
	Refused []addrpolicy.Refusal
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("%s resolves to no address a tunnel can use (%s)", e.Name, addrpolicy.JoinRefusals(e.Refused))
}

// ErrTimeout is wrapped by the error of a name that did not resolve in
// time.
var ErrTimeout = errors.New("timed out")

// FamilyError is a name that resolves, but to no address of the family
// the tunnel needs.
type FamilyError struct {
	Name   string
	Family int
	Have   []netip.Addr
}

func (e *FamilyError) Error() string {
	return fmt.Sprintf("%s has no %s address (it resolves to %s only)", e.Name, FamilyName(e.Family), JoinAddrs(e.Have))
}

// FamilyName is "IPv4" or "IPv6".
func FamilyName(family int) string { return addrpolicy.FamilyName(family) }

// JoinAddrs lists addresses for a message, comma-separated.
func JoinAddrs(as []netip.Addr) string {
	s := ""
	for i, a := range as {
		if i > 0 {
			s += ", "
		}
		s += a.String()
	}
	return s
}

// All resolves every query concurrently, each name once, under one
// deadline of wait for all of them together. It always returns one result
// per distinct query; a name that fails does not hold up the others. The
// addresses are judged by the address policy, own being the router's.
func All(ctx context.Context, lookup LookupFunc, qs []Query, wait time.Duration, own addrpolicy.Own) map[Query]Result {
	out := map[Query]Result{}
	if len(qs) == 0 {
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()

	type answer struct {
		addrs []netip.Addr
		err   error
	}
	names := map[string]chan answer{}
	for _, q := range qs {
		if _, ok := names[q.Name]; ok {
			continue
		}
		ch := make(chan answer, 1)
		names[q.Name] = ch
		go func(name string) {
			a, err := lookup(ctx, name)
			ch <- answer{a, err}
		}(q.Name)
	}
	// Wait for each answer or the deadline, whichever is first: a lookup
	// function that ignores its context must not hold the run.
	got := map[string]answer{}
	for name, ch := range names {
		select {
		case a := <-ch:
			got[name] = a
		case <-ctx.Done():
			// An answer that came in before the deadline still counts.
			select {
			case a := <-ch:
				got[name] = a
			default:
				got[name] = answer{err: fmt.Errorf("%w after %s", ErrTimeout, wait)}
			}
		}
	}
	for _, q := range qs {
		a := got[q.Name]
		out[q] = pick(q, a.addrs, a.err, ctx.Err() != nil, wait, own)
	}
	return out
}

func pick(q Query, addrs []netip.Addr, err error, late bool, wait time.Duration, own addrpolicy.Own) Result {
	if err != nil {
		if !errors.Is(err, ErrTimeout) && late && (errors.Is(err, context.DeadlineExceeded) || isTimeout(err)) {
			err = fmt.Errorf("%w after %s", ErrTimeout, wait)
		}
		return Result{Err: fmt.Errorf("resolving %s: %w", q.Name, err)}
	}
	all, refused := own.Remotes(addrs, q.Family)
	switch {
	case len(all) > 0:
	case len(refused) > 0:
		return Result{Err: &RefusedError{Name: q.Name, Refused: refused}}
	case len(addrs) == 0:
		return Result{Err: fmt.Errorf("resolving %s: no addresses", q.Name)}
	default:
		return Result{Err: &FamilyError{Name: q.Name, Family: q.Family, Have: addrs}}
	}
	first := all[0]
	sort.Slice(all, func(i, j int) bool { return all[i].Less(all[j]) })
	return Result{Addr: first, All: all}
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
