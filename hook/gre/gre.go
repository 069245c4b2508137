// Package gre is the one list of a GRE tunnel's own attributes, shared by
// the config (package config), the plan (package plan) and the kernel's
// links (package rtnl), so that they are written, compared and copied as
// one value.
package gre

import "net/netip"

// Params are a GRE tunnel's attributes that the kernel keeps on the link:
// its outer addresses, TTL and TOS, path MTU discovery and keys. Zero
// values are the kernel's own: no local (any, or the underlay's for a
// config), TTL 0 (inherit), TOS 0, no key.
type Params struct {
	Local    netip.Addr
	Remote   netip.Addr
	TTL      uint8
	TOS      uint8
	PMTUDisc bool
	IKey     uint32
	OKey     uint32
}
