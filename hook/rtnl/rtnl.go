// Package rtnl is gre-hook's access to the kernel's links, addresses and
// routes, over rtnetlink through github.com/vishvananda/netlink. It is an
// adapter and nothing more: its types say what the kernel holds, in the
// kernel's terms, and it knows nothing of gre-hook's config or plan.
package rtnl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/gre-hook/gre-hook/hook/gre"
)

// Link is what gre-hook reads back about a link, and what AddLink
// creates.
type Link struct {
	Index int
	Name  string
	// Kind is the kernel's link kind: "gre", "gretap", "ip6gre",
	// "ip6gretap" for tunnels.
	Kind      string
	Alias     string
	MTU       int
	Up        bool
	Multicast bool
	// Tunnel attributes, set for GRE kinds only.
	GRE bool
	gre.Params
	// FwMark is the mark the tunnel puts on its encapsulated packets
	// (IFLA_GRE_FWMARK, Linux 4.12 and later); 0 for none.
	FwMark uint32
}

// Addr is an address on a link.
type Addr struct {
	Index  int
	Prefix netip.Prefix
	// Broadcast is invalid when the kernel reports none.
	Broadcast netip.Addr
	Global    bool
	// Flags are the kernel's IFA_F_* flags; PreferredLft is the
	// preferred lifetime left in seconds, and HasLft says the kernel
	// reported lifetimes (a valid lifetime that is not 0).
	Flags        int
	PreferredLft int
	HasLft       bool
}

// Route is a unicast route, as read back from the kernel or to be
// installed.
type Route struct {
	Dst netip.Prefix
	// Gw is invalid for a route without a gateway.
	Gw  netip.Addr
	Dev string
	// Table is the kernel's 32-bit table number, except that the main
	// table (254, which the kernel may also report as 0) is 0.
	Table  uint32
	Metric uint32
	// Index is Dev's ifindex, as read back.
	Index int
	// Protocol is the route's origin (RTPROT_*); on a delete, 0 matches
	// any.
	Protocol int
	Type     int
}

// IsDefault reports whether r is a default route.
func (r Route) IsDefault() bool { return r.Dst.Bits() == 0 }

// Path is how an address is routed now: the gateway (invalid if none)
// and the device.
type Path struct {
	Gateway netip.Addr
	Dev     string
}

// Handle talks to the kernel of the current network namespace.
type Handle struct {
	h *netlink.Handle
	// route is the socket for the dumps and link changes gre-hook builds
	// itself and sends through netlink's Execute; c the blocking one for
	// the requests of bringing tunnels up, one or several to a write.
	route map[int]*nl.SocketHandle
	c     *conn
	names map[int]string
	// index caches name -> ifindex from dumps and creations, so that each
	// change is one netlink request rather than a lookup and a request:
	// under a hundred tunnels, round trips are the cost.
	index map[string]int
}

// Open returns a Handle with one netlink socket reused for every call.
func Open() (*Handle, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("opening rtnetlink: %w", err)
	}
	sock, err := nl.GetNetlinkSocketAt(netns.None(), netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("opening rtnetlink: %w", err)
	}
	route := map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: sock}}
	return &Handle{h: h, route: route, c: &conn{fd: -1}, names: map[int]string{}, index: map[string]int{}}, nil
}

// reopen replaces the sockets that dumps go through with new ones.
func (h *Handle) reopen() error {
	nh, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	sock, err := nl.GetNetlinkSocketAt(netns.None(), netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		nh.Close()
		return err
	}
	h.h.Close()
	for _, s := range h.route {
		s.Close()
	}
	h.h, h.route = nh, map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: sock}}
	return nil
}

// Close releases the sockets.
func (h *Handle) Close() {
	h.h.Close()
	for _, s := range h.route {
		s.Close()
	}
	h.c.close()
}

