package engine

import (
	"fmt"

	"github.com/gre-hook/gre-hook/hook/config"
	"github.com/gre-hook/gre-hook/hook/plan"
)

// What a status or a dry run can tell in advance of the real up: the
// failures it would meet, and what would work but carry nothing.

// AbsentLocal says that c's literal local is no address of this host, or
// "". The kernel makes such a tunnel, but it cannot send from there.
func AbsentLocal(snap *Snapshot, c config.Tunnel) string {
	if !c.Local.IsValid() {
		return ""
	}
	for _, as := range snap.addrs {
		for _, a := range as {
			if a.Prefix.Addr() == c.Local {
				return ""
			}
		}
	}
	return fmt.Sprintf("local %s is not an address of this host; the tunnel carries nothing until it is", c.Local)
}

// ModulesMissing says why a module the tunnels need could not be loaded,
// or nil, without loading any.
func ModulesMissing(sys *System, want []plan.Tunnel) error {
	if sys.ModuleAvailable == nil {
		return nil
	}
	for _, m := range Modules(want) {
		if err := sys.ModuleAvailable(m); err != nil {
			return err
		}
	}
	return nil
}
