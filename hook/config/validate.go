package config

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gre-hook/gre-hook/hook/addrpolicy"
	"github.com/gre-hook/gre-hook/hook/gre"
)

type validator struct {
	file  string
	loc   *locator
	index int
	name  string
	errs  Errors
	// bad holds the keys (badKey) whose value was of the wrong type:
	// what follows from their absence is not reported again.
	bad map[string]bool
}

// who names the tunnel, and route ri unless it is -1, for messages.
func who(index int, name string, ri int) string {
	s := fmt.Sprintf("tunnel #%d", index+1)
	if name != "" {
		s = fmt.Sprintf("tunnel %q", name)
	}
	if ri >= 0 {
		s += fmt.Sprintf(" route #%d", ri+1)
	}
	return s
}

// fail records a problem with key (in route ri, or -1 for the tunnel).
func (v *validator) fail(ri int, key, format string, args ...interface{}) {
	if v.bad[badKey(ri, key)] {
		return
	}
	p := v.loc.find(v.index, ri, key)
	v.errs = append(v.errs, &Problem{File: v.file, Line: p.Line, Col: p.Col, Msg: fmt.Sprintf("%s: %s: %s", who(v.index, v.name, ri), key, fmt.Sprintf(format, args...))})
}

// unknown records a key gre-hook does not know, in route ri or -1.
func (v *validator) unknown(ri int, key string) {
	p := v.loc.find(v.index, ri, key)
	v.errs = append(v.errs, &Problem{File: v.file, Line: p.Line, Col: p.Col, Msg: fmt.Sprintf("%s: unknown key %q", who(v.index, v.name, ri), key)})
}

// Names the kernel gives its fallback devices; creating a tunnel with one
// of them fails with EEXIST as soon as the module is loaded.
var fallbackNames = map[string]bool{
	"gre0": true, "gretap0": true, "erspan0": true, "ip6gre0": true, "ip6gretap0": true, "ip6erspan0": true, "ip6tnl0": true, "tunl0": true, "sit0": true,
}

// ifNameChars says why each character that has a meaning beyond the name
// itself is refused, though the kernel allows it: iptables, nftables, the
// kernel's name templates or gre-hook's own rule parsing would read it as
// something else.
var ifNameChars = map[rune]string{
	'+': `which iptables reads as a wildcard at the end of a name ("-o gre+" matches every interface whose name starts with "gre")`,
	'*': "which nftables reads as a wildcard in interface names",
	'!': "which iptables reads as negation",
	'%': `which the kernel replaces with a number when it creates the link ("gre%d" becomes gre0, gre1, ...)`,
	'"': "which breaks reading gre-hook's rules back from iptables -S",
}

// KernelIfName reports why the kernel itself would refuse name for an
// interface (its dev_valid_name), or "". It does not apply gre-hook's
// stricter rules, so it suits names gre-hook must handle but did not
// choose now: those in a record an older gre-hook wrote, or a foreign
// route's device.
func KernelIfName(name string) string {
	switch {
	case name == "":
		return "must not be empty"
	case len(name) > 15:
		return fmt.Sprintf("%q is %d bytes; Linux allows at most 15", name, len(name))
	case name == "." || name == "..":
		return fmt.Sprintf("%q is not a valid interface name", name)
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; c {
		case ' ':
			return fmt.Sprintf("%q contains a space, which Linux forbids in interface names", name)
		case '/', ':':
			return fmt.Sprintf("%q contains %q, which Linux forbids in interface names", name, c)
		case '\t', '\n', '\v', '\f', '\r':
			// The rest of the kernel's isspace().
			return fmt.Sprintf("%q contains %q (%U), which Linux forbids in interface names", name, c, c)
		}
	}
	return ""
}