// A dump that a concurrent change interrupts is flagged by the kernel
// (NLM_F_DUMP_INTR). netlink v1.3.0, the last release that builds with Go
// 1.19, reports that as EINTR and drops the partial result, and it leaves
// the rest of the dump running on its socket, where the kernel refuses any
// other dump with EBUSY until that one is read to its end. So the dump is
// done again on sockets opened afresh.
func retry[T any](h *Handle, what string, f func() (T, error)) (T, error) {
	var v T
	var err error
	for i := 0; i < 10; i++ {
		v, err = f()
		if !errors.Is(err, unix.EINTR) && !errors.Is(err, unix.EBUSY) {
			break
		}
		if rerr := h.reopen(); rerr != nil {
			return v, fmt.Errorf("listing %s: %w (opening rtnetlink again: %v)", what, err, rerr)
		}
	}
	if err != nil {
		return v, fmt.Errorf("listing %s: %w", what, err)
	}
	return v, nil
}

// IsNotFound reports whether err means the object does not exist.
func IsNotFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.EADDRNOTAVAIL)
}

func fromNetlink(l netlink.Link) Link {
	a := l.Attrs()
	out := Link{
		Index: a.Index, Name: a.Name, Kind: l.Type(), Alias: a.Alias, MTU: a.MTU,
		Up: a.Flags&net.FlagUp != 0, Multicast: a.Flags&net.FlagMulticast != 0,
	}
	switch t := l.(type) {
	case *netlink.Gretun:
		out.GRE = true
		out.Kind = greKind(t.Local, t.Remote, "gre", "ip6gre")
		out.Local, out.Remote = ip(t.Local), ip(t.Remote)
		out.TTL, out.TOS, out.PMTUDisc, out.IKey, out.OKey = t.Ttl, t.Tos, t.PMtuDisc != 0, t.IKey, t.OKey
	case *netlink.Gretap:
		out.GRE = true
		out.Kind = greKind(t.Local, t.Remote, "gretap", "ip6gretap")
		out.Local, out.Remote = ip(t.Local), ip(t.Remote)
		// netlink v1.3.0's parseGretapData reads IFLA_GRE_IKEY into OKey
		// and IFLA_GRE_OKEY into IKey (its Gretun and its requests get
		// them right): swap them back.
		out.TTL, out.TOS, out.PMTUDisc, out.IKey, out.OKey = t.Ttl, t.Tos, t.PMtuDisc != 0, t.OKey, t.IKey
	}
	return out
}

func greKind(local, remote net.IP, v4, v6 string) string {
	for _, a := range []net.IP{remote, local} {
		if a != nil && !a.IsUnspecified() {
			if a.To4() != nil {
				return v4
			}
			return v6
		}
	}
	return v4
}

func ip(a net.IP) netip.Addr {
	if a == nil {
		return netip.Addr{}
	}
	if v4 := a.To4(); v4 != nil {
		a = v4
	}
	out, _ := netip.AddrFromSlice(a)
	return out
}

func ipnet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func prefix(n *net.IPNet) netip.Prefix {
	if n == nil {
		return netip.Prefix{}
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(ip(n.IP), ones)
}

// Links returns every link.
func (h *Handle) Links() ([]Link, error) {
	out, err := retry(h, "links", h.links)
	if err != nil {
		return nil, err
	}
	for _, l := range out {
		h.remember(l.Index, l.Name)
	}
	return out, nil
}

// links reads every link with one dump, each message decoded by netlink
// and, for a GRE link, searched for its IFLA_GRE_FWMARK too, which
// netlink's Link drops (greFwMark): its LinkList and a dump for the marks
// would read every link twice.
func (h *Handle) links() ([]Link, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_DUMP)
	req.Sockets = h.route
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil {
		return nil, err
	}
	out := make([]Link, 0, len(msgs))
	for _, m := range msgs {
		nlink, err := netlink.LinkDeserialize(nil, m)
		if err != nil {
			return nil, err
		}
		l := fromNetlink(nlink)
		if l.GRE && len(m) >= unix.SizeofIfInfomsg {
			l.FwMark = greFwMarkOf(m[unix.SizeofIfInfomsg:])
		}
		out = append(out, l)
	}
	return out, nil
}

// greFwMarkOf is the IFLA_GRE_FWMARK in a link's attributes, or 0. Only
// a GRE link's attribute 20 is its fwmark; another kind's data is none of
// gre-hook's business.
func greFwMarkOf(attrs []byte) uint32 {
	kind, data, err := linkInfo(attrs)
	if err != nil || !strings.Contains(kind, "gre") {
		return 0
	}
	for _, a := range data {
		if a.Attr.Type&nl.NLA_TYPE_MASK == greFwMark && len(a.Value) >= 4 {
			return nl.NativeEndian().Uint32(a.Value)
		}
	}
	return 0
}

