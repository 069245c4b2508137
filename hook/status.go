package hook

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"

	"github.com/gre-hook/gre-hook/hook/config"
	"github.com/gre-hook/gre-hook/hook/mss"
	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/state"
)

// TunnelStatus is one line of `gre-hook status`.
type TunnelStatus struct {
	Tunnel   string `json:"tunnel"`
	Underlay string `json:"underlay"`
	State    string `json:"state"` // "up", "down" (underlay down or absent), "drift", "unresolved" (remote's name)
	// RemoteName is the DNS name the config gives as remote, and Remote
	// the address the tunnel was brought up with.
	RemoteName string   `json:"remote_name,omitempty"`
	Remote     string   `json:"remote,omitempty"`
	Problems   []string `json:"problems,omitempty"`
	// Keepalive is set for tunnels gre-hook watch follows.
	Keepalive *KeepaliveStatus `json:"keepalive,omitempty"`
}

// Status compares the kernel with the config for each configured tunnel
// (on iface, if set) and reports whether anything differs. A tunnel whose
// underlay is missing or down is expected to be absent. cfg is the config
// req names.
func Status(req Request, cfg *config.Config, sys *System, out io.Writer, asJSON bool) (drift bool, err error) {
	snap, err := takeSnapshot(sys.Net)
	if err != nil {
		return false, err
	}
	// Each underlay is judged by the config its tunnels came from.
	recs, _, _ := sys.Store.All()
	srcs := newSources(req, cfg)
	var tunnels []config.Tunnel
	var report []TunnelStatus
	for _, t := range cfg.Tunnels {
		if rec := recs[t.Underlay]; rec == nil || rec.Source == "" || rec.Source == srcs.own {
			tunnels = append(tunnels, t)
		}
	}
	for _, u := range sortedKeys(recs) {
		rec := recs[u]
		if rec.Source == "" || rec.Source == srcs.own || (req.Iface != "" && u != req.Iface) {
			continue
		}
		c, err := srcs.forRecord(rec)
		if err != nil {
			drift = true
			report = append(report, TunnelStatus{Underlay: u, State: "drift", Problems: []string{err.Error()}})
			continue
		}
		tunnels = append(tunnels, c.For(u)...)
	}
	rules := map[int]map[string]bool{}
	jumps := map[int]bool{}
	need := map[int]bool{}
	for _, t := range tunnels {
		if t.MSS != config.MSSOff {
			need[4] = true
			if t.Carries6() {
				need[6] = true
			}
		}
	}
	for f := range need {
		b, err := sys.Tables(f)
		if err != nil {
			return false, err
		}
		lines, exists, err := b.List("mangle", mss.Chain)
		if err != nil {
			return false, err
		}
		rules[f] = map[string]bool{}
		for _, l := range lines {
			if args := mss.Split(l); len(args) > 2 && args[0] == "-A" {
				rules[f][mss.Join(args[2:])] = true
			}
		}
		if exists {
			if jumps[f], err = b.JumpExists(); err != nil {
				return false, err
			}
		}
	}

	live, _ := state.ReadLiveness(sys.Store.Dir)
	configured := map[string]bool{}
	for _, c := range tunnels {
		configured[c.Name] = true
		if req.Iface != "" && c.Underlay != req.Iface {
			continue
		}
		st := TunnelStatus{Tunnel: c.Name, Underlay: c.Underlay, State: "up"}
		problem := func(format string, args ...interface{}) {
			st.Problems = append(st.Problems, fmt.Sprintf(format, args...))
		}
		have, exists := snap.links[c.Name]
		u, uerr := underlayOf(snap, c.Underlay)
		switch {
		case uerr != nil || !u.Up:
			st.State = "down"
			if exists && have.Alias == plan.Alias(c.Underlay) {
				problem("underlay %s is down or absent but the tunnel exists", c.Underlay)
			}
		case c.RemoteName != "" && !remoteFromRecord(&c, recs[c.Underlay], &st):
			st.State = "unresolved"
			problem("remote %s has not been resolved; gre-hook watch brings the tunnel up when it resolves, else the next up of %s", c.RemoteName, c.Underlay)
		case !exists:
			problem("link %s does not exist", c.Name)
		case have.Alias != plan.Alias(c.Underlay):
			problem("link %s exists but is not gre-hook's (alias %q)", c.Name, have.Alias)
		default:
			statusOne(sys, snap, recs[c.Underlay], c, u, have.Index, rules, jumps, problem)
		}
		st.Keepalive = keepaliveStatus(c, recs[c.Underlay], live)
		if len(st.Problems) > 0 {
			if st.State != "unresolved" {
				st.State = "drift"
			}
			drift = true
		}
		report = append(report, st)
	}
	// Links of gre-hook's that no config has.
	var extra []string
	for _, l := range snap.links {
		u := strings.TrimPrefix(l.Alias, plan.AliasPrefix)
		if strings.HasPrefix(l.Alias, plan.AliasPrefix) && !configured[l.Name] && (req.Iface == "" || u == req.Iface) {
			extra = append(extra, l.Name)
		}
	}
	sort.Strings(extra)
	for _, name := range extra {
		drift = true
		report = append(report, TunnelStatus{Tunnel: name, Underlay: strings.TrimPrefix(snap.links[name].Alias, plan.AliasPrefix), State: "drift",
			Problems: []string{"gre-hook made this link but no config has it (gre-hook gc removes it)"}})
	}

	if asJSON {
		if report == nil {
			report = []TunnelStatus{}
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return drift, enc.Encode(report)
	}
	for _, st := range report {
		fmt.Fprintf(out, "%s on %s: %s%s\n", st.Tunnel, st.Underlay, st.State, describeRemote(st))
		if st.Keepalive != nil {
			fmt.Fprintf(out, "  keepalive: %s\n", st.Keepalive)
		}
		for _, p := range st.Problems {
			fmt.Fprintf(out, "  - %s\n", p)
		}
	}
	return drift, nil
}

func statusOne(sys *System, snap *snapshot, rec *state.Record, c config.Tunnel, u plan.Underlay, index int,
	rules map[int]map[string]bool, jumps map[int]bool, problem func(string, ...interface{})) {
	paths := map[netip.Addr]plan.Path{}
	if c.DefaultRoute {
		if t := rec.Find(c.Name); t != nil && t.Pin != nil {
			paths[c.Remote] = plan.Path{Gateway: t.Pin.Gw, Dev: t.Pin.Dev}
		} else if p, err := sys.Net.PathTo(c.Remote); err == nil {
			paths[c.Remote] = p
		}
	}
	ws, err := plan.Up([]config.Tunnel{c}, u, paths)
	if err != nil {
		problem("%v", err)
		return
	}
	w := withdrawDead(ws, []config.Tunnel{c}, rec)[0]
	have := snap.links[c.Name]
	if !linkMatches(have, w.Link) {
		problem("link attributes differ: have %s local %s remote %s ttl %d tos %d pmtudisc %v key %d/%d; want %s local %s remote %s ttl %d tos %d pmtudisc %v key %d/%d",
			have.Kind, have.Local, have.Remote, have.TTL, have.TOS, have.PMTUDisc, have.IKey, have.OKey,
			w.Link.Mode, w.Link.Local, w.Link.Remote, w.Link.TTL, w.Link.TOS, w.Link.PMTUDisc, w.Link.IKey, w.Link.OKey)
	}
	if have.MTU != w.Link.MTU {
		problem("mtu is %d, want %d", have.MTU, w.Link.MTU)
	}
	if have.Multicast != w.Link.Multicast {
		problem("multicast is %v, want %v", have.Multicast, w.Link.Multicast)
	}
	if !have.Up {
		problem("link is down")
	}
	for _, a := range w.Addrs {
		if !hasAddr(snap.addrs[index], a.Prefix) {
			problem("address %s is missing", a.Prefix)
		}
	}
	for _, a := range snap.addrs[index] {
		if !a.Prefix.Addr().IsLinkLocalUnicast() && !wantsAddr(w.Addrs, a.Prefix) {
			problem("address %s is not in the config", a.Prefix)
		}
	}
	routes := append(append([]plan.Route{}, w.Routes...), w.Defaults...)
	if w.Pin != nil {
		routes = append(routes, *w.Pin)
	}
	for _, r := range routes {
		found := false
		for _, h := range snap.routes[familyOf(r.Dst.Addr())] {
			if h.Dst == r.Dst && h.Table == r.Table && h.Metric == r.Metric && h.Gw == r.Gw && h.Dev == r.Dev {
				found = true
				break
			}
		}
		if !found && r.IsDefault() {
			// A default route taken over since by another tunnel, or set
			// by the admin, is the rule working (see defaults.go).
			if e := rec.Find(c.Name); e != nil && routeAtKey(e.Defaults, state.FromPlan(r, 0)) != nil {
				if cur := routeAt(snap.routes, r); cur != nil && displaced(cur, e) {
					found = true
				}
			}
		}
		if !found {
			problem("route %s is missing", strings.TrimPrefix(plan.ReplaceRouteCmd(r), "ip "))
		}
	}
	for _, m := range w.MSS {
		spec := mss.Join(plan.RuleSpec(m))
		if !rules[m.Family][spec] {
			problem("%s MSS rule is missing: %s", plan.IptablesCmd(m.Family), spec)
		} else if !jumps[m.Family] {
			problem("%s mangle POSTROUTING does not jump to %s", plan.IptablesCmd(m.Family), mss.Chain)
		}
	}
}
