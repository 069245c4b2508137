package plan

import (
	"fmt"
	"strings"

	"github.com/gre-hook/gre-hook/hook/config"
)

// The functions here render each change as the command a person would type
// for it. They are what gre-hook logs before each change and what
// --dry-run prints; gre-hook itself never runs ip.

// AddLinkCmd renders the creation of l.
func AddLinkCmd(l Link) string {
	var b strings.Builder
	switch l.Mode {
	case config.ModeGRE:
		fmt.Fprintf(&b, "ip tunnel add %s mode gre", l.Name)
	case config.ModeIP6GRE:
		fmt.Fprintf(&b, "ip -6 tunnel add %s mode ip6gre", l.Name)
	default:
		fmt.Fprintf(&b, "ip link add %s type %s", l.Name, l.Mode)
	}
	fmt.Fprintf(&b, " remote %s local %s ttl %d", l.Remote, l.Local, l.TTL)
	if l.TOS != 0 {
		if l.TOS == 1 {
			b.WriteString(" tos inherit")
		} else {
			fmt.Fprintf(&b, " tos 0x%x", l.TOS)
		}
	}
	switch {
	case l.IKey != 0 && l.IKey == l.OKey:
		fmt.Fprintf(&b, " key %d", l.IKey)
	default:
		if l.IKey != 0 {
			fmt.Fprintf(&b, " ikey %d", l.IKey)
		}
		if l.OKey != 0 {
			fmt.Fprintf(&b, " okey %d", l.OKey)
		}
	}
	if !l.PMTUDisc {
		b.WriteString(" nopmtudisc")
	}
	return b.String()
}

// FwMarkCmd renders marking l's outer packets.
func FwMarkCmd(l Link) string {
	return fmt.Sprintf("ip link set %s type %s fwmark %#x", l.Name, l.Mode, l.FwMark)
}

func ruleArgs(r Rule) string {
	var b strings.Builder
	if r.Family == 6 {
		b.WriteString("ip -6 rule")
	} else {
		b.WriteString("ip rule")
	}
	fmt.Fprintf(&b, " %%s priority %d", r.Priority)
	if r.Mark != 0 {
		if r.Invert {
			b.WriteString(" not")
		}
		fmt.Fprintf(&b, " fwmark %#x", r.Mark)
	}
	if r.Table == 0 {
		b.WriteString(" lookup main")
	} else {
		fmt.Fprintf(&b, " lookup %d", r.Table)
	}
	if r.SuppressPrefixLen >= 0 {
		fmt.Fprintf(&b, " suppress_prefixlength %d", r.SuppressPrefixLen)
	}
	fmt.Fprintf(&b, " proto %d", RouteProtocol)
	return b.String()
}

// AddRuleCmd renders adding one of gre-hook's rules.
func AddRuleCmd(r Rule) string { return fmt.Sprintf(ruleArgs(r), "add") }

// DelRuleCmd renders deleting one.
func DelRuleCmd(r Rule) string { return fmt.Sprintf(ruleArgs(r), "del") }

// AliasCmd renders marking l as gre-hook's.
func AliasCmd(l Link) string { return fmt.Sprintf("ip link set %s alias %s", l.Name, l.Alias) }

// MTUCmd renders setting the MTU.
func MTUCmd(l Link) string { return fmt.Sprintf("ip link set %s mtu %d", l.Name, l.MTU) }

// MulticastCmd renders the multicast flag.
func MulticastCmd(l Link) string {
	if l.Multicast {
		return fmt.Sprintf("ip link set %s multicast on", l.Name)
	}
	return fmt.Sprintf("ip link set %s multicast off", l.Name)
}

// UpCmd renders bringing the link up.
func UpCmd(name string) string { return fmt.Sprintf("ip link set %s up", name) }

// DownCmd renders setting the link down.
func DownCmd(name string) string { return fmt.Sprintf("ip link set %s down", name) }

// DelLinkCmd renders deleting a link.
func DelLinkCmd(name string) string { return fmt.Sprintf("ip link del %s", name) }

// AddAddrCmd renders adding a.
func AddAddrCmd(dev string, a Addr) string {
	if a.Broadcast.IsValid() {
		return fmt.Sprintf("ip addr add %s broadcast %s dev %s", a.Prefix, a.Broadcast, dev)
	}
	return fmt.Sprintf("ip addr add %s dev %s", a.Prefix, dev)
}

// DelAddrCmd renders removing a.
func DelAddrCmd(dev string, a Addr) string {
	return fmt.Sprintf("ip addr del %s dev %s", a.Prefix, dev)
}

func routeArgs(r Route) string {
	var b strings.Builder
	if r.IsDefault() {
		b.WriteString("default")
	} else {
		b.WriteString(r.Dst.String())
	}
	if r.Gw.IsValid() {
		fmt.Fprintf(&b, " via %s", r.Gw)
	}
	if r.Dev != "" {
		fmt.Fprintf(&b, " dev %s", r.Dev)
	}
	if r.Table != 0 {
		fmt.Fprintf(&b, " table %d", r.Table)
	}
	if r.Metric != 0 {
		fmt.Fprintf(&b, " metric %d", r.Metric)
	}
	return b.String()
}

func ipFam(r Route) string {
	if r.Dst.Addr().Is6() {
		return "ip -6"
	}
	return "ip"
}

