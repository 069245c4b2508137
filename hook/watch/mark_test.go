package watch

import (
	"testing"
)

// Each keepalive carries the fwmark of its tunnel's link, so that it is
// routed as the tunnel's own outer packets are: tunnels with two marks
// (a change of policy under way) get one each, and a reload after the
// change (the records rewritten) brings the new mark.
func TestKeepaliveCarriesTheLinksMark(t *testing.T) {
	a, b := target("gre-a", site2), target("gre-b", site3)
	a.Mark, b.Mark = 0x4747, 0x10
	r := start(t, a, b)
	r.waitFor("keepalives with each link's mark", func() bool {
		ma, oka := r.conn.markOf(site2)
		mb, okb := r.conn.markOf(site3)
		return oka && okb && ma == 0x4747 && mb == 0x10
	})
	a.Mark = 0x10
	r.eng.setTargets(a, b)
	r.reload <- struct{}{}
	r.waitFor("gre-a's keepalives with the new mark", func() bool {
		m, _ := r.conn.markOf(site2)
		return m == 0x10
	})
}
