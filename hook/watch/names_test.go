package watch

import (
	"net/netip"
	"strings"
	"testing"
	"time"
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
