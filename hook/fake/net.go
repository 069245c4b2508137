// Package fake is an in-memory kernel and iptables for tests of package
// hook: config in, kernel state out, compared as golden text.
//
// It keeps the kernel behaviours gre-hook depends on: deleting a link
// takes its addresses and routes with it, a second link with a taken name
// (or a second GRE tunnel with the same local, remote and key) fails with
// EEXIST, a route replace is keyed on destination, table and metric, a
// route via a gateway needs the device up and the gateway on a connected
// prefix, an IPv6 route asked for with metric 0 gets metric 1024, and a
// GRE link's tunnel attributes change in place (SetTunnel) but for its
// kind, and a gre link's remote that would make it point-to-point or not.
package fake

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/rtnl"
)

// Route protocols the kernel and tools use.
const (
	ProtoKernel = 2
	ProtoBoot   = 3
	ProtoStatic = 4
	ProtoDHCP   = 16
)

// ErrInjected is the error returned by an injected failure.
var ErrInjected = errors.New("injected failure")

// failer fails the Nth call of a named operation.
type failer struct {
	calls map[string]int
	fail  map[string]int // op -> call number (1-based, counted from arming) that fails
	base  map[string]int
}

func newFailer() failer {
	return failer{calls: map[string]int{}, fail: map[string]int{}, base: map[string]int{}}
}

func (f *failer) arm(op string, n int) {
	f.fail[op] = n
	f.base[op] = f.calls[op]
}

func (f *failer) hit(op string) error {
	f.calls[op]++
	if n, ok := f.fail[op]; ok && f.calls[op]-f.base[op] == n {
		delete(f.fail, op)
		return fmt.Errorf("%s: %w", op, ErrInjected)
	}
	return nil
}

// Net is a fake kernel implementing hook.Net.
type Net struct {
	mu     sync.Mutex
	links  map[string]*rtnl.Link
	addrs  []rtnl.Addr
	routes []rtnl.Route
	rules  []rtnl.Rule
	next   int
	f      failer
	// lose is LoseAnswers': the op kind and which of its ops (1-based)
	// the next Apply loses the answers from; 0 for none.
	loseOp  string
	loseNth int
}

// LoseAnswers makes the next Apply that gets an nth op of kind op (a
// method name, e.g. "ReplaceRoute") make all its ops, and lose the
// answers of that one and every one after it, as the real kernel's are
// lost when the socket fails after the write: those get an
// rtnl.Unanswered, whatever the kernel made of them.
func (n *Net) LoseAnswers(op string, nth int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.loseOp, n.loseNth = op, nth
}

// NewNet returns an empty kernel with only lo.
func NewNet() *Net {
	n := &Net{links: map[string]*rtnl.Link{}, next: 1, f: newFailer()}
	n.AddDevice("lo", 65536)
	return n
}

// FailNth makes the nth call (1-based, counted from now) of op fail with
// ErrInjected. op is a method name of hook.Net, e.g. "AddLink".
func (n *Net) FailNth(op string, nth int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.f.arm(op, nth)
}

// Disarm cancels every pending injected failure.
func (n *Net) Disarm() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.f.fail = map[string]int{}
}

// Calls returns how often op was called.
func (n *Net) Calls(op string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.f.calls[op]
}

// AddDevice adds a physical link that is up, as the test's underlay.
func (n *Net) AddDevice(name string, mtu int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.links[name] = &rtnl.Link{Index: n.next, Name: name, Kind: "", MTU: mtu, Up: true, Multicast: name != "lo"}
	n.next++
}

// AddDeviceAddr puts a global address on a device, with its connected
// route as the kernel adds it.
func (n *Net) AddDeviceAddr(dev string, p netip.Prefix) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.addAddr(dev, rtnl.Addr{Prefix: p}); err != nil {
		panic(err)
	}
}

