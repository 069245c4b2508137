package config

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// crossCheck finds conflicts between tunnels, in one file or several:
// names, endpoints, inner addresses and routes. Tunnels with errors of
// their own take part with what of them is valid, so that one run shows
// every conflict.
func crossCheck(ps []parsed) Errors {
	c := &conflicts{byName: map[string]*parsed{}, byEnd: map[endpoint]*parsed{}, byRoute: map[routeKey]routeAt{}}
	// Comparing each inner address with every one before it is quadratic:
	// a million comparisons for a thousand tunnels. Where no two of them
	// overlap, which one sort shows, there is nothing for it to find.
	var inners []netip.Prefix
	for i := range ps {
		inners = append(inners, ps[i].Addresses...)
	}
	checkInners := !disjoint(inners)
	for i := range ps {
		p := &ps[i]
		if !c.name(p) {
			continue
		}
		c.endpoints(p)
		if checkInners {
			c.addresses(p)
		}
		c.routes(p)
	}
	return c.errs
}

// conflicts is what crossCheck has seen of the tunnels so far.
type conflicts struct {
	errs    Errors
	byName  map[string]*parsed
	byEnd   map[endpoint]*parsed
	inners  []inner
	byRoute map[routeKey]routeAt
}

// endpoint is what the kernel keys a GRE tunnel by.
type endpoint struct {
	tap           bool
	underlay      string
	local, remote netip.Addr
	remoteName    string
	ikey          uint32
}

type inner struct {
	p      *parsed
	prefix netip.Prefix
}

type routeKey struct {
	to            netip.Prefix
	table, metric uint32
}

type routeAt struct {
	p  *parsed
	ri int
}

func (c *conflicts) fail(p *parsed, ri int, key, format string, args ...interface{}) {
	pos := p.at.pos(ri, key)
	c.errs = append(c.errs, &Problem{File: p.File, Line: pos.Line, Col: pos.Col,
		Msg: fmt.Sprintf("%s: %s: %s", who(p.at.index, p.Name, ri), key, fmt.Sprintf(format, args...))})
}

func where(p *parsed, ri int, key string) string {
	pos := p.at.pos(ri, key)
	return fmt.Sprintf("%s:%d:%d", p.File, pos.Line, pos.Col)
}

// name refuses a name already used; a tunnel that repeats one is not
// checked further.
func (c *conflicts) name(p *parsed) bool {
	t := &p.Tunnel
	if prev, ok := c.byName[t.Name]; ok && t.Name != "" {
		c.errs = append(c.errs, fmt.Errorf("%s:%d:%d: tunnel %q: name already used at %s:%d", t.File, t.Line, t.Col, t.Name, prev.File, prev.Line))
		return false
	}
	c.byName[t.Name] = p
	return true
}

// endpoints refuses two tunnels of the same local, remote and key: the
// kernel keys GRE tunnels by them, and the second would collide with
// EEXIST at bring-up.
func (c *conflicts) endpoints(p *parsed) {
	t := &p.Tunnel
	e := endpoint{tap: t.Mode.Tap(), local: t.Local, remote: t.Remote, remoteName: strings.ToLower(strings.TrimSuffix(t.RemoteName, ".")), ikey: t.IKey}
	if !t.Local.IsValid() {
		e.underlay = t.Underlay
	}
	if prev, ok := c.byEnd[e]; ok {
		local := t.Local.String()
		if !t.Local.IsValid() {
			local = "auto on " + t.Underlay
		}
		c.errs = append(c.errs, fmt.Errorf("%s:%d:%d: tunnel %q: overlaps tunnel %q (%s:%d): same local (%s), remote %s and key %d; give one of them a key",
			t.File, t.Line, t.Col, t.Name, prev.Name, prev.File, prev.Line, local, remoteText(t), t.IKey))
	} else if t.Remote.IsValid() || t.RemoteName != "" {
		c.byEnd[e] = p
	}
}