// Addrs returns every address of every link.
func (h *Handle) Addrs() ([]Addr, error) {
	as, err := retry(h, "addresses", func() ([]netlink.Addr, error) { return h.h.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, err
	}
	out := make([]Addr, 0, len(as))
	for _, a := range as {
		out = append(out, Addr{Index: a.LinkIndex, Prefix: prefix(a.IPNet), Broadcast: ip(a.Broadcast), Global: a.Scope == int(netlink.SCOPE_UNIVERSE),
			Flags: a.Flags, PreferredLft: a.PreferedLft, HasLft: a.ValidLft != 0})
	}
	return out, nil
}

// Routes returns the unicast routes of every table but local, for family
// 4 or 6.
func (h *Handle) Routes(family int) ([]Route, error) {
	fam := netlink.FAMILY_V4
	if family == 6 {
		fam = netlink.FAMILY_V6
	}
	rs, err := retry(h, "routes", func() ([]netlink.Route, error) {
		return h.h.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, err
	}
	out := make([]Route, 0, len(rs))
	for _, r := range rs {
		if rt, ok := fromNetlinkRoute(r, family, h.name); ok {
			out = append(out, rt)
		}
	}
	return out, nil
}

// fromNetlinkRoute converts a route of a dump of family 4 or 6; ok is
// false for the routes gre-hook does not deal in (the local table, and
// every type but unicast). name gives a device's name from its index.
func fromNetlinkRoute(r netlink.Route, family int, name func(int) string) (Route, bool) {
	if r.Table == unix.RT_TABLE_LOCAL || r.Type != unix.RTN_UNICAST {
		return Route{}, false
	}
	dst := prefix(r.Dst)
	if !dst.IsValid() {
		dst = netip.PrefixFrom(zeroAddr(family), 0)
	}
	return Route{Dst: dst, Gw: ip(r.Gw), Dev: name(r.LinkIndex), Table: FromKernelTable(r.Table), Metric: uint32(r.Priority),
		Index: r.LinkIndex, Protocol: int(r.Protocol), Type: r.Type}, true
}

// FromKernelTable turns a table number read through netlink (an int,
// negative on 32-bit targets for tables from 2^31 up) into gre-hook's:
// the main table, which the kernel reports as 254 or 0, is 0.
func FromKernelTable(t int) uint32 {
	u := uint32(t)
	if u == unix.RT_TABLE_MAIN {
		return 0
	}
	return u
}

func zeroAddr(family int) netip.Addr {
	if family == 6 {
		return netip.IPv6Unspecified()
	}
	return netip.IPv4Unspecified()
}

func (h *Handle) name(index int) string {
	if n, ok := h.names[index]; ok {
		return n
	}
	l, err := h.h.LinkByIndex(index)
	if err != nil {
		return ""
	}
	h.remember(index, l.Attrs().Name)
	return l.Attrs().Name
}

func (h *Handle) remember(index int, name string) {
	h.names[index] = name
	h.index[name] = index
}

func (h *Handle) forget(name string) {
	if i, ok := h.index[name]; ok {
		delete(h.names, i)
		delete(h.index, name)
	}
}

// PathTo returns how dst is routed now.
func (h *Handle) PathTo(dst netip.Addr) (Path, error) {
	rs, err := h.h.RouteGet(net.IP(dst.AsSlice()))
	if err != nil {
		return Path{}, fmt.Errorf("looking up the route to %s: %w", dst, err)
	}
	if len(rs) == 0 {
		return Path{}, fmt.Errorf("no route to %s", dst)
	}
	return Path{Gateway: ip(rs[0].Gw), Dev: h.name(rs[0].LinkIndex)}, nil
}

func (h *Handle) byName(name string) (netlink.Link, error) {
	if i, ok := h.index[name]; ok {
		// Requests that change a link address it by index alone. Indexes
		// are not reused soon, and the run holds gre-hook's lock, so a
		// stale entry fails with ENODEV rather than hitting another link.
		return &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: i, Name: name}}, nil
	}
	l, err := h.h.LinkByName(name)
	if err != nil {
		return nil, err
	}
	h.remember(l.Attrs().Index, name)
	return l, nil
}