// AddDeviceAddrFlags adds an address with the kernel's IFA_F_* flags and
// a preferred lifetime, as an IPv6 autoconfiguration would. Like the
// kernel, the newest IPv6 address is listed first.
func (n *Net) AddDeviceAddrFlags(dev string, p netip.Prefix, flags, preferredLft int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.addAddr(dev, rtnl.Addr{Prefix: p, Flags: flags, PreferredLft: preferredLft, HasLft: true}); err != nil {
		panic(err)
	}
	if p.Addr().Is6() {
		last := n.addrs[len(n.addrs)-1]
		copy(n.addrs[1:], n.addrs[:len(n.addrs)-1])
		n.addrs[0] = last
	}
}

// AddForeignRoute installs a route as some other tool would.
func (n *Net) AddForeignRoute(r plan.Route, proto int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.replaceRoute(rtnl.Route{Dst: r.Dst, Gw: r.Gw, Dev: r.Dev, Table: r.Table, Metric: r.Metric, Protocol: proto}, false); err != nil {
		panic(err)
	}
}

// AddForeignLink creates a link some other tool made.
func (n *Net) AddForeignLink(l rtnl.Link) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l.Index = n.next
	n.next++
	c := l
	n.links[l.Name] = &c
}

// Mutate changes a link in place, to simulate drift.
func (n *Net) Mutate(name string, f func(l *rtnl.Link)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if l, ok := n.links[name]; ok {
		f(l)
	}
}

// DropDeviceAddr removes an address from a device as a DHCP client or
// pppd does. Like the kernel, when it was the device's last address of its
// family, every route of that family through the device goes with it,
// whoever made it.
func (n *Net) DropDeviceAddr(dev string, p netip.Prefix) {
	n.mu.Lock()
	l, ok := n.links[dev]
	n.mu.Unlock()
	if !ok {
		return
	}
	n.DelAddr(dev, p)
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, a := range n.addrs {
		if a.Index == l.Index && a.Prefix.Addr().Is4() == p.Addr().Is4() {
			return
		}
	}
	var keep []rtnl.Route
	for _, r := range n.routes {
		if !(r.Dev == dev && r.Dst.Addr().Is4() == p.Addr().Is4()) {
			keep = append(keep, r)
		}
	}
	n.routes = keep
}

// RemoveRoute deletes routes matching dst in the main table, as an admin
// would, whatever their protocol.
func (n *Net) RemoveRoute(dst netip.Prefix) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var keep []rtnl.Route
	for _, r := range n.routes {
		if r.Dst != dst {
			keep = append(keep, r)
		}
	}
	n.routes = keep
}

