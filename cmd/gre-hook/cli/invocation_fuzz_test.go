package cli

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gre-hook/gre-hook/hook"
	"github.com/gre-hook/gre-hook/hook/config"
)

// FuzzParseInvocation feeds arbitrary arguments and ifupdown environments
// to the invocation parser. No input may panic; a rejection is a usage
// error with a message; an accepted run has a valid interface and phase.
func FuzzParseInvocation(f *testing.F) {
	f.Add("--iface\x00eth1\x00--phase\x00up", "", "", "", "")
	f.Add("", "eth1", "post-up", "inet", "")
	f.Add("", "--all", "pre-down", "meta", "1")
	f.Add("status\x00--json\x00--iface\x00eth1", "", "", "", "")
	f.Add("gc\x00--dry-run", "", "", "", "")
	f.Add("--phase\x00sideways\x00--iface\x00x", "", "", "", "")
	f.Add("", "eth1", "post-up", "inet", "NaN")
	f.Add("", "eth1", "post-up", "inet", "1e400")
	f.Fuzz(func(t *testing.T, args, iface, phase, addrfam, wait string) {
		var argv []string
		if args != "" {
			argv = strings.Split(args, "\x00")
		}
		env := map[string]string{"IFACE": iface, "PHASE": phase, "ADDRFAM": addrfam, "GRE_HOOK_LOCK_WAIT": wait}
		inv, err := Parse(argv, func(k string) string { return env[k] })
		if err != nil {
			if !errors.Is(err, ErrUsage) || err.Error() == "" {
				t.Fatalf("rejection is not a usage error: %v", err)
			}
			return
		}
		if inv.LockWait < 0 || inv.LockWait > 3600*time.Second {
			t.Fatalf("GRE_HOOK_LOCK_WAIT=%q accepted as %v", wait, inv.LockWait)
		}
		if inv.Command == CmdRun {
			if inv.Request.Phase != hook.PhaseUp && inv.Request.Phase != hook.PhaseDown {
				t.Fatalf("run with phase %q", inv.Request.Phase)
			}
			if config.ValidIfName(inv.Request.Iface) != "" {
				t.Fatalf("run with interface %q", inv.Request.Iface)
			}
		}
	})
}