// AddLink creates l, a GRE link of l.Kind, down, with its MTU, multicast
// flag and fwmark, then marks it gre-hook's with its alias (the kernel
// ignores IFLA_IFALIAS in a request that creates a link) and learns its
// index, two requests in one write (Apply).
func (h *Handle) AddLink(l Link) error {
	return h.Apply([]Op{{Kind: OpAddLink, Link: l}})[0]
}

// createRequest is the RTM_NEWLINK that creates l, with the tunnel
// attributes `ip link add NAME type KIND ...` sends, and the fwmark:
// netlink's Gretun and Gretap cannot carry IFLA_GRE_FWMARK (greFwMark),
// and a tunnel of a marking policy must never be up without it, or its
// outer packets would be routed into a default_route tunnel.
func createRequest(l Link) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	if l.Multicast {
		msg.Flags, msg.Change = unix.IFF_MULTICAST, unix.IFF_MULTICAST
	}
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(l.Name)))
	if l.MTU > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(l.MTU))))
	}
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated(l.Kind))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	endpoint := func(a netip.Addr) []byte {
		if !strings.HasPrefix(l.Kind, "ip6") {
			a = a.Unmap()
		}
		return a.AsSlice()
	}
	if l.Local.IsValid() {
		data.AddRtAttr(nl.IFLA_GRE_LOCAL, endpoint(l.Local))
	}
	if l.Remote.IsValid() {
		data.AddRtAttr(nl.IFLA_GRE_REMOTE, endpoint(l.Remote))
	}
	var iflags, oflags uint16
	if l.IKey != 0 {
		data.AddRtAttr(nl.IFLA_GRE_IKEY, binary.BigEndian.AppendUint32(nil, l.IKey))
		iflags |= nl.GRE_KEY
	}
	if l.OKey != 0 {
		data.AddRtAttr(nl.IFLA_GRE_OKEY, binary.BigEndian.AppendUint32(nil, l.OKey))
		oflags |= nl.GRE_KEY
	}
	data.AddRtAttr(nl.IFLA_GRE_IFLAGS, binary.BigEndian.AppendUint16(nil, iflags))
	data.AddRtAttr(nl.IFLA_GRE_OFLAGS, binary.BigEndian.AppendUint16(nil, oflags))
	// The kernel's default for pmtudisc is on, unlike a zero attribute:
	// say what is meant every time.
	var pmtu uint8
	if l.PMTUDisc {
		pmtu = 1
	}
	data.AddRtAttr(nl.IFLA_GRE_PMTUDISC, nl.Uint8Attr(pmtu))
	data.AddRtAttr(nl.IFLA_GRE_TTL, nl.Uint8Attr(l.TTL))
	data.AddRtAttr(nl.IFLA_GRE_TOS, nl.Uint8Attr(l.TOS))
	if l.FwMark != 0 {
		data.AddRtAttr(greFwMark, nl.Uint32Attr(l.FwMark))
	}
	req.AddData(info)
	return req
}

// aliasRequest sets a link's alias, naming the link: the request can go
// out before its index is known.
func aliasRequest(name, alias string) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFALIAS, []byte(alias)))
	return req
}

// getLinkRequest asks for one link, by name.
func getLinkRequest(name string) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	return req
}

// Tap reports whether a link kind carries Ethernet frames.
func Tap(kind string) bool { return strings.HasSuffix(kind, "tap") }

// SetMTU sets a link's MTU.
func (h *Handle) SetMTU(name string, mtu int) error {
	l, err := h.byName(name)
	if err != nil {
		return err
	}
	return h.h.LinkSetMTU(l, mtu)
}

// SetMulticast sets or clears a link's multicast flag.
func (h *Handle) SetMulticast(name string, on bool) error {
	l, err := h.byName(name)
	if err != nil {
		return err
	}
	if on {
		return h.h.LinkSetMulticastOn(l)
	}
	return h.h.LinkSetMulticastOff(l)
}

// SetUp brings a link up.
func (h *Handle) SetUp(name string) error {
	l, err := h.byName(name)
	if err != nil {
		return err
	}
	return h.c.do(upRequest(l.Attrs().Index))
}

