package peer

import (
	"time"

	"github.com/gre-hook/gre-hook/hook/config"
	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/state"
)

// ForgetUnwatched makes alive again, in rec, the tunnels whose config (in
// tunnels) no longer has keepalive: no watcher would ever say so.
func ForgetUnwatched(tunnels []config.Tunnel, rec *state.Record) {
	for _, c := range tunnels {
		if t := rec.Find(c.Name); t != nil && t.Dead && c.Keepalive == nil {
			t.Dead, t.DeadSince = false, nil
		}
	}
}

// WithdrawDead drops the routes and default routes of the tunnels the
// record says are dead. The link, its addresses and MSS rules stay, so
// keepalives keep going out and the watcher sees the peer come back.
func WithdrawDead(want []plan.Tunnel, rec *state.Record) []plan.Tunnel {
	for i := range want {
		if t := rec.Find(want[i].Link.Name); t != nil && t.Dead {
			want[i].Routes, want[i].Defaults = nil, nil
		}
	}
	return want
}

// KeepLiveness carries the liveness of each tunnel over from the old
// record into the one a run builds. A dead tunnel's withdrawn routes are
// those the new record lists for it: what the peer's return puts back.
func KeepLiveness(rec, old *state.Record) {
	for i := range rec.Tunnels {
		t := &rec.Tunnels[i]
		o := old.Find(t.Name)
		if o == nil {
			continue
		}
		t.Dead, t.DeadSince, t.LastReply = o.Dead, o.DeadSince, o.LastReply
		if o.Dead {
			t.Withdrawn = Withdrawable(t)
		}
	}
}

// Withdrawable is what a dead peer takes out of the kernel: the tunnel's
// routes and its default routes in gre-hook's table.
func Withdrawable(t *state.Tunnel) []state.Route {
	return append(append([]state.Route{}, t.Routes...), t.OwnedDefaults()...)
}

func AgeOf(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	if d < 10*time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