// ReplaceRouteCmd renders installing r.
func ReplaceRouteCmd(r Route) string {
	return fmt.Sprintf("%s route replace %s proto %d", ipFam(r), routeArgs(r), RouteProtocol)
}

// DelRouteCmd renders deleting r.
func DelRouteCmd(r Route) string {
	return fmt.Sprintf("%s route del %s", ipFam(r), routeArgs(r))
}

// RestoreRouteCmd renders putting back a route gre-hook had replaced.
func RestoreRouteCmd(r Route, proto int) string {
	s := fmt.Sprintf("%s route replace %s", ipFam(r), routeArgs(r))
	if proto != 0 {
		s += fmt.Sprintf(" proto %d", proto)
	}
	return s
}

// RuleSpec is the rule's match and target in iptables' own -S order, so that
// a rule read back from the kernel compares equal to the one we want.
func RuleSpec(r MSSRule) []string {
	spec := []string{"-o", r.Out, "-p", "tcp", "-m", "tcp", "--tcp-flags", "SYN,RST", "SYN",
		"-m", "comment", "--comment", r.Comment, "-j", "TCPMSS"}
	if r.Mode == config.MSSFixed {
		return append(spec, "--set-mss", fmt.Sprint(r.Value))
	}
	return append(spec, "--clamp-mss-to-pmtu")
}

// GuardSpec is the reflection guard of a tunnel that reflects keepalives,
// in iptables' own -S order: it drops the inner packets that come in
// through the tunnel with one of the router's own addresses as source
// (which accept_local lets in) unless they are GRE, as the reflected
// keepalives are. It goes in the IPv4 table only: accept_local and the
// keepalives are IPv4's.
func GuardSpec(underlay, tunnel string) []string {
	return []string{"-i", tunnel, "!", "-p", "gre", "-m", "addrtype", "--src-type", "LOCAL",
		"-m", "comment", "--comment", Comment(underlay, tunnel), "-j", "DROP"}
}

// IptablesCmd names the binary for a family.
func IptablesCmd(family int) string {
	if family == 6 {
		return "ip6tables"
	}
	return "iptables"
}

// Change is one tunnel attribute the kernel changes on a live link.
type Change struct {
	// Attr names it: local, remote, ttl, tos, pmtudisc or key.
	Attr string
	// Have and Want are its values, in the words ip link takes.
	Have, Want string
}

// Changes lists the tunnel attributes in which have differs from want,
// in the order ip link prints them. The ip6 modes have no pmtudisc: the
// kernel reports none, so it is not compared.
func Changes(have, want Link) []Change {
	var out []Change
	add := func(attr, h, w string) {
		if h != w {
			out = append(out, Change{Attr: attr, Have: h, Want: w})
		}
	}
	add("local", have.Local.String(), want.Local.String())
	add("remote", have.Remote.String(), want.Remote.String())
	add("ttl", fmt.Sprint(have.TTL), fmt.Sprint(want.TTL))
	add("tos", tosWords(have.TOS), tosWords(want.TOS))
	if !want.Mode.Outer6() {
		add("pmtudisc", pmtuWords(have.PMTUDisc), pmtuWords(want.PMTUDisc))
	}
	add("key", keyWords(have.IKey, have.OKey), keyWords(want.IKey, want.OKey))
	return out
}

// ChangeTunnelCmd renders changing l's tunnel attributes in place: each
// change's new value, as `ip link set NAME type MODE` takes them (it keeps
// the attributes left out).
func ChangeTunnelCmd(l Link, cs []Change) string {
	var b strings.Builder
	fmt.Fprintf(&b, "ip link set %s type %s", l.Name, l.Mode)
	for _, c := range cs {
		b.WriteString(" " + words(c.Attr, c.Want))
	}
	return b.String()
}

// Was renders the old values of cs, for a comment after the command that
// changes them.
func Was(cs []Change) string {
	var w []string
	for _, c := range cs {
		w = append(w, words(c.Attr, c.Have))
	}
	return strings.Join(w, " ")
}

// words is attr with value v as ip link takes it: pmtudisc and the keys
// are their own words.
func words(attr, v string) string {
	if attr == "pmtudisc" || attr == "key" {
		return v
	}
	return attr + " " + v
}

func tosWords(tos uint8) string {
	if tos == 1 {
		return "inherit"
	}
	return fmt.Sprintf("0x%x", tos)
}

func pmtuWords(on bool) string {
	if on {
		return "pmtudisc"
	}
	return "nopmtudisc"
}

// keyWords are ip link's words for a tunnel's keys; 0 is no key.
func keyWords(ikey, okey uint32) string {
	if ikey == okey {
		if ikey == 0 {
			return "nokey"
		}
		return fmt.Sprintf("key %d", ikey)
	}
	w := []string{"noikey", "nookey"}
	if ikey != 0 {
		w[0] = fmt.Sprintf("ikey %d", ikey)
	}
	if okey != 0 {
		w[1] = fmt.Sprintf("okey %d", okey)
	}
	return strings.Join(w, " ")
}

// Why says what differs, as status reports it.
func (c Change) Why() string {
	if c.Attr == "pmtudisc" || c.Attr == "key" {
		return fmt.Sprintf("%s: have %s, want %s", c.Attr, c.Have, c.Want)
	}
	return fmt.Sprintf("%s is %s, want %s", c.Attr, c.Have, c.Want)
}