// DelLink deletes a link; a link that is already gone is not an error.
func (h *Handle) DelLink(name string) error {
	l, err := h.byName(name)
	if err != nil {
		if IsNotFound(err) {
			return nil
		}
		return err
	}
	err = h.h.LinkDel(l)
	h.forget(name)
	if err != nil && !IsNotFound(err) {
		return err
	}
	return nil
}

// DelLinks deletes links; one that is already gone is not an error. The
// result has an entry for each name, nil when that link is gone.
//
// Deleting links one at a time costs the kernel a wait for RCU readers per
// link, which under a hundred tunnels is most of a teardown. Deleting by
// device group (RTM_DELLINK with IFLA_GROUP and no index) unregisters every
// link of the group in one batch. So the links are first moved into a
// group chosen at random, the group is checked to hold nothing else, and
// then it is deleted. If any of that fails, the links are deleted one by
// one, as before.
func (h *Handle) DelLinks(names []string) []error {
	errs := make([]error, len(names))
	if len(names) > 1 {
		if err := h.DelGroup(names, randomGroup()); err == nil {
			for _, n := range names {
				h.forget(n)
			}
			return errs
		}
	}
	for i, n := range names {
		errs[i] = h.DelLink(n)
	}
	return errs
}

// randomGroup returns a device group number unlikely to be in use: nonzero,
// and well away from the small numbers people give groups.
func randomGroup() uint32 {
	var b [4]byte
	// getrandom(2) rather than crypto/rand, whose package initialisation
	// would add to every call of gre-hook, most of which do nothing. On
	// failure the group is 1<<31, still checked like any other.
	unix.Getrandom(b[:], 0)
	return binary.LittleEndian.Uint32(b[:]) | 1<<31
}

// DelGroup deletes names together: it moves them into device group g,
// checks that the group holds nothing else, and deletes the group. On an
// error some links may be left in group g; delete them one by one.
func (h *Handle) DelGroup(names []string, g uint32) error {
	if g == 0 {
		return errors.New("device group 0 is every link's default")
	}
	want := map[string]bool{}
	for _, n := range names {
		l, err := h.byName(n)
		if err == nil {
			err = h.h.LinkSetGroup(l, int(g))
		}
		if IsNotFound(err) {
			continue
		}
		if err != nil {
			return err
		}
		want[n] = true
	}
	if len(want) == 0 {
		return nil
	}
	// Deleting a group deletes whatever is in it: make sure that is only
	// the links asked for. gre-hook holds its lock, and the group number is
	// random, so nothing else can join between this check and the delete
	// short of guessing it.
	ls, err := retry(h, "links", func() ([]netlink.Link, error) { return h.h.LinkList() })
	if err != nil {
		return err
	}
	for _, l := range ls {
		if a := l.Attrs(); a.Group == g && !want[a.Name] {
			return fmt.Errorf("device group %d holds %s too", g, a.Name)
		}
	}
	req := nl.NewNetlinkRequest(unix.RTM_DELLINK, unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(g)))
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil && !IsNotFound(err) {
		return fmt.Errorf("deleting device group %d: %w", g, err)
	}
	return nil
}

// AddAddr adds a.Prefix to dev, with a.Broadcast if it is valid; an IPv4
// prefix shorter than /31 without one gets the prefix's last address, as
// `ip addr add ... broadcast +` gives it. An address dev has is no error.
func (h *Handle) AddAddr(dev string, a Addr) error {
	l, err := h.byName(dev)
	if err != nil {
		return err
	}
	err = h.c.do(addrRequest(l.Attrs().Index, a))
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}

func addrRequest(index int, a Addr) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	addr := a.Prefix.Addr().Unmap()
	family := unix.AF_INET6
	if addr.Is4() {
		family = unix.AF_INET
	}
	msg := nl.NewIfAddrmsg(family)
	msg.Index = uint32(index)
	msg.Prefixlen = uint8(a.Prefix.Bits())
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFA_LOCAL, addr.AsSlice()))
	req.AddData(nl.NewRtAttr(unix.IFA_ADDRESS, addr.AsSlice()))
	if addr.Is4() {
		b := a.Broadcast.Unmap()
		if !b.IsValid() && a.Prefix.Bits() < 31 {
			b = lastAddr(netip.PrefixFrom(addr, a.Prefix.Bits()))
		}
		if b.IsValid() {
			req.AddData(nl.NewRtAttr(unix.IFA_BROADCAST, b.AsSlice()))
		}
	}
	return req
}

