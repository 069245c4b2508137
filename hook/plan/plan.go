// Package plan turns a validated config, the underlay's current state and
// a phase into the kernel objects gre-hook wants to exist. It is pure: it
// reads nothing and changes nothing, so it can be tested without root and
// printed by --dry-run.
package plan

import (
	"fmt"
	"net/netip"

	"github.com/gre-hook/gre-hook/hook/config"
	"github.com/gre-hook/gre-hook/hook/gre"
)

// RouteProtocol marks every route gre-hook installs, so that teardown and
// gc can tell them from routes installed by anyone else. The package ships
// /etc/iproute2/rt_protos.d/gre-hook.conf so `ip route` shows it by name.
const RouteProtocol = 176

// AliasPrefix marks links gre-hook created: the kernel keeps the alias
// (IFLA_IFALIAS) for the life of the link, so ownership survives a lost
// record. The full alias is AliasPrefix + underlay.
const AliasPrefix = "gre-hook:"

// Alias returns the ownership alias for a tunnel on underlay.
func Alias(underlay string) string { return AliasPrefix + underlay }

// Underlay is what a plan needs to know about the underlay interface.
type Underlay struct {
	Name string
	MTU  int
	Up   bool
	// Addrs are the underlay's global addresses, primary first.
	Addrs []netip.Addr
}

// Policy is how the default routes of default_route tunnels are routed
// (hook/POLICY-ROUTING.md): in table Table, chosen by a rule at Priority
// that sends everything to the main table but its default route, and one
// at Priority+1 that sends everything not marked Mark to Table. Every
// tunnel's outer packets carry Mark. Records keep the policy they were
// written under.
type Policy struct {
	Table    uint32 `json:"table"`
	Priority uint32 `json:"priority"`
	Mark     uint32 `json:"fwmark"`
}

// DefaultPolicy is the policy without a [policy] table: below the
// kernel's main rule (32766), leaving 1 to 32699 to the admin's own
// rules; 47 is GRE.
var DefaultPolicy = PolicyOf(config.DefaultPolicy)

// PolicyOf is the config's [policy] table.
func PolicyOf(p config.Policy) Policy {
	return Policy{Table: p.Table, Priority: p.Priority, Mark: p.FwMark}
}

// String is the policy as status and --dry-run show it.
func (p Policy) String() string {
	return fmt.Sprintf("table %d, rules at priorities %d and %d, fwmark %#x", p.Table, p.Priority, p.Priority+1, p.Mark)
}

// Rule is one of gre-hook's policy routing rules.
type Rule struct {
	Family   int // 4 or 6
	Priority uint32
	Table    uint32 // 0 is main
	// Mark with Invert is `not fwmark Mark`; 0 for no mark selector.
	Mark   uint32
	Invert bool
	// SuppressPrefixLen is -1 for none.
	SuppressPrefixLen int
}

// Rules are the rules of family f that select p.Table: the main table's
// routes but its default first, then p.Table for all but the tunnels'
// own packets.
func (p Policy) Rules(f int) []Rule {
	return []Rule{
		{Family: f, Priority: p.Priority, Table: 0, SuppressPrefixLen: 0},
		{Family: f, Priority: p.Priority + 1, Table: p.Table, Mark: p.Mark, Invert: true, SuppressPrefixLen: -1},
	}
}

// Options are what planning needs beyond the config and the underlay.
type Options struct {
	Policy Policy
	// Metrics is the metric of each default_route tunnel's default route
	// in Policy.Table, by tunnel name (hook picks them: config order).
	Metrics map[string]uint32
}

// Link is a GRE link as gre-hook wants it.
type Link struct {
	Name string
	Mode config.Mode
	gre.Params
	MTU       int
	Multicast bool
	Alias     string
	// FwMark marks the tunnel's outer packets, so that they skip the
	// rule to gre-hook's default route table (Policy.Mark).
	FwMark uint32
}

// Addr is an address on a tunnel; Broadcast is invalid where none applies.
type Addr struct {
	Prefix    netip.Prefix
	Broadcast netip.Addr
}

// Route is a route gre-hook installs, always with RouteProtocol.
type Route struct {
	Dst netip.Prefix
	Gw  netip.Addr
	Dev string
	// Table and Metric are the kernel's 32-bit values: an int would turn
	// the upper half negative on 32-bit targets (armhf, i386).
	Table  uint32 // 0 means main
	Metric uint32
}

// IsDefault reports whether r is a default route.
func (r Route) IsDefault() bool { return r.Dst.Bits() == 0 }

// Tunnel is everything one tunnel needs.
type Tunnel struct {
	Link   Link
	Addrs  []Addr
	Routes []Route
	// Defaults are default routes via the peer in gre-hook's table
	// (Policy.Table), one per family the tunnel has a peer in.
	Defaults []Route
	MSS      []MSSRule
	Up       []string
	Down     []string
	// RemoteName is the DNS name Link.Remote was resolved from, if any.
	RemoteName string
	// Reflect: the tunnel's interface must bounce the peer's keepalives
	// back (config.Tunnel.Reflects), which takes per-interface sysctls.
	Reflect bool
}