// ValidIfName reports why name cannot be the name of a tunnel or underlay,
// or "": what the kernel refuses (KernelIfName), and what iptables,
// nftables, the kernel's name templates or gre-hook's logs would misread.
// It names the first bad character only: one message per name.
func ValidIfName(name string) string {
	if msg := KernelIfName(name); msg != "" {
		return msg
	}
	for i, r := range name {
		_, size := utf8.DecodeRuneInString(name[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			return fmt.Sprintf("%q contains the byte %#02x, which is not UTF-8; gre-hook's logs, records and status --json need UTF-8", name, name[i])
		case ifNameChars[r] != "":
			return fmt.Sprintf("%q contains %q, %s", name, r, ifNameChars[r])
		case unicode.IsControl(r):
			return fmt.Sprintf("%q contains %q (%U), a control character, which garbles logs and iptables -S output", name, r, r)
		case unicode.IsSpace(r):
			return fmt.Sprintf("%q contains %q (%U), white space, which reads as a space in logs and commands", name, r, r)
		}
	}
	return ""
}

func (v *validator) tunnel(r rawTunnel) Tunnel {
	t := Tunnel{
		Params:    gre.Params{TTL: 255, PMTUDisc: true},
		Name:      r.Name,
		Underlay:  r.Underlay,
		Multicast: true,
		MSS:       MSSPMTU,
		File:      v.file,
	}
	header := v.loc.find(v.index, -1, "")
	t.Line, t.Col = header.Line, header.Col
	// In this order, which is the order of the errors: later checks read
	// what earlier ones set (the mode, the addresses, the peers).
	for _, check := range tunnelChecks {
		check(v, r, &t)
	}
	return t
}

var tunnelChecks = []func(v *validator, r rawTunnel, t *Tunnel){
	(*validator).tunnelNames,
	(*validator).tunnelMode,
	(*validator).tunnelEndpoints,
	(*validator).tunnelParams,
	(*validator).tunnelAddresses,
	(*validator).tunnelPeers,
	(*validator).tunnelRoutes,
	(*validator).tunnelMTU,
	(*validator).tunnelMSS,
	(*validator).tunnelRest,
}

// tunnelNames checks the tunnel's and its underlay's names.
func (v *validator) tunnelNames(r rawTunnel, t *Tunnel) {
	if msg := ValidIfName(r.Name); msg != "" {
		v.fail(-1, "name", "%s", msg)
	} else if fallbackNames[r.Name] {
		v.fail(-1, "name", "%q is reserved by the kernel for its fallback tunnel device", r.Name)
	}
	if msg := ValidIfName(r.Underlay); msg != "" {
		v.fail(-1, "underlay", "%s", msg)
	} else if r.Underlay == r.Name {
		v.fail(-1, "underlay", "a tunnel cannot be its own underlay")
	}
}

// tunnelMode checks the mode; gre if none.
func (v *validator) tunnelMode(r rawTunnel, t *Tunnel) {
	switch m := Mode(r.Mode); m {
	case "":
		t.Mode = ModeGRE
	case ModeGRE, ModeGRETap, ModeIP6GRE, ModeIP6GRETap:
		t.Mode = m
	default:
		v.fail(-1, "mode", "%q is not one of gre, gretap, ip6gre, ip6gretap", r.Mode)
	}
}

// tunnelEndpoints checks remote (an address, or a name resolved later)
// and local against the mode's family and each other.
func (v *validator) tunnelEndpoints(r rawTunnel, t *Tunnel) {
	outer := "IPv4"
	if t.Mode.Outer6() {
		outer = "IPv6"
	}
	if r.Remote == "" {
		v.fail(-1, "remote", "is required")
	} else if isName(r.Remote) {
		if msg := ValidHostName(r.Remote); msg != "" {
			v.fail(-1, "remote", "%s", msg)
		} else if why := addrpolicy.Name(r.Remote); why != "" {
			v.fail(-1, "remote", "%q %s", r.Remote, why)
		} else {
			t.RemoteName = r.Remote
		}
	} else if a, ok := v.addr(-1, "remote", r.Remote); ok {
		t.Remote = a
		if a.Is6() != t.Mode.Outer6() {
			v.fail(-1, "remote", "%s is not an %s address, which mode %s needs (use mode %s)", a, outer, t.Mode, otherFamilyMode(t.Mode))
		} else if why := addrpolicy.Endpoint(a, family(a)); why != "" {
			v.fail(-1, "remote", "%s %s", a, why)
		}
	}
	if r.Local != "" && r.Local != "auto" {
		if a, ok := v.addr(-1, "local", r.Local); ok {
			t.Local = a
			if t.Remote.IsValid() && a.Is6() != t.Remote.Is6() {
				v.fail(-1, "local", "%s and remote %s are of different address families", a, t.Remote)
			} else if a.Is6() != t.Mode.Outer6() {
				v.fail(-1, "local", "%s is not an %s address, which mode %s needs", a, outer, t.Mode)
			} else if why := addrpolicy.Endpoint(a, family(a)); why != "" {
				v.fail(-1, "local", "%s %s", a, why)
			} else if a == t.Remote {
				v.fail(-1, "local", "is the same address as remote")
			}
		}
	}
}

// tunnelParams checks ttl, tos, pmtudisc, multicast and the keys.
func (v *validator) tunnelParams(r rawTunnel, t *Tunnel) {
	if r.TTL != nil {
		if *r.TTL < 0 || *r.TTL > 255 {
			v.fail(-1, "ttl", "%d is out of range 0-255 (0 inherits the inner packet's TTL)", *r.TTL)
		} else {
			t.TTL = uint8(*r.TTL)
		}
	}
	if r.TOS != nil {
		if t.Mode.Outer6() {
			v.fail(-1, "tos", "mode %s has no tos the kernel keeps (it ignores the attribute; "+
				"the outer IPv6 header's traffic class comes from the flow information, which gre-hook does not set): leave tos out", t.Mode)
		} else if *r.TOS < 0 || *r.TOS > 255 {
			v.fail(-1, "tos", "%d is out of range 0-255 (1 inherits the inner packet's TOS)", *r.TOS)
		} else {
			t.TOS = uint8(*r.TOS)
		}
	}
	if r.PMTUDisc != nil {
		t.PMTUDisc = *r.PMTUDisc
		if !t.PMTUDisc && t.TTL != 0 && !t.Mode.Outer6() {
			// The kernel rejects a fixed TTL without path MTU discovery.
			v.fail(-1, "pmtudisc", "false needs ttl = 0 (inherit); the kernel refuses a fixed ttl without pmtudisc")
		}
	}
	if r.Multicast != nil {
		t.Multicast = *r.Multicast
	}
	if r.Key != nil && (r.IKey != nil || r.OKey != nil) {
		v.fail(-1, "key", "set either key, or ikey and okey, not both")
	}
	t.IKey = v.key("key", r.Key)
	t.OKey = t.IKey
	if r.IKey != nil {
		t.IKey = v.key("ikey", r.IKey)
	}
	if r.OKey != nil {
		t.OKey = v.key("okey", r.OKey)
	}
}

// tunnelAddresses checks the tunnel's own addresses: at most one a
// family.
func (v *validator) tunnelAddresses(r rawTunnel, t *Tunnel) {
	for _, s := range r.Address {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			v.fail(-1, "address", "%q is not an address with a prefix length, e.g. 10.0.0.1/30", s)
			continue
		}
		if p.Addr().Zone() != "" {
			v.fail(-1, "address", "%q: zones are not allowed", s)
			continue
		}
		if p.Addr().Is4() && p.Bits() <= 30 && (p.Addr() == p.Masked().Addr() || isBroadcast(p)) {
			v.fail(-1, "address", "%s is the network or broadcast address of its subnet", p)
			continue
		}
		t.Addresses = append(t.Addresses, p)
	}
	if fams := familiesOf(t.Addresses); fams[4] > 1 || fams[6] > 1 {
		v.fail(-1, "address", "at most one IPv4 and one IPv6 address")
	}
}