// lastAddr is the last address of IPv4 prefix p.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := ^uint32(0) >> p.Bits()
	v := binary.BigEndian.Uint32(a[:]) | host
	binary.BigEndian.PutUint32(a[:], v)
	return netip.AddrFrom4(a)
}

// DelAddr removes an address from dev.
func (h *Handle) DelAddr(dev string, p netip.Prefix) error {
	l, err := h.byName(dev)
	if err != nil {
		if IsNotFound(err) {
			return nil
		}
		return err
	}
	err = h.h.AddrDel(l, &netlink.Addr{IPNet: ipnet(p)})
	if err != nil && IsNotFound(err) {
		return nil
	}
	return err
}

// routeRequest builds an RTM_NEWROUTE or RTM_DELROUTE request for r.
// gre-hook builds its route requests itself rather than through
// netlink.Route, which keeps the table and metric in an int: on 32-bit
// targets (armhf, i386) values from 2^31 up turn negative there, and
// netlink then drops them, so the route would land in main with metric 0.
func (h *Handle) routeRequest(cmd int, flags int, r Route) (*nl.NetlinkRequest, error) {
	req := nl.NewNetlinkRequest(cmd, flags|unix.NLM_F_ACK)
	msg := nl.NewRtMsg()
	if cmd == unix.RTM_DELROUTE {
		msg = nl.NewRtDelMsg()
	}
	msg.Family = unix.AF_INET
	if r.Dst.Addr().Is6() {
		msg.Family = unix.AF_INET6
	}
	msg.Dst_len = uint8(r.Dst.Bits())
	msg.Protocol = uint8(r.Protocol)
	msg.Type = unix.RTN_UNICAST
	attrs := []*nl.RtAttr{nl.NewRtAttr(unix.RTA_DST, r.Dst.Addr().AsSlice())}
	table := KernelTable(r.Table)
	if table < 256 {
		msg.Table = uint8(table)
	} else {
		msg.Table = unix.RT_TABLE_UNSPEC
		attrs = append(attrs, nl.NewRtAttr(unix.RTA_TABLE, nl.Uint32Attr(table)))
	}
	if r.Gw.IsValid() {
		attrs = append(attrs, nl.NewRtAttr(unix.RTA_GATEWAY, r.Gw.AsSlice()))
	}
	if r.Dev != "" {
		l, err := h.byName(r.Dev)
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, nl.NewRtAttr(unix.RTA_OIF, nl.Uint32Attr(uint32(l.Attrs().Index))))
	}
	if r.Metric > 0 {
		attrs = append(attrs, nl.NewRtAttr(unix.RTA_PRIORITY, nl.Uint32Attr(r.Metric)))
	}
	req.AddData(msg)
	for _, a := range attrs {
		req.AddData(a)
	}
	return req, nil
}

// KernelTable is the table number the kernel uses for a route's Table:
// gre-hook's 0 is the main table.
func KernelTable(t uint32) uint32 {
	if t == 0 {
		return unix.RT_TABLE_MAIN
	}
	return t
}

// ReplaceRoute installs r with its protocol, replacing any route with the
// same destination, table and metric.
func (h *Handle) ReplaceRoute(r Route) error {
	req, err := h.routeRequest(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, r)
	if err != nil {
		return err
	}
	return h.c.do(req)
}

// DelRoute deletes r; a route that is already gone is not an error. The
// kernel matches the protocol (unless it is 0), so a route someone else
// put at the same destination stays.
func (h *Handle) DelRoute(r Route) error {
	req, err := h.routeRequest(unix.RTM_DELROUTE, 0, r)
	if err != nil {
		if IsNotFound(err) {
			return nil
		}
		return err
	}
	if err := h.c.do(req); err != nil && !IsNotFound(err) {
		return err
	}
	return nil
}

// Module returns the kernel module that provides links of kind.
func Module(kind string) string {
	if strings.HasPrefix(kind, "ip6") {
		return "ip6_gre"
	}
	return "ip_gre"
}