// addresses refuses inner addresses used twice, or subnets that overlap,
// which leave the kernel one route for addresses of two tunnels.
func (c *conflicts) addresses(p *parsed) {
	t := &p.Tunnel
	for _, a := range t.Addresses {
		for _, o := range c.inners {
			switch {
			case o.prefix.Addr() == a.Addr():
				c.fail(p, -1, "address", "%s is already the address of tunnel %q (%s)", a.Addr(), o.p.Name, where(o.p, -1, "address"))
			case o.prefix.Masked().Overlaps(a.Masked()):
				c.fail(p, -1, "address", "%s overlaps %s of tunnel %q (%s): "+
					"the kernel would reach the shared addresses through one of them only", a, o.prefix, o.p.Name, where(o.p, -1, "address"))
			default:
				continue
			}
			break
		}
	}
	for _, a := range t.Addresses {
		c.inners = append(c.inners, inner{p, a})
	}
}

// disjoint reports whether no two of ps overlap (nor share an address).
// Sorted by where they start, aligned prefixes overlap only if one starts
// within a range that came before it.
func disjoint(ps []netip.Prefix) bool {
	type span struct{ first, last netip.Addr }
	spans := make([]span, 0, len(ps))
	for _, p := range ps {
		m := p.Masked()
		if !m.IsValid() {
			continue
		}
		spans = append(spans, span{m.Addr(), lastAddr(m)})
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].first.Less(spans[j].first) })
	for i := 1; i < len(spans); i++ {
		prev, cur := spans[i-1], spans[i]
		// With no overlap so far, the ranges before cur are disjoint and
		// in order, so the previous one ends last: only it can reach cur.
		if prev.first.BitLen() == cur.first.BitLen() && !prev.last.Less(cur.first) {
			return false
		}
	}
	return true
}

// lastAddr is the last address of the masked prefix p.
func lastAddr(p netip.Prefix) netip.Addr {
	host := p.Addr().BitLen() - p.Bits()
	if p.Addr().Is4() {
		a := p.Addr().As4()
		u := binary.BigEndian.Uint32(a[:]) | (uint32(1)<<host - 1)
		binary.BigEndian.PutUint32(a[:], u)
		return netip.AddrFrom4(a)
	}
	a := p.Addr().As16()
	hi, lo := binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])
	if host >= 64 {
		lo = ^uint64(0)
		hi |= uint64(1)<<(host-64) - 1
	} else {
		lo |= uint64(1)<<host - 1
	}
	binary.BigEndian.PutUint64(a[:8], hi)
	binary.BigEndian.PutUint64(a[8:], lo)
	return netip.AddrFrom16(a)
}

// routes refuses a route over the tunnel's own remote, and a route (by
// prefix, table and metric) given twice.
func (c *conflicts) routes(p *parsed) {
	t := &p.Tunnel
	for ri, r := range t.Routes {
		if !r.To.IsValid() {
			continue
		}
		if r.Table == 0 && t.Remote.IsValid() && r.To.Contains(t.Remote) {
			// The tunnel's own packets are routed by the main table,
			// default_route or not (policy routing keeps the main
			// table's specific routes first, marked packets included),
			// so a route over the remote sends them in.
			c.fail(p, ri, "to", "%s contains the tunnel's own remote %s: the encapsulated packets would be routed back into the tunnel (a routing loop)", r.To, t.Remote)
		}
		k := routeKey{r.To, r.Table, r.Metric}
		prev, ok := c.byRoute[k]
		switch {
		case !ok:
			c.byRoute[k] = routeAt{p, ri}
		case prev.p == p:
			c.fail(p, ri, "to", "%s (%s) is already route #%d of this tunnel (%s)", r.To, tableMetric(r), prev.ri+1, where(prev.p, prev.ri, "to"))
		default:
			c.fail(p, ri, "to", "%s (%s) is also routed through tunnel %q (%s); "+
				"each up would take the route from the other", r.To, tableMetric(r), prev.p.Name, where(prev.p, prev.ri, "to"))
		}
	}
}

func tableMetric(r Route) string {
	table := "main"
	if r.Table != 0 {
		table = fmt.Sprint(r.Table)
	}
	return fmt.Sprintf("table %s, metric %d", table, r.Metric)
}

// remoteText is the remote as the config gave it.
func remoteText(t *Tunnel) string {
	if t.RemoteName != "" {
		return t.RemoteName
	}
	return t.Remote.String()
}
