// Package addrpolicy owns which addresses a tunnel may use as its
// endpoints: the one rule that config validation (literal remotes and
// locals), resolution of a remote given as a name (at up and in gre-hook
// watch), Retarget and Reconcile all apply, and the one rule by which
// local = "auto" picks an underlay address, at up and in the follower.
package addrpolicy

import (
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/sys/unix"
)

// FamilyName is "IPv4" or "IPv6".
func FamilyName(family int) string {
	if family == 6 {
		return "IPv6"
	}
	return "IPv4"
}

var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// Endpoint says why a cannot be a tunnel endpoint of family (4 or 6), or
// "": what holds for a local and a remote alike, with no knowledge of the
// router's own addresses. The reason reads after the address: "127.0.0.1
// is a loopback address ...".
func Endpoint(a netip.Addr, family int) string {
	a = a.Unmap()
	switch {
	case !a.IsValid():
		return "is not an address"
	case a.Zone() != "":
		return "has a zone, which a tunnel endpoint cannot have"
	case a.Is4() != (family == 4):
		return fmt.Sprintf("is not an %s address", FamilyName(family))
	case a.IsUnspecified():
		return "is the unspecified address: a tunnel with it takes GRE from, or sends it to, any address"
	case a.IsLoopback():
		return "is a loopback address, this host itself"
	case a.IsMulticast():
		return "is a multicast address"
	case a == limitedBroadcast:
		return "is the limited broadcast address"
	case a.IsLinkLocalUnicast():
		return "is a link-local address, which a tunnel cannot be bound to"
	}
	return ""
}

// Own is what the router knows of its own addresses: each with its
// prefix, and the broadcast addresses the kernel reports.
type Own struct {
	Prefixes   []netip.Prefix
	Broadcasts []netip.Addr
}

// Remote says why a cannot be the remote of a tunnel of family, or "":
// Endpoint's reasons, and an address of this router or the broadcast
// address of one of its subnets.
func (o Own) Remote(a netip.Addr, family int) string {
	if why := Endpoint(a, family); why != "" {
		return why
	}
	a = a.Unmap()
	for _, p := range o.Prefixes {
		if p.Addr().Unmap() == a {
			return "is an address of this router"
		}
	}
	for _, b := range o.Broadcasts {
		if b.Unmap() == a {
			return "is the broadcast address of a subnet of this router"
		}
	}
	for _, p := range o.Prefixes {
		if b, ok := SubnetBroadcast(p); ok && b == a {
			return fmt.Sprintf("is the broadcast address of %s, a subnet of this router", p.Masked())
		}
	}
	return ""
}

// SubnetBroadcast is the broadcast address of an IPv4 subnet, false where
// it has none (/31, /32, IPv6).
func SubnetBroadcast(p netip.Prefix) (netip.Addr, bool) {
	if !p.Addr().Unmap().Is4() || p.Bits() > 30 || p.Bits() < 0 {
		return netip.Addr{}, false
	}
	b := p.Masked().Addr().Unmap().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	n := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n |= host
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}

// Name says why a remote given as name can never resolve to an address a
// tunnel may use, or "". localhost and the names under it are loopback by
// definition (RFC 6761 section 6.3), whatever /etc/hosts or DNS say.
func Name(name string) string {
	n := strings.ToLower(strings.TrimSuffix(name, "."))
	if n == "localhost" || strings.HasSuffix(n, ".localhost") {
		return "always names this host itself, a loopback address (RFC 6761), which cannot be a tunnel's remote"
	}
	return ""
}

// Refusal is an address refused, and why.
type Refusal struct {
	Addr netip.Addr
	Why  string
}

func (r Refusal) String() string { return r.Addr.String() + " " + r.Why }

// JoinRefusals lists refusals for a message.
func JoinRefusals(rs []Refusal) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = r.String()
	}
	return strings.Join(s, "; ")
}

// Remotes splits the addresses a name resolves to, of family, into those
// a tunnel may use as its remote, in the order given, and those refused.
// Addresses of the other family are neither: the caller knows what the
// name resolves to.
func (o Own) Remotes(as []netip.Addr, family int) (ok []netip.Addr, refused []Refusal) {
	for _, a := range as {
		a = a.Unmap()
		if a.Is4() != (family == 4) {
			continue
		}
		if why := o.Remote(a, family); why != "" {
			refused = append(refused, Refusal{a, why})
			continue
		}
		ok = append(ok, a)
	}
	return ok, refused
}

// Local is an underlay address as the kernel reports it, for local =
// "auto".
type Local struct {
	Addr  netip.Addr
	Scope int
	// Flags are the kernel's IFA_F_* flags.
	Flags int
	// PreferredLft is the preferred lifetime left, in seconds
	// (0xffffffff: forever); 0 is deprecated.
	PreferredLft int
	// Known: PreferredLft was reported (the kernel always sends it;
	// a caller with no lifetime to give leaves Known false).
	Known bool
}

// Stable says why l is not an address local = "auto" may take, or "":
// only a global, permanent-enough address will do. A temporary (privacy)
// address changes by design; a tentative one may still fail duplicate
// address detection, and a failed one never works; a deprecated one is
// on its way out.
func Stable(l Local) string {
	a := l.Addr.Unmap()
	switch {
	case l.Scope != unix.RT_SCOPE_UNIVERSE:
		return "is not of global scope"
	case Endpoint(a, familyOf(a)) != "":
		return Endpoint(a, familyOf(a))
	// IFA_F_TEMPORARY is the same bit as IPv4's IFA_F_SECONDARY.
	case a.Is6() && l.Flags&unix.IFA_F_TEMPORARY != 0:
		return "is a temporary (privacy) address"
	case l.Flags&unix.IFA_F_DADFAILED != 0:
		return "failed duplicate address detection"
	case l.Flags&unix.IFA_F_TENTATIVE != 0:
		return "is tentative (duplicate address detection is not over)"
	case l.Flags&unix.IFA_F_DEPRECATED != 0 || l.Known && l.PreferredLft == 0:
		return "is deprecated (preferred lifetime 0)"
	}
	return ""
}

func familyOf(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

// PickLocal is local = "auto"'s choice among an underlay's addresses,
// given in the order the kernel lists them: prefer, the local in use,
// while it is still there and stable; else the oldest stable address of
// family. The kernel lists IPv4 addresses oldest first (the primary, then
// the secondaries in the order added) but IPv6 ones newest first, so the
// oldest is the first IPv4 and the last IPv6 address.
func PickLocal(as []Local, family int, prefer netip.Addr) (netip.Addr, bool) {
	var stable []netip.Addr
	for _, l := range as {
		a := l.Addr.Unmap()
		if familyOf(a) != family || Stable(l) != "" {
			continue
		}
		if prefer.IsValid() && a == prefer.Unmap() {
			return a, true
		}
		stable = append(stable, a)
	}
	if len(stable) == 0 {
		return netip.Addr{}, false
	}
	if family == 6 {
		return stable[len(stable)-1], true
	}
	return stable[0], true
}

// OrderLocals returns the stable addresses of as of family, the one
// PickLocal takes first, then the others in the order it would fall back
// to them.
func OrderLocals(as []Local, family int, prefer netip.Addr) []netip.Addr {
	var out []netip.Addr
	rest := append([]Local(nil), as...)
	for {
		a, ok := PickLocal(rest, family, prefer)
		if !ok {
			return out
		}
		out = append(out, a)
		prefer = netip.Addr{}
		for i := range rest {
			if rest[i].Addr.Unmap() == a {
				rest = append(rest[:i], rest[i+1:]...)
				break
			}
		}
	}
}