// Links implements hook.Net.
func (n *Net) Links() ([]rtnl.Link, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.f.hit("Links"); err != nil {
		return nil, err
	}
	out := make([]rtnl.Link, 0, len(n.links))
	for _, l := range n.links {
		out = append(out, *l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out, nil
}

// Addrs implements hook.Net.
func (n *Net) Addrs() ([]rtnl.Addr, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.f.hit("Addrs"); err != nil {
		return nil, err
	}
	return append([]rtnl.Addr(nil), n.addrs...), nil
}

// Routes implements hook.Net: every unicast route of the family.
func (n *Net) Routes(family int) ([]rtnl.Route, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.f.hit("Routes"); err != nil {
		return nil, err
	}
	var out []rtnl.Route
	for _, r := range n.routes {
		if r.Dst.Addr().Is4() == (family == 4) {
			out = append(out, r)
		}
	}
	return out, nil
}

// PathTo implements hook.Net: the longest matching route in the main
// table, lowest metric first.
func (n *Net) PathTo(dst netip.Addr) (rtnl.Path, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.f.hit("PathTo"); err != nil {
		return rtnl.Path{}, err
	}
	var best *rtnl.Route
	for i := range n.routes {
		r := &n.routes[i]
		if r.Table != 0 || !r.Dst.Contains(dst) {
			continue
		}
		if best == nil || r.Dst.Bits() > best.Dst.Bits() || (r.Dst.Bits() == best.Dst.Bits() && r.Metric < best.Metric) {
			best = r
		}
	}
	if best == nil {
		return rtnl.Path{}, fmt.Errorf("looking up the route to %s: %w", dst, unix.ENETUNREACH)
	}
	return rtnl.Path{Gateway: best.Gw, Dev: best.Dev}, nil
}

// AddLink implements hook.Net. The link is created down.
func (n *Net) AddLink(l rtnl.Link) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.f.hit("AddLink"); err != nil {
		return err
	}
	if _, ok := n.links[l.Name]; ok {
		return unix.EEXIST
	}
	// The kernel keys GRE tunnels by kind, local, remote and key.
	for _, o := range n.links {
		if o.GRE && o.Kind == l.Kind && o.Local == l.Local && o.Remote == l.Remote && o.IKey == l.IKey {
			return unix.EEXIST
		}
	}
	if l.MTU < 68 {
		return unix.EINVAL
	}
	// ip6gre and ip6gretap have no pmtudisc: the kernel ignores
	// IFLA_GRE_PMTUDISC for them and reports none, which reads as off.
	params := l.Params
	params.PMTUDisc = l.PMTUDisc && !strings.HasPrefix(l.Kind, "ip6")
	n.links[l.Name] = &rtnl.Link{Index: n.next, Name: l.Name, Kind: l.Kind, Alias: l.Alias, MTU: l.MTU, Multicast: l.Multicast,
		GRE: true, Params: params, FwMark: l.FwMark}
	n.next++
	return nil
}

func (n *Net) link(name string) (*rtnl.Link, error) {
	l, ok := n.links[name]
	if !ok {
		return nil, fmt.Errorf("link %s: %w", name, unix.ENODEV)
	}
	return l, nil
}

// SetMTU implements hook.Net.
func (n *Net) SetMTU(name string, mtu int) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.f.hit("SetMTU"); err != nil {
		return err
	}
	l, err := n.link(name)
	if err != nil {
		return err
	}
	l.MTU = mtu
	return nil
}

// SetMulticast implements hook.Net.
func (n *Net) SetMulticast(name string, on bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.f.hit("SetMulticast"); err != nil {
		return err
	}
	l, err := n.link(name)
	if err != nil {
		return err
	}
	l.Multicast = on
	return nil
}

// SetUp implements hook.Net. Like the kernel, it adds the connected routes
// of the link's addresses, and an IPv6 link-local address to a GRE link
// with an IPv4 local address.
func (n *Net) SetUp(name string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.f.hit("SetUp"); err != nil {
		return err
	}
	l, err := n.link(name)
	if err != nil {
		return err
	}
	if l.Up {
		return nil
	}
	l.Up = true
	if l.GRE && l.Local.Is4() && l.Kind == "gre" {
		b := l.Local.As4()
		ll := netip.AddrFrom16([16]byte{0xfe, 0x80, 12: b[0], 13: b[1], 14: b[2], 15: b[3]})
		p := netip.PrefixFrom(ll, 64)
		found := false
		for _, a := range n.addrs {
			found = found || (a.Index == l.Index && a.Prefix == p)
		}
		if !found {
			n.addrs = append(n.addrs, rtnl.Addr{Index: l.Index, Prefix: p})
		}
	}
	for _, a := range n.addrs {
		if a.Index == l.Index {
			n.connect(l, a.Prefix)
		}
	}
	return nil
}

// connect adds the connected route of p on l.
func (n *Net) connect(l *rtnl.Link, p netip.Prefix) {
	if !l.Up || p.Bits() == p.Addr().BitLen() {
		return
	}
	dst := p.Masked()
	metric := uint32(0)
	if dst.Addr().Is6() {
		metric = 256
	}
	for _, r := range n.routes {
		if r.Dst == dst && r.Dev == l.Name && r.Table == 0 && r.Metric == metric {
			return
		}
	}
	n.routes = append(n.routes, rtnl.Route{Dst: dst, Dev: l.Name, Metric: metric, Index: l.Index, Protocol: ProtoKernel, Type: unix.RTN_UNICAST})
}