// LoadModule loads a kernel module with modprobe unless it is loaded.
func LoadModule(name string) error {
	if _, err := os.Stat("/sys/module/" + name); err == nil {
		return nil
	}
	out, err := exec.Command("modprobe", name).CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Errorf("this kernel has no GRE support: modprobe %s failed: %s", name, msg)
	}
	return nil
}

// SetEndpoints changes a GRE link's local and remote in place, as
// `ip link set NAME type gre local L remote R` does: one RTM_NEWLINK
// without NLM_F_CREATE, so the link keeps its index, and with it its
// addresses, routes and the MSS rule that names it.
func (h *Handle) SetEndpoints(name string, local, remote netip.Addr) error {
	return h.changeGRE(name, func(_ string, d map[uint16][]byte) error {
		d[nl.IFLA_GRE_LOCAL], d[nl.IFLA_GRE_REMOTE] = local.AsSlice(), remote.AsSlice()
		return nil
	})
}

// SetTunnel changes the tunnel attributes of GRE link l.Name in place to
// l's: local, remote, ttl, tos, pmtudisc and keys (0 for none), as `ip
// link set NAME type KIND ...` does. The link keeps its index, MTU, fwmark
// and every other attribute. The ip6 kinds have no tos or pmtudisc
// attribute (the traffic class is part of their flowinfo): l's are left
// out for them.
func (h *Handle) SetTunnel(l Link) error {
	return h.changeGRE(l.Name, func(kind string, d map[uint16][]byte) error {
		if kind != l.Kind {
			return fmt.Errorf("link %s is a %s, not a %s: the kernel cannot change a link's kind: %w", l.Name, kind, l.Kind, unix.EOPNOTSUPP)
		}
		d[nl.IFLA_GRE_LOCAL], d[nl.IFLA_GRE_REMOTE] = l.Local.AsSlice(), l.Remote.AsSlice()
		d[nl.IFLA_GRE_TTL] = nl.Uint8Attr(l.TTL)
		if !strings.HasPrefix(kind, "ip6") {
			var pmtu uint8
			if l.PMTUDisc {
				pmtu = 1
			}
			d[nl.IFLA_GRE_TOS], d[nl.IFLA_GRE_PMTUDISC] = nl.Uint8Attr(l.TOS), nl.Uint8Attr(pmtu)
		}
		// The key flag in IFLA_GRE_[IO]FLAGS says the key is used; the
		// other flags (checksums, sequence numbers) stay as they are.
		for _, k := range []struct {
			key, flags uint16
			v          uint32
		}{{nl.IFLA_GRE_IKEY, nl.IFLA_GRE_IFLAGS, l.IKey}, {nl.IFLA_GRE_OKEY, nl.IFLA_GRE_OFLAGS, l.OKey}} {
			var flags uint16
			if f := d[k.flags]; len(f) >= 2 {
				flags = binary.BigEndian.Uint16(f)
			}
			flags &^= nl.GRE_KEY
			if k.v != 0 {
				flags |= nl.GRE_KEY
			}
			d[k.flags] = binary.BigEndian.AppendUint16(nil, flags)
			d[k.key] = binary.BigEndian.AppendUint32(nil, k.v)
		}
		return nil
	})
}

// RemoteChangeable reports whether the kernel changes, in place, the
// remote of a live GRE link of kind from one address to another. A gre
// link (not the tap or ip6 kinds) is point-to-point with a unicast
// remote, broadcast with a multicast one and neither with none, and
// ip_tunnel_changelink refuses (EINVAL) a remote that would make it
// another of these.
func RemoteChangeable(kind string, from, to netip.Addr) bool {
	return kind != "gre" || peerClass(from) == peerClass(to)
}

func peerClass(a netip.Addr) int {
	switch {
	case !a.IsValid() || a.IsUnspecified():
		return 0
	case a.IsMulticast():
		return 1
	}
	return 2
}

// greFwMark is IFLA_GRE_FWMARK, which vishvananda/netlink v1.3.0 neither
// names nor sets: its Gretun and Gretap have no field for it, so gre-hook
// sends and reads the attribute itself.
const greFwMark = 20

// SetFwMark sets the mark a GRE link puts on its encapsulated packets, in
// place, as `ip link set NAME type gre fwmark M` does.
func (h *Handle) SetFwMark(name string, mark uint32) error {
	return h.changeGRE(name, func(_ string, d map[uint16][]byte) error {
		d[greFwMark] = nl.Uint32Attr(mark)
		return nil
	})
}

