package hook

import (
	"time"

	"github.com/gre-hook/gre-hook/hook/config"
	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/state"
)

// A record's liveness as up and status use it: a dead peer's routes stay
// out of an up's plan, and status shows the watcher's view. What a dead
// or live peer changes is failover.go.

// forgetUnwatched makes alive again, in rec, the tunnels whose config (in
// tunnels) no longer has keepalive: no watcher would ever say so.
func forgetUnwatched(tunnels []config.Tunnel, rec *state.Record) {
	for _, c := range tunnels {
		if t := rec.Find(c.Name); t != nil && t.Dead && c.Keepalive == nil {
			t.Dead, t.DeadSince = false, nil
		}
	}
}

// withdrawDead drops the routes and default routes of the tunnels the
// record says are dead. The link, its addresses and MSS rules stay, so
// keepalives keep going out and the watcher sees the peer come back.
func withdrawDead(want []plan.Tunnel, rec *state.Record) []plan.Tunnel {
	for i := range want {
		if t := rec.Find(want[i].Link.Name); t != nil && t.Dead {
			want[i].Routes, want[i].Defaults = nil, nil
		}
	}
	return want
}

// keepLiveness carries the liveness of each tunnel over from the old
// record into the one a run builds. A dead tunnel's withdrawn routes are
// those the new record lists for it: what the peer's return puts back.
func keepLiveness(rec, old *state.Record) {
	for i := range rec.Tunnels {
		t := &rec.Tunnels[i]
		o := old.Find(t.Name)
		if o == nil {
			continue
		}
		t.Dead, t.DeadSince, t.LastReply = o.Dead, o.DeadSince, o.LastReply
		if o.Dead {
			t.Withdrawn = withdrawable(t)
		}
	}
}

// withdrawable is what a dead peer takes out of the kernel: the tunnel's
// routes and its default routes in gre-hook's table.
func withdrawable(t *state.Tunnel) []state.Route {
	return append(append([]state.Route{}, t.Routes...), t.OwnedDefaults()...)
}

func ageOf(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	if d < 10*time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// KeepaliveStatus is a watched tunnel's liveness, as status shows it.
type KeepaliveStatus struct {
	Alive     bool       `json:"alive"`
	DeadSince *time.Time `json:"dead_since,omitempty"`
	LastReply *time.Time `json:"last_reply,omitempty"`
	// LastReplyAge is the seconds since the last reply, when one is known.
	LastReplyAge *float64 `json:"last_reply_age_seconds,omitempty"`
}

func (k *KeepaliveStatus) String() string {
	s := "alive"
	if !k.Alive {
		s = "dead"
		if k.DeadSince != nil {
			s += " since " + k.DeadSince.Local().Format(time.RFC3339) + " (" + ageOf(now().Sub(*k.DeadSince)) + ")"
		}
	}
	if k.LastReplyAge == nil {
		return s + ", no reply known (is gre-hook watch running?)"
	}
	return s + ", last reply " + ageOf(time.Duration(*k.LastReplyAge*float64(time.Second))) + " ago"
}

// now is the clock of status, for tests.
var now = time.Now

// keepaliveStatus is tunnel c's liveness: dead or alive as its record
// says (the record is what up acts on), with the latest reply that the
// record or the watcher's liveness file knows. Nil for a tunnel without
// keepalive or not brought up.
func keepaliveStatus(c config.Tunnel, rec *state.Record, live []state.LivenessEntry) *KeepaliveStatus {
	t := rec.Find(c.Name)
	if c.Keepalive == nil || t == nil {
		return nil
	}
	k := &KeepaliveStatus{Alive: !t.Dead, DeadSince: t.DeadSince, LastReply: t.LastReply}
	for _, e := range live {
		if e.Underlay == c.Underlay && e.Tunnel == c.Name && !e.LastReply.IsZero() && (k.LastReply == nil || e.LastReply.After(*k.LastReply)) {
			last := e.LastReply
			k.LastReply = &last
		}
	}
	if k.LastReply != nil {
		age := now().Sub(*k.LastReply).Seconds()
		if age < 0 {
			age = 0
		}
		k.LastReplyAge = &age
	}
	return k
}