// tunnelPeers checks the peers given, on the tunnel's prefixes, and
// derives the others from the addresses.
func (v *validator) tunnelPeers(r rawTunnel, t *Tunnel) {
	explicit := map[int]bool{}
	for _, s := range r.Peer {
		a, ok := v.addr(-1, "peer", s)
		if !ok {
			continue
		}
		fam := family(a)
		if explicit[fam] {
			v.fail(-1, "peer", "more than one IPv%d peer", fam)
			continue
		}
		explicit[fam] = true
		if !onTunnel(t.Addresses, a) {
			v.fail(-1, "peer", "%s is not in any of the tunnel's address prefixes", a)
			continue
		}
		t.Peers = append(t.Peers, a)
	}
	for _, p := range t.Addresses {
		if explicit[family(p.Addr())] {
			continue
		}
		if peer, ok := DefaultPeer(p); ok {
			t.Peers = append(t.Peers, peer)
		}
	}
}

// tunnelRoutes checks the routes and default_route, which needs a peer.
func (v *validator) tunnelRoutes(r rawTunnel, t *Tunnel) {
	for i, rr := range r.Route {
		t.Routes = append(t.Routes, v.route(i, rr, t))
	}
	t.DefaultRoute = r.DefaultRoute
	if t.DefaultRoute && len(t.Peers) == 0 {
		v.fail(-1, "default_route", "needs a tunnel peer: give an address such as 10.0.0.1/30, or a peer")
	}
}