// DelLink implements hook.Net; a missing link is not an error, as in
// rtnl.Handle. The link's addresses and routes go with it.
func (n *Net) DelLink(name string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.f.hit("DelLink"); err != nil {
		return err
	}
	l, ok := n.links[name]
	if !ok {
		return nil
	}
	delete(n.links, name)
	var as []rtnl.Addr
	for _, a := range n.addrs {
		if a.Index != l.Index {
			as = append(as, a)
		}
	}
	n.addrs = as
	var rs []rtnl.Route
	for _, r := range n.routes {
		if r.Dev != name {
			rs = append(rs, r)
		}
	}
	n.routes = rs
	return nil
}

// DelLinks implements hook.Net. Each link is a DelLink, so a fault
// injected into DelLink hits it too.
func (n *Net) DelLinks(names []string) []error {
	errs := make([]error, len(names))
	for i, name := range names {
		errs[i] = n.DelLink(name)
	}
	return errs
}

// AddAddr implements hook.Net; an existing address is not an error, as in
// rtnl.Handle.
func (n *Net) AddAddr(dev string, a rtnl.Addr) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.f.hit("AddAddr"); err != nil {
		return err
	}
	return n.addAddr(dev, a)
}

func (n *Net) addAddr(dev string, a rtnl.Addr) error {
	l, err := n.link(dev)
	if err != nil {
		return err
	}
	for _, have := range n.addrs {
		if have.Index == l.Index && have.Prefix == a.Prefix {
			return nil
		}
	}
	n.addrs = append(n.addrs, rtnl.Addr{Index: l.Index, Prefix: a.Prefix, Broadcast: a.Broadcast, Global: !a.Prefix.Addr().IsLinkLocalUnicast(),
		Flags: a.Flags, PreferredLft: a.PreferredLft, HasLft: a.HasLft})
	n.connect(l, a.Prefix)
	return nil
}

// DelAddr implements hook.Net; a missing address is not an error. The
// connected route goes with the address.
func (n *Net) DelAddr(dev string, p netip.Prefix) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.f.hit("DelAddr"); err != nil {
		return err
	}
	l, ok := n.links[dev]
	if !ok {
		return nil
	}
	var as []rtnl.Addr
	for _, a := range n.addrs {
		if !(a.Index == l.Index && a.Prefix == p) {
			as = append(as, a)
		}
	}
	n.addrs = as
	var rs []rtnl.Route
	for _, r := range n.routes {
		if !(r.Protocol == ProtoKernel && r.Dev == dev && r.Dst == p.Masked()) {
			rs = append(rs, r)
		}
	}
	n.routes = rs
	return nil
}

// kernelMetric is the metric the kernel stores: IPv6 turns 0 into 1024.
func kernelMetric(r rtnl.Route) uint32 {
	if r.Metric == 0 && r.Dst.Addr().Is6() {
		return 1024
	}
	return r.Metric
}

// ReplaceRoute implements hook.Net.
func (n *Net) ReplaceRoute(r rtnl.Route) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.f.hit("ReplaceRoute"); err != nil {
		return err
	}
	return n.replaceRoute(r, true)
}

func (n *Net) replaceRoute(r rtnl.Route, check bool) error {
	if !r.Dst.IsValid() {
		return unix.EINVAL
	}
	idx := 0
	if r.Dev != "" {
		l, err := n.link(r.Dev)
		if err != nil {
			return err
		}
		idx = l.Index
		if check && !l.Up {
			return unix.ENETDOWN
		}
		if check && r.Gw.IsValid() && !r.Gw.IsLinkLocalUnicast() && !n.onLink(r.Dev, r.Gw) {
			return unix.ENETUNREACH
		}
	}
	if r.Dst.Masked() != r.Dst {
		return unix.EINVAL
	}
	m := kernelMetric(r)
	nr := rtnl.Route{Dst: r.Dst, Gw: r.Gw, Dev: r.Dev, Table: r.Table, Metric: m, Index: idx, Protocol: r.Protocol, Type: unix.RTN_UNICAST}
	for i, have := range n.routes {
		if have.Dst == r.Dst && have.Table == r.Table && have.Metric == m {
			n.routes[i] = nr
			return nil
		}
	}
	n.routes = append(n.routes, nr)
	return nil
}

