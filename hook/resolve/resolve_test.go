package resolve

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
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
	got := All(context.Background(), lookup, qs, time.Second)
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
	got := All(context.Background(), lookup, qs, 300*time.Millisecond)
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
	got := All(context.Background(), lookup, []Query{{"a.test", 4}}, 200*time.Millisecond)
	if took := time.Since(start); took > 700*time.Millisecond {
		t.Errorf("took %s", took)
	}
	if !errors.Is(got[Query{"a.test", 4}].Err, ErrTimeout) {
		t.Errorf("error %v, want a timeout", got[Query{"a.test", 4}].Err)
	}
}

// The system resolver reads /etc/hosts: localhost is there on any
// machine the tests run on.
func TestSystemHosts(t *testing.T) {
	got := All(context.Background(), System, []Query{{"localhost", 4}}, 2*time.Second)
	if r := got[Query{"localhost", 4}]; r.Err != nil || r.Addr != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("localhost: %v %v", r.Addr, r.Err)
	}
}
