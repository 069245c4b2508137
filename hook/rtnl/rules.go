package rtnl

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Rule is a policy routing rule of the two kinds gre-hook makes, as read
// back or to be added: `lookup TABLE` with an optional `not fwmark MARK`
// and an optional `suppress_prefixlength N`.
type Rule struct {
	Family   int // 4 or 6
	Priority uint32
	// Table is gre-hook's table number: the main table is 0, as for
	// routes (FromKernelTable).
	Table uint32
	// Mark, when nonzero, matches packets with that fwmark (exact, mask
	// 0xffffffff); Invert turns it into `not fwmark`.
	Mark   uint32
	Invert bool
	// SuppressPrefixLen is -1 for none.
	SuppressPrefixLen int
	Protocol          int
	// Other: the rule has a selector or action gre-hook does not model
	// (from, to, iif, goto, ...); it never equals one of gre-hook's.
	Other bool
}

func family(f int) int {
	if f == 6 {
		return unix.AF_INET6
	}
	return unix.AF_INET
}

// Rules returns the rules of family 4 or 6.
func (h *Handle) Rules(fam int) ([]Rule, error) {
	rs, err := retry(h, "rules", func() ([]netlink.Rule, error) { return h.h.RuleList(family(fam)) })
	if err != nil {
		return nil, err
	}
	out := make([]Rule, 0, len(rs))
	for _, r := range rs {
		out = append(out, fromNetlinkRule(r, fam))
	}
	return out, nil
}

func fromNetlinkRule(r netlink.Rule, fam int) Rule {
	out := Rule{Family: fam, Priority: uint32(r.Priority), Table: FromKernelTable(r.Table), Mark: r.Mark, Invert: r.Invert,
		SuppressPrefixLen: r.SuppressPrefixlen, Protocol: int(r.Protocol)}
	if r.Mask != nil && *r.Mask != 0xffffffff {
		out.Other = true
	}
	if r.Src != nil || r.Dst != nil || r.IifName != "" || r.OifName != "" || r.Goto >= 0 || r.Tos != 0 ||
		r.IPProto != 0 || r.Dport != nil || r.Sport != nil || r.UIDRange != nil || r.SuppressIfgroup >= 0 ||
		(r.Type != 0 && r.Type != unix.FR_ACT_TO_TBL) {
		out.Other = true
	}
	return out
}

func toNetlinkRule(r Rule) *netlink.Rule {
	nr := netlink.NewRule()
	nr.Family = family(r.Family)
	nr.Priority = int(r.Priority)
	nr.Table = int(KernelTable(r.Table))
	nr.Invert = r.Invert
	if r.Mark != 0 {
		nr.Mark = r.Mark
		mask := uint32(0xffffffff)
		nr.Mask = &mask
	}
	nr.SuppressPrefixlen = r.SuppressPrefixLen
	nr.Protocol = uint8(r.Protocol)
	return nr
}

// AddRule adds r; the kernel allows duplicates, so the caller checks first.
func (h *Handle) AddRule(r Rule) error {
	if err := h.h.RuleAdd(toNetlinkRule(r)); err != nil {
		return fmt.Errorf("adding rule: %w", err)
	}
	return nil
}

// DelRule deletes r, matching every attribute it has, its protocol
// included; a rule that is already gone is not an error.
func (h *Handle) DelRule(r Rule) error {
	if err := h.h.RuleDel(toNetlinkRule(r)); err != nil && !IsNotFound(err) {
		return fmt.Errorf("deleting rule: %w", err)
	}
	return nil
}
