package config

import (
	"fmt"
	"net/netip"
)

// Host is what check knows of the machine it runs on: the addresses of
// its interfaces, each with its prefix, which is also the connected route
// the kernel made for it.
type Host struct {
	Addrs []HostAddr
}

// HostAddr is one address of an interface.
type HostAddr struct {
	Iface  string
	Prefix netip.Prefix
}

// Warnings lists what in cfg is valid but looks wrong on this host: a
// literal local that is not one of its addresses, and a route that takes
// part of a connected subnet away from its interface. They are *Problem
// values with Warning set.
func (c *Config) Warnings(h *Host) []error {
	if c == nil || h == nil {
		return nil
	}
	tunnels := map[string]bool{}
	for _, t := range c.Tunnels {
		tunnels[t.Name] = true
	}
	var out []error
	for i := range c.Tunnels {
		t := &c.Tunnels[i]
		at := tunnelAt{}
		if i < len(c.at) {
			at = c.at[i]
		}
		warn := func(ri int, key, format string, args ...interface{}) {
			pos := at.pos(ri, key)
			if at.loc == nil {
				pos = position{Line: t.Line, Col: t.Col}
			}
			out = append(out, &Problem{File: t.File, Line: pos.Line, Col: pos.Col, Warning: true,
				Msg: fmt.Sprintf("%s: %s: %s", who(at.index, t.Name, ri), key, fmt.Sprintf(format, args...))})
		}
		if t.Local.IsValid() && !h.has(t.Local) {
			warn(-1, "local", "%s is not an address of this host (up fails until it is)", t.Local)
		}
		for ri, r := range t.Routes {
			for _, a := range h.Addrs {
				conn := a.Prefix.Masked()
				// A route more specific than a connected subnet (or the
				// same) wins over it; a wider one does not.
				if tunnels[a.Iface] || a.Iface == "lo" || r.To.Bits() < conn.Bits() || !conn.Contains(r.To.Addr()) {
					continue
				}
				warn(ri, "to", "%s shadows %s, connected on %s: those hosts would be reached through the tunnel, not %s", r.To, conn, a.Iface, a.Iface)
				break
			}
		}
	}
	return out
}

func (h *Host) has(a netip.Addr) bool {
	for _, x := range h.Addrs {
		if x.Prefix.Addr() == a {
			return true
		}
	}
	return false
}