// changeGRE changes a GRE link in place: one RTM_NEWLINK without
// NLM_F_CREATE on its index, whose IFLA_INFO_DATA is every attribute the
// kernel reports now (by type), as edit leaves them.
//
// The kernel's changelink resets every tunnel parameter the request leaves
// out (ipgre_netlink_parms and ip6gre_netlink_parms start from zero), so,
// as iproute2 does, the request carries back what the kernel reports. It
// has no IFLA_IFNAME: naming a link that is up, even by its own name,
// fails with EBUSY after the tunnel has already changed. And it carries
// the link's MTU back: without IFLA_MTU, a changelink recomputes the MTU,
// from the route to the remote (ip6gre_tnl_change; ip_tunnel_update when
// the fwmark changes) or by the change in header length (ipgre_link_update,
// when a key comes or goes), which would undo the one gre-hook set.
func (h *Handle) changeGRE(name string, edit func(kind string, data map[uint16][]byte) error) error {
	l, err := h.byName(name)
	if err != nil {
		return fmt.Errorf("looking up link %s: %w", name, err)
	}
	index := l.Attrs().Index
	get := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_ACK)
	get.Sockets = h.route
	gm := nl.NewIfInfomsg(unix.AF_UNSPEC)
	gm.Index = int32(index)
	get.AddData(gm)
	msgs, err := get.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil {
		return fmt.Errorf("reading link %s: %w", name, err)
	}
	if len(msgs) != 1 || len(msgs[0]) < unix.SizeofIfInfomsg {
		return fmt.Errorf("reading link %s: unexpected answer", name)
	}
	kind, data, err := linkInfo(msgs[0][unix.SizeofIfInfomsg:])
	if err != nil {
		return fmt.Errorf("reading link %s: %w", name, err)
	}
	switch kind {
	case "gre", "gretap", "ip6gre", "ip6gretap":
	default:
		return fmt.Errorf("link %s is a %q, not a GRE tunnel", name, kind)
	}
	d := make(map[uint16][]byte, len(data))
	for _, a := range data {
		d[a.Attr.Type&nl.NLA_TYPE_MASK] = a.Value
	}
	if err := edit(kind, d); err != nil {
		return err
	}

	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	req.Sockets = h.route
	m := nl.NewIfInfomsg(unix.AF_UNSPEC)
	m.Index = int32(index)
	req.AddData(m)
	attrs, err := nl.ParseRouteAttr(msgs[0][unix.SizeofIfInfomsg:])
	if err != nil {
		return fmt.Errorf("reading link %s: %w", name, err)
	}
	for _, a := range attrs {
		if a.Attr.Type&nl.NLA_TYPE_MASK == unix.IFLA_MTU {
			req.AddData(nl.NewRtAttr(unix.IFLA_MTU, a.Value))
		}
	}
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated(kind))
	di := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	types := make([]int, 0, len(d))
	for t := range d {
		types = append(types, int(t))
	}
	sort.Ints(types)
	for _, t := range types {
		di.AddRtAttr(t, d[uint16(t)])
	}
	req.AddData(info)
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
		return err
	}
	return nil
}

// linkInfo returns the kind and the IFLA_INFO_DATA attributes of a link
// message's attributes.
func linkInfo(b []byte) (string, []syscall.NetlinkRouteAttr, error) {
	attrs, err := nl.ParseRouteAttr(b)
	if err != nil {
		return "", nil, err
	}
	var kind string
	var data []syscall.NetlinkRouteAttr
	for _, a := range attrs {
		if a.Attr.Type&nl.NLA_TYPE_MASK != unix.IFLA_LINKINFO {
			continue
		}
		infos, err := nl.ParseRouteAttr(a.Value)
		if err != nil {
			return "", nil, err
		}
		for _, i := range infos {
			switch i.Attr.Type & nl.NLA_TYPE_MASK {
			case nl.IFLA_INFO_KIND:
				kind = strings.TrimRight(string(i.Value), "\x00")
			case nl.IFLA_INFO_DATA:
				if data, err = nl.ParseRouteAttr(i.Value); err != nil {
					return "", nil, err
				}
			}
		}
	}
	return kind, data, nil
}