// onLink reports whether gw is in a connected prefix of dev.
func (n *Net) onLink(dev string, gw netip.Addr) bool {
	for _, r := range n.routes {
		if r.Dev == dev && r.Protocol == ProtoKernel && !r.Gw.IsValid() && r.Dst.Contains(gw) {
			return true
		}
	}
	return false
}

// DelRoute implements hook.Net. Like the kernel it matches the protocol
// and, where given, the gateway and device; a missing route is not an
// error, as in rtnl.Handle.
func (n *Net) DelRoute(r rtnl.Route) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.f.hit("DelRoute"); err != nil {
		return err
	}
	m := kernelMetric(r)
	for i, have := range n.routes {
		if have.Dst != r.Dst || have.Table != r.Table || have.Metric != m {
			continue
		}
		if r.Protocol != 0 && have.Protocol != r.Protocol {
			continue
		}
		if r.Gw.IsValid() && have.Gw != r.Gw {
			continue
		}
		if r.Dev != "" && have.Dev != r.Dev {
			continue
		}
		n.routes = append(n.routes[:i:i], n.routes[i+1:]...)
		return nil
	}
	return nil
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// Dump prints the kernel state, one object a line, sorted. Link indexes
// are left out: a link deleted and recreated is the same state.
func (n *Net) Dump() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var lines []string
	names := map[int]string{}
	for _, l := range n.links {
		names[l.Index] = l.Name
		s := fmt.Sprintf("link %s", l.Name)
		if l.GRE {
			s += fmt.Sprintf(" %s local %s remote %s ttl %d tos %d pmtudisc %s ikey %d okey %d", l.Kind, l.Local, l.Remote, l.TTL, l.TOS, onOff(l.PMTUDisc), l.IKey, l.OKey)
			if l.FwMark != 0 {
				s += fmt.Sprintf(" fwmark %#x", l.FwMark)
			}
		} else if l.Kind != "" {
			s += " " + l.Kind
		}
		s += fmt.Sprintf(" mtu %d multicast %s", l.MTU, onOff(l.Multicast))
		if l.Up {
			s += " up"
		} else {
			s += " down"
		}
		if l.Alias != "" {
			s += fmt.Sprintf(" alias %s", l.Alias)
		}
		lines = append(lines, s)
	}
	for _, a := range n.addrs {
		s := fmt.Sprintf("addr %s %s", names[a.Index], a.Prefix)
		if a.Broadcast.IsValid() {
			s += " brd " + a.Broadcast.String()
		}
		if !a.Global {
			s += " scope link"
		}
		lines = append(lines, s)
	}
	for _, r := range n.routes {
		s := "route " + r.Dst.String()
		if r.Gw.IsValid() {
			s += " via " + r.Gw.String()
		}
		if r.Dev != "" {
			s += " dev " + r.Dev
		}
		if r.Table != 0 {
			s += fmt.Sprintf(" table %d", r.Table)
		}
		if r.Metric != 0 {
			s += fmt.Sprintf(" metric %d", r.Metric)
		}
		s += fmt.Sprintf(" proto %d", r.Protocol)
		lines = append(lines, s)
	}
	for _, r := range n.rules {
		lines = append(lines, "rule "+describeRule(r))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

// SetEndpoints implements hook.EndpointSetter: it changes a GRE link's
// local and remote in place, as `ip link set NAME type gre local L remote
// R` does. The link keeps its index, addresses and routes; the kernel
// refuses with EEXIST a change that would make it another tunnel's twin.
func (n *Net) SetEndpoints(name string, local, remote netip.Addr) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.f.hit("SetEndpoints"); err != nil {
		return err
	}
	l, err := n.link(name)
	if err != nil {
		return err
	}
	if !l.GRE {
		return unix.EOPNOTSUPP
	}
	c := *l
	c.Local, c.Remote = local, remote
	return n.change(l, c)
}