// tunnelMTU checks mtu: IPv6 on the tunnel needs 1280.
func (v *validator) tunnelMTU(r rawTunnel, t *Tunnel) {
	if r.MTU != nil {
		min := int64(68)
		if fams := familiesOf(t.Addresses); fams[6] > 0 {
			min = 1280
		}
		if *r.MTU < min || *r.MTU > 65535 {
			v.fail(-1, "mtu", "%d is out of range %d-65535", *r.MTU, min)
		} else {
			t.MTU = int(*r.MTU)
		}
	}
}

// tunnelMSS checks mss: "pmtu", "off" or a number of bytes.
func (v *validator) tunnelMSS(r rawTunnel, t *Tunnel) {
	switch m := r.MSS.(type) {
	case nil:
	case string:
		switch MSSMode(m) {
		case MSSPMTU, MSSOff:
			t.MSS = MSSMode(m)
		default:
			v.fail(-1, "mss", "%q is not \"pmtu\", \"off\" or a number of bytes", m)
		}
	case int64:
		if m < 536 || m > 65495 {
			v.fail(-1, "mss", "%d is out of range 536-65495", m)
		} else {
			t.MSS, t.MSSValue = MSSFixed, int(m)
		}
	default:
		v.fail(-1, "mss", "must be \"pmtu\", \"off\" or a number of bytes, not %s", describe(m))
	}
}

// tunnelRest checks the commands, the keepalive and resolve_interval.
func (v *validator) tunnelRest(r rawTunnel, t *Tunnel) {
	t.UpCommand = v.command("up_command", r.UpCommand)
	t.DownCommand = v.command("down_command", r.DownCommand)
	v.keepalive(t, r)
	t.ResolveInterval = DefaultResolveInterval
	if r.ResolveInterval != nil {
		if *r.ResolveInterval < 1 || *r.ResolveInterval > 86400 {
			v.fail(-1, "resolve_interval", "%d is out of range 1-86400 seconds", *r.ResolveInterval)
		} else {
			t.ResolveInterval = int(*r.ResolveInterval)
		}
	}
}

// DefaultResolveInterval is how often, in seconds, gre-hook watch resolves
// a remote given as a name, unless resolve_interval says otherwise.
const DefaultResolveInterval = 300

// Keepalive defaults, those of Cisco IOS.
const (
	DefaultKeepaliveInterval = 10
	DefaultKeepaliveRetries  = 3
)

