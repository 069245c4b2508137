package config

import (
	"fmt"
	"net/netip"
	"strings"
)

// crossCheck finds conflicts between tunnels, in one file or several:
// names, endpoints, inner addresses and routes. Tunnels with errors of
// their own take part with what of them is valid, so that one run shows
// every conflict.
func crossCheck(ps []parsed) Errors {
	var errs Errors
	fail := func(p *parsed, ri int, key, format string, args ...interface{}) {
		pos := p.at.pos(ri, key)
		errs = append(errs, &Problem{File: p.File, Line: pos.Line, Col: pos.Col,
			Msg: fmt.Sprintf("%s: %s: %s", who(p.at.index, p.Name, ri), key, fmt.Sprintf(format, args...))})
	}
	where := func(p *parsed, ri int, key string) string {
		pos := p.at.pos(ri, key)
		return fmt.Sprintf("%s:%d:%d", p.File, pos.Line, pos.Col)
	}
	byName := map[string]*parsed{}
	type endpoint struct {
		tap           bool
		underlay      string
		local, remote netip.Addr
		remoteName    string
		ikey          uint32
	}
	byEnd := map[endpoint]*parsed{}
	type inner struct {
		p      *parsed
		prefix netip.Prefix
	}
	var inners []inner
	type routeKey struct {
		to            netip.Prefix
		table, metric uint32
	}
	type routeAt struct {
		p  *parsed
		ri int
	}
	byRoute := map[routeKey]routeAt{}
	for i := range ps {
		p := &ps[i]
		t := &p.Tunnel
		if prev, ok := byName[t.Name]; ok && t.Name != "" {
			errs = append(errs, fmt.Errorf("%s:%d:%d: tunnel %q: name already used at %s:%d", t.File, t.Line, t.Col, t.Name, prev.File, prev.Line))
			continue
		}
		byName[t.Name] = p
		// The kernel keys GRE tunnels by local, remote and key; two of ours
		// with the same triple would collide with EEXIST at bring-up.
		e := endpoint{tap: t.Mode.Tap(), local: t.Local, remote: t.Remote, remoteName: strings.ToLower(strings.TrimSuffix(t.RemoteName, ".")), ikey: t.IKey}
		if !t.Local.IsValid() {
			e.underlay = t.Underlay
		}
		if prev, ok := byEnd[e]; ok {
			local := t.Local.String()
			if !t.Local.IsValid() {
				local = "auto on " + t.Underlay
			}
			errs = append(errs, fmt.Errorf("%s:%d:%d: tunnel %q: overlaps tunnel %q (%s:%d): same local (%s), remote %s and key %d; give one of them a key",
				t.File, t.Line, t.Col, t.Name, prev.Name, prev.File, prev.Line, local, remoteText(t), t.IKey))
		} else if t.Remote.IsValid() || t.RemoteName != "" {
			byEnd[e] = p
		}

		// Inner addresses: the same address twice, or subnets that
		// overlap, leave the kernel one route for addresses of two
		// tunnels.
		for _, a := range t.Addresses {
			for _, o := range inners {
				switch {
				case o.prefix.Addr() == a.Addr():
					fail(p, -1, "address", "%s is already the address of tunnel %q (%s)", a.Addr(), o.p.Name, where(o.p, -1, "address"))
				case o.prefix.Masked().Overlaps(a.Masked()):
					fail(p, -1, "address", "%s overlaps %s of tunnel %q (%s): the kernel would reach the shared addresses through one of them only", a, o.prefix, o.p.Name, where(o.p, -1, "address"))
				default:
					continue
				}
				break
			}
		}
		for _, a := range t.Addresses {
			inners = append(inners, inner{p, a})
		}

		for ri, r := range t.Routes {
			if !r.To.IsValid() {
				continue
			}
			if r.Table == 0 && t.Remote.IsValid() && r.To.Contains(t.Remote) {
				// The tunnel's own packets are routed by the main table,
				// default_route or not (policy routing keeps the main
				// table's specific routes first, marked packets included),
				// so a route over the remote sends them in.
				fail(p, ri, "to", "%s contains the tunnel's own remote %s: the encapsulated packets would be routed back into the tunnel (a routing loop)", r.To, t.Remote)
			}
			k := routeKey{r.To, r.Table, r.Metric}
			prev, ok := byRoute[k]
			switch {
			case !ok:
				byRoute[k] = routeAt{p, ri}
			case prev.p == p:
				fail(p, ri, "to", "%s (%s) is already route #%d of this tunnel (%s)", r.To, tableMetric(r), prev.ri+1, where(prev.p, prev.ri, "to"))
			default:
				fail(p, ri, "to", "%s (%s) is also routed through tunnel %q (%s); each up would take the route from the other", r.To, tableMetric(r), prev.p.Name, where(prev.p, prev.ri, "to"))
			}
		}
	}
	return errs
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