// SetTunnel implements hook.Net: it changes a GRE link's tunnel
// attributes in place, as the kernel's changelink does. The link keeps its
// index, MTU, fwmark, addresses and routes. Like the kernel, it refuses
// another kind (EOPNOTSUPP), a gre link's remote that would make it
// point-to-point or not (EINVAL, rtnl.RemoteChangeable), and attributes
// that would make it another tunnel's twin (EEXIST).
func (n *Net) SetTunnel(t rtnl.Link) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.f.hit("SetTunnel"); err != nil {
		return err
	}
	l, err := n.link(t.Name)
	if err != nil {
		return err
	}
	if !l.GRE || l.Kind != t.Kind {
		return unix.EOPNOTSUPP
	}
	c := *l
	c.Local, c.Remote, c.TTL, c.IKey, c.OKey = t.Local, t.Remote, t.TTL, t.IKey, t.OKey
	if !strings.HasPrefix(l.Kind, "ip6") {
		// The ip6 kinds take neither: see AddLink.
		c.TOS, c.PMTUDisc = t.TOS, t.PMTUDisc
	}
	return n.change(l, c)
}

// change gives GRE link l the tunnel attributes of c, as the kernel's
// changelink does, or says why the kernel would refuse.
func (n *Net) change(l *rtnl.Link, c rtnl.Link) error {
	if !rtnl.RemoteChangeable(l.Kind, l.Remote, c.Remote) {
		return unix.EINVAL
	}
	for _, o := range n.links {
		if o != l && o.GRE && o.Kind == l.Kind && o.Local == c.Local && o.Remote == c.Remote && o.IKey == c.IKey {
			return unix.EEXIST
		}
	}
	*l = c
	return nil
}

// Apply implements hook.Net as the kernel handles a pipeline: each op in
// turn, by the method of its name (so FailNth of "AddAddr" fails one in the
// middle), one that fails not stopping those after it. Calls("Apply")
// counts the pipelines.
func (n *Net) Apply(ops []rtnl.Op) []error {
	n.mu.Lock()
	n.f.calls["Apply"]++
	lost := -1
	if n.loseNth > 0 {
		seen := 0
		for i, op := range ops {
			if opName(op.Kind) == n.loseOp {
				if seen++; seen == n.loseNth {
					lost = i
					n.loseNth = 0
					break
				}
			}
		}
	}
	n.mu.Unlock()
	errs := Each(n, ops)
	for i := lost; i >= 0 && i < len(errs); i++ {
		errs[i] = &rtnl.Unanswered{Err: ErrAnswerLost}
	}
	return errs
}

// ErrAnswerLost is the socket error of a LoseAnswers pipeline.
var ErrAnswerLost = errors.New("reading the kernel's answers: the socket failed (injected)")

// opName is the Singles method that makes ops of kind k.
func opName(k rtnl.OpKind) string {
	switch k {
	case rtnl.OpAddLink:
		return "AddLink"
	case rtnl.OpAddAddr:
		return "AddAddr"
	case rtnl.OpSetUp:
		return "SetUp"
	case rtnl.OpReplaceRoute:
		return "ReplaceRoute"
	}
	return ""
}

// Singles are the calls a pipeline's ops stand for.
type Singles interface {
	AddLink(l rtnl.Link) error
	AddAddr(dev string, a rtnl.Addr) error
	SetUp(name string) error
	ReplaceRoute(r rtnl.Route) error
}

// Each makes ops through n's single calls, in turn, as the kernel handles
// the requests of a pipeline, and returns the error of each. A wrapper of
// Net that watches every change implements Apply with it.
func Each(n Singles, ops []rtnl.Op) []error {
	errs := make([]error, len(ops))
	for i, op := range ops {
		switch op.Kind {
		case rtnl.OpAddLink:
			errs[i] = n.AddLink(op.Link)
		case rtnl.OpAddAddr:
			errs[i] = n.AddAddr(op.Dev, op.Addr)
		case rtnl.OpSetUp:
			errs[i] = n.SetUp(op.Dev)
		case rtnl.OpReplaceRoute:
			errs[i] = n.ReplaceRoute(op.Route)
		default:
			errs[i] = fmt.Errorf("fake: Apply cannot make an op of kind %d", op.Kind)
		}
	}
	return errs
}