func (v *validator) keepalive(t *Tunnel, r rawTunnel) {
	if r.Keepalive == nil && !r.KeepaliveReflect {
		return
	}
	key := "keepalive"
	if r.Keepalive == nil {
		key = "keepalive_reflect"
	}
	if t.Mode != ModeGRE {
		// A keepalive's inner packet is IPv4 with GRE protocol type
		// 0x0800 outside: a peer files it under its gre tunnel, never
		// a gretap one, and the ip6 modes have no IPv4 outer header.
		v.fail(-1, key, "works only in mode gre (IPv4 outer header, GRE protocol 0x0800); a %s peer does not answer Cisco keepalives", t.Mode)
		return
	}
	t.KeepaliveReflect = r.KeepaliveReflect
	if r.Keepalive == nil {
		return
	}
	k := &Keepalive{Interval: DefaultKeepaliveInterval, Retries: DefaultKeepaliveRetries}
	if i := r.Keepalive.Interval; i != nil {
		if *i < 1 || *i > 3600 {
			v.fail(-1, key, "interval %d is out of range 1-3600 seconds", *i)
		}
		k.Interval = int(*i)
	}
	if n := r.Keepalive.Retries; n != nil {
		if *n < 1 || *n > 255 {
			v.fail(-1, key, "retries %d is out of range 1-255", *n)
		}
		k.Retries = int(*n)
	}
	t.Keepalive = k
}

// isName tells a remote written as a DNS name from one meant as an
// address: a name has a letter in its last label (RFC 1123 section 2.1:
// top-level names are not all-numeric), while "198.51.100.300" and
// "2001:db8::x" are addresses with a typo, reported as such.
func isName(s string) bool {
	if strings.ContainsAny(s, ":") {
		return false
	}
	last := strings.TrimSuffix(s, ".")
	if i := strings.LastIndexByte(last, '.'); i >= 0 {
		last = last[i+1:]
	}
	for _, c := range last {
		if (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') {
			return true
		}
	}
	return false
}

// ValidHostName reports why s cannot be looked up as a host name, or "".
func ValidHostName(s string) string {
	name := strings.TrimSuffix(s, ".")
	if len(name) > 253 {
		return fmt.Sprintf("%q is longer than the 253 characters a DNS name may have", s)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Sprintf("%q is not a DNS name: each label between dots must be 1 to 63 characters", s)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Sprintf("%q is not a DNS name: a label may not start or end with '-'", s)
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Sprintf("%q is neither an IP address nor a DNS name (%q is not allowed in a name)", s, c)
			}
		}
	}
	return ""
}

func otherFamilyMode(m Mode) Mode {
	switch m {
	case ModeGRE:
		return ModeIP6GRE
	case ModeGRETap:
		return ModeIP6GRETap
	case ModeIP6GRE:
		return ModeGRE
	}
	return ModeGRETap
}

