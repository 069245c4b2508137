package resolve

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gre-hook/gre-hook/hook/addrpolicy"
)

func fakeLookup(table map[string][]string, hang map[string]bool) LookupFunc {
	return func(ctx context.Context, name string) ([]netip.Addr, error) {
		if hang[name] {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		ss, ok := table[name]
		if !ok {
			return nil, errors.New("no such host")
		}
		var out []netip.Addr
		for _, s := range ss {
			out = append(out, netip.MustParseAddr(s))
		}
		return out, nil
	}
}

func TestAllFamilies(t *testing.T) {
	lookup := fakeLookup(map[string][]string{
		"both.test": {"2001:db8::1", "203.0.113.1"},
		"v6.test":   {"2001:db8::2"},
		"v4.test":   {"203.0.113.2", "::ffff:203.0.113.3"},
	}, nil)
	qs := []Query{{"both.test", 4}, {"both.test", 6}, {"v6.test", 4}, {"v4.test", 4}, {"v4.test", 6}, {"none.test", 4}}
	got := All(context.Background(), lookup, qs, time.Second, addrpolicy.Own{})
	want := map[Query]string{
		{"both.test", 4}: "203.0.113.1",
		{"both.test", 6}: "2001:db8::1",
		{"v6.test", 4}:   "error: v6.test has no IPv4 address (it resolves to 2001:db8::2 only)",
		{"v4.test", 4}:   "203.0.113.2",
		{"v4.test", 6}:   "error: v4.test has no IPv6 address (it resolves to 203.0.113.2, ::ffff:203.0.113.3 only)",
		{"none.test", 4}: "error: resolving none.test: no such host",
	}
	if len(got) != len(want) {
		t.Fatalf("got %d results, want %d", len(got), len(want))
	}
	for q, w := range want {
		r := got[q]
		s := r.Addr.String()
		if r.Err != nil {
			s = "error: " + r.Err.Error()
		}
		if s != w {
			t.Errorf("%v: got %q, want %q", q, s, w)
		}
	}
	var fe *FamilyError
	if !errors.As(got[Query{"v6.test", 4}].Err, &fe) || fe.Family != 4 {
		t.Errorf("wrong family is not a *FamilyError: %v", got[Query{"v6.test", 4}].Err)
	}
	if a := got[Query{"v4.test", 4}].All; len(a) != 2 || a[1] != netip.MustParseAddr("203.0.113.3") {
		t.Errorf("All = %v, want both IPv4 addresses, the mapped one unmapped", a)
	}
}

// One name that never answers costs the run the wait once, not once per
// name, and does not take the others with it.
func TestAllDeadline(t *testing.T) {
	lookup := fakeLookup(map[string][]string{"ok.test": {"203.0.113.1"}},
		map[string]bool{"slow1.test": true, "slow2.test": true, "slow3.test": true})
	qs := []Query{{"slow1.test", 4}, {"ok.test", 4}, {"slow2.test", 4}, {"slow3.test", 6}}
	start := time.Now()
	got := All(context.Background(), lookup, qs, 300*time.Millisecond, addrpolicy.Own{})
	took := time.Since(start)
	if took > 900*time.Millisecond {
		t.Errorf("took %s for three hanging names with a 300ms wait", took)
	}
	if r := got[Query{"ok.test", 4}]; r.Err != nil || r.Addr != netip.MustParseAddr("203.0.113.1") {
		t.Errorf("ok.test: %v %v", r.Addr, r.Err)
	}
	for _, q := range []Query{{"slow1.test", 4}, {"slow2.test", 4}, {"slow3.test", 6}} {
		r := got[q]
		if !errors.Is(r.Err, ErrTimeout) || !strings.Contains(r.Err.Error(), q.Name) {
			t.Errorf("%v: error %v, want a timeout naming the name", q, r.Err)
		}
	}
}

// A lookup function that ignores its context must not hold the run
// either.
func TestAllDeadlineStubbornLookup(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	lookup := func(ctx context.Context, name string) ([]netip.Addr, error) {
		<-release
		return nil, nil
	}
	start := time.Now()
	got := All(context.Background(), lookup, []Query{{"a.test", 4}}, 200*time.Millisecond, addrpolicy.Own{})
	if took := time.Since(start); took > 700*time.Millisecond {
		t.Errorf("took %s", took)
	}
	if !errors.Is(got[Query{"a.test", 4}].Err, ErrTimeout) {
		t.Errorf("error %v, want a timeout", got[Query{"a.test", 4}].Err)
	}
}

// The system resolver reads /etc/hosts: localhost is there on any
// machine the tests run on, and its 127.0.0.1 is refused.
func TestSystemHosts(t *testing.T) {
	got := All(context.Background(), System, []Query{{"localhost", 4}}, 2*time.Second, addrpolicy.Own{})
	want := "localhost resolves to no address a tunnel can use (127.0.0.1 is a loopback address, this host itself)"
	if r := got[Query{"localhost", 4}]; r.Err == nil || r.Err.Error() != want {
		t.Errorf("localhost: %v %v, want %s", r.Addr, r.Err, want)
	}
}

// Answers the address policy refuses: each name's error says what was
// refused, and a good address among bad ones is taken.
func TestAllRefuses(t *testing.T) {
	lookup := fakeLookup(map[string][]string{
		"adblock.test": {"0.0.0.0", "::"},
		"loop.test":    {"127.0.0.1"},
		"self.test":    {"198.51.100.1", "2001:db8::1"},
		"bcast.test":   {"198.51.100.255"},
		"mixed.test":   {"127.0.0.1", "0.0.0.0", "203.0.113.5", "198.51.100.1"},
	}, nil)
	own := addrpolicy.Own{Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.1/24")}}
	qs := []Query{{"adblock.test", 4}, {"adblock.test", 6}, {"loop.test", 4}, {"self.test", 4}, {"bcast.test", 4}, {"mixed.test", 4}}
	got := All(context.Background(), lookup, qs, time.Second, own)
	want := map[Query]string{
		{"adblock.test", 4}: "adblock.test resolves to no address a tunnel can use (0.0.0.0 is the unspecified address: a tunnel with it takes GRE from, or sends it to, any address)",
		{"adblock.test", 6}: "adblock.test resolves to no address a tunnel can use (:: is the unspecified address: a tunnel with it takes GRE from, or sends it to, any address)",
		{"loop.test", 4}:    "loop.test resolves to no address a tunnel can use (127.0.0.1 is a loopback address, this host itself)",
		{"self.test", 4}:    "self.test resolves to no address a tunnel can use (198.51.100.1 is an address of this router)",
		{"bcast.test", 4}:   "bcast.test resolves to no address a tunnel can use (198.51.100.255 is the broadcast address of 198.51.100.0/24, a subnet of this router)",
	}
	for q, w := range want {
		if r := got[q]; r.Err == nil || r.Err.Error() != w {
			t.Errorf("%v: %v %v\nwant %s", q, r.Addr, r.Err, w)
		}
	}
	if r := got[Query{"mixed.test", 4}]; r.Err != nil || r.Addr.String() != "203.0.113.5" || len(r.All) != 1 {
		t.Errorf("mixed.test: %+v", r)
	}
}