// MSSRule is one TCPMSS rule in gre-hook's mangle chain.
type MSSRule struct {
	Family  int // 4 or 6
	Out     string
	Comment string
	Mode    config.MSSMode
	Value   int
}

// Comment is the mark on each of gre-hook's rules: it names the owner, the
// underlay and the tunnel, so teardown can find exactly its own rules.
func Comment(underlay, tunnel string) string {
	return AliasPrefix + underlay + ":" + tunnel
}

// Overhead returns the bytes the encapsulation adds on the underlay.
func Overhead(m config.Mode, okey uint32) int {
	var n int
	switch m {
	case config.ModeGRE:
		n = 20 + 4
	case config.ModeGRETap:
		n = 20 + 4 + 14
	case config.ModeIP6GRE:
		// The kernel adds an 8-byte tunnel encapsulation limit option to
		// ip6gre packets unless told not to, and sizes the MTU for it.
		n = 40 + 4 + 8
	case config.ModeIP6GRETap:
		n = 40 + 4 + 8 + 14
	}
	// Only the output key lengthens the header gre-hook sends.
	if okey != 0 {
		n += 4
	}
	return n
}

// Up builds the plan for bringing up tunnels on u.
func Up(tunnels []config.Tunnel, u Underlay, o Options) ([]Tunnel, error) {
	var out []Tunnel
	for i := range tunnels {
		t, err := upOne(&tunnels[i], u, o)
		if err != nil {
			return nil, fmt.Errorf("tunnel %q: %w", tunnels[i].Name, err)
		}
		out = append(out, t)
	}
	return out, nil
}

func upOne(c *config.Tunnel, u Underlay, o Options) (Tunnel, error) {
	if !c.Remote.IsValid() {
		return Tunnel{}, fmt.Errorf("remote %q has not been resolved to an address", c.RemoteName)
	}
	local := c.Local
	if !local.IsValid() {
		// The remote among the underlay's own addresses would make a
		// tunnel to this host itself.
		self := false
		for _, a := range u.Addrs {
			if a == c.Remote {
				self = true
			} else if a.Is6() == c.Remote.Is6() {
				local = a
				break
			}
		}
		if !local.IsValid() {
			fam := "IPv4"
			if c.Remote.Is6() {
				fam = "IPv6"
			}
			if self {
				return Tunnel{}, fmt.Errorf("local is automatic, and underlay %s's only %s address %s is the remote itself", u.Name, fam, c.Remote)
			}
			return Tunnel{}, fmt.Errorf("local is automatic but underlay %s has no global %s address yet", u.Name, fam)
		}
	}
	mtu := c.MTU
	if mtu == 0 {
		if u.MTU == 0 {
			return Tunnel{}, fmt.Errorf("cannot derive the mtu: underlay %s reports none", u.Name)
		}
		mtu = u.MTU - Overhead(c.Mode, c.OKey)
	}
	params := c.Params
	params.Local = local
	t := Tunnel{
		Link: Link{Name: c.Name, Mode: c.Mode, Params: params,
			MTU: mtu, Multicast: c.Multicast, Alias: Alias(u.Name), FwMark: o.Policy.Mark,
		},
		Up:         c.UpCommand,
		Down:       c.DownCommand,
		RemoteName: c.RemoteName,
		Reflect:    c.Reflects(),
	}
	for _, p := range c.Addresses {
		a := Addr{Prefix: p}
		if b, ok := config.Broadcast(p); ok {
			a.Broadcast = b
		}
		t.Addrs = append(t.Addrs, a)
	}
	for _, r := range c.Routes {
		t.Routes = append(t.Routes, Route{Dst: r.To, Gw: r.Via, Dev: c.Name, Table: r.Table, Metric: KernelMetric(r.To, r.Metric)})
	}
	if c.DefaultRoute {
		m := o.Metrics[c.Name]
		if m == 0 {
			m = 1
		}
		for _, peer := range c.Peers {
			dst := netip.PrefixFrom(zero(peer), 0)
			t.Defaults = append(t.Defaults, Route{Dst: dst, Gw: peer, Dev: c.Name, Table: o.Policy.Table, Metric: m})
		}
	}
	if c.MSS != config.MSSOff {
		fams := []int{4}
		if c.Carries6() {
			fams = append(fams, 6)
		}
		for _, f := range fams {
			t.MSS = append(t.MSS, MSSRule{Family: f, Out: c.Name, Comment: Comment(u.Name, c.Name), Mode: c.MSS, Value: c.MSSValue})
		}
	}
	return t, nil
}

// KernelMetric is the metric the kernel stores for a route to dst asked
// for with metric m: IPv6 turns metric 0 into 1024 (IP6_RT_PRIO_USER), and
// a route read back must compare equal to the one planned.
func KernelMetric(dst netip.Prefix, m uint32) uint32 {
	if m == 0 && dst.Addr().Is6() {
		return 1024
	}
	return m
}

func zero(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}