func (v *validator) addr(ri int, key, s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		v.fail(ri, key, "%q is not an IP address", s)
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func (v *validator) key(name string, k *int64) uint32 {
	if k == nil {
		return 0
	}
	// netlink encodes "no key" as 0, so 0 cannot be configured.
	if *k < 1 || *k > 0xffffffff {
		v.fail(-1, name, "%d is out of range 1-4294967295", *k)
		return 0
	}
	return uint32(*k)
}

func (v *validator) route(i int, rr rawRoute, t *Tunnel) Route {
	var r Route
	p, err := netip.ParsePrefix(rr.To)
	switch {
	case rr.To == "":
		v.fail(i, "to", "is required")
	case err != nil:
		v.fail(i, "to", "%q is not a prefix, e.g. 192.168.2.0/24", rr.To)
	case p.Masked() != p:
		v.fail(i, "to", "%s has host bits set; did you mean %s?", p, p.Masked())
	case p.Bits() == 0:
		v.fail(i, "to", "%s is a default route; use default_route = true, which keeps the main table's default as the backup", p)
	default:
		r.To = p
	}
	if rr.Metric < 0 || rr.Metric > 0xffffffff {
		v.fail(i, "metric", "%d is out of range 0-4294967295", rr.Metric)
	}
	r.Metric = uint32(rr.Metric)
	// Tables 253-255 are the kernel's default, main and local tables.
	if rr.Table < 0 || rr.Table > 0xffffffff || rr.Table == 253 || rr.Table == 255 {
		v.fail(i, "table", "%d is not a usable routing table (1-4294967295, not 253 or 255)", rr.Table)
	}
	// The policy's table is refused later (checkRouteTables): another
	// file may set it.
	r.Table = uint32(rr.Table)
	if r.Table == 254 {
		// The main table: the kernel reports it as such and gre-hook
		// compares routes by table, so both spellings must be one.
		r.Table = 0
	}
	if !r.To.IsValid() {
		return r
	}
	fam := family(r.To.Addr())
	if rr.Via != "" {
		a, ok := v.addr(i, "via", rr.Via)
		if !ok {
			return r
		}
		if family(a) != fam {
			v.fail(i, "via", "%s is not of the same family as %s", a, r.To)
			return r
		}
		if !onTunnel(t.Addresses, a) {
			v.fail(i, "via", "%s is not on the tunnel: it is in none of the tunnel's address prefixes", a)
			return r
		}
		for _, own := range t.Addresses {
			if own.Addr() == a {
				v.fail(i, "via", "%s is the tunnel's own address", a)
				return r
			}
		}
		r.Via = a
		return r
	}
	peer, ok := t.Peer(fam)
	if !ok {
		v.fail(i, "via", "no IPv%d tunnel peer to route %s through: set via, or a peer, or a /30 (/127) address", fam, r.To)
		return r
	}
	r.Via = peer
	return r
}

func (v *validator) command(key string, argv []string) []string {
	if msg := ValidCommand(argv); msg != "" {
		v.fail(-1, key, "%s", msg)
		return nil
	}
	return argv
}

// ValidCommand returns why argv may not be run as an up_command or
// down_command, or "". Records are checked with it too: a record is not
// config, but what it says gre-hook runs as root all the same.
func ValidCommand(argv []string) string {
	if len(argv) > 0 && !filepath.IsAbs(argv[0]) {
		return fmt.Sprintf("%q must be an absolute path: the command runs without a shell and without PATH lookup", argv[0])
	}
	return ""
}

func family(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

func familiesOf(ps []netip.Prefix) map[int]int {
	m := map[int]int{}
	for _, p := range ps {
		m[family(p.Addr())]++
	}
	return m
}

func onTunnel(addrs []netip.Prefix, a netip.Addr) bool {
	for _, p := range addrs {
		if p.Masked().Contains(a) {
			return true
		}
	}
	return false
}

func isBroadcast(p netip.Prefix) bool {
	b, ok := Broadcast(p)
	return ok && p.Addr() == b
}

// Broadcast returns the IPv4 broadcast address that `ip addr add ...
// broadcast +` would set, or false where the subnet has none (/31, /32, IPv6).
func Broadcast(p netip.Prefix) (netip.Addr, bool) {
	return addrpolicy.SubnetBroadcast(p)
}

// DefaultPeer returns the other end of a point-to-point subnet: the other
// host of an IPv4 /30 or /31, or of an IPv6 /127.
func DefaultPeer(p netip.Prefix) (netip.Addr, bool) {
	a := p.Addr()
	switch {
	case a.Is4() && p.Bits() == 30:
		first := p.Masked().Addr().Next()
		if a == first {
			return first.Next(), true
		}
		return first, true
	case (a.Is4() && p.Bits() == 31) || (a.Is6() && p.Bits() == 127):
		first := p.Masked().Addr()
		if a == first {
			return first.Next(), true
		}
		return first, true
	}
	return netip.Addr{}, false
}
