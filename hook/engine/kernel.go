package engine

import (
	"sort"

	"github.com/gre-hook/gre-hook/hook/config"
	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/rtnl"
)

// The one place where gre-hook's plan meets package rtnl's kernel types.

// kernelLink is the link AddLink creates for l.
func kernelLink(l plan.Link) rtnl.Link {
	return rtnl.Link{Name: l.Name, Kind: string(l.Mode), Alias: l.Alias, MTU: l.MTU, Multicast: l.Multicast, GRE: true, Params: l.Params, FwMark: l.FwMark}
}

// planLink is the tunnel attributes of have, a GRE link read back, as a
// plan has them.
func planLink(have rtnl.Link) plan.Link {
	return plan.Link{Name: have.Name, Mode: config.Mode(have.Kind), Params: have.Params, MTU: have.MTU, Multicast: have.Multicast, Alias: have.Alias, FwMark: have.FwMark}
}

// KernelRoute is r installed (or deleted) with protocol proto.
func KernelRoute(r plan.Route, proto int) rtnl.Route {
	return rtnl.Route{Dst: r.Dst, Gw: r.Gw, Dev: r.Dev, Table: r.Table, Metric: r.Metric, Protocol: proto}
}

// PlanRoute is the route r read back, as plans and records keep it.
func PlanRoute(r rtnl.Route) plan.Route {
	return plan.Route{Dst: r.Dst, Gw: r.Gw, Dev: r.Dev, Table: r.Table, Metric: r.Metric}
}

func kernelAddr(a plan.Addr) rtnl.Addr { return rtnl.Addr{Prefix: a.Prefix, Broadcast: a.Broadcast} }

func planAddr(a rtnl.Addr) plan.Addr { return plan.Addr{Prefix: a.Prefix, Broadcast: a.Broadcast} }

// module is the kernel module that provides mode's links.
func module(m config.Mode) string { return rtnl.Module(string(m)) }

// LinkNamed is the link called name, or nil if there is none. It reads
// every link: it serves the watcher's rare changes, not a run's loop.
func LinkNamed(n Net, name string) (*rtnl.Link, error) {
	links, err := n.Links()
	if err != nil {
		return nil, err
	}
	for _, l := range links {
		if l.Name == name {
			return &l, nil
		}
	}
	return nil, nil
}

// Modules is the kernel modules the tunnels' modes need, each once, in
// order.
func Modules(ts []plan.Tunnel) []string {
	set := map[string]bool{}
	for _, t := range ts {
		set[module(t.Link.Mode)] = true
	}
	var out []string
	for m := range set {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}
