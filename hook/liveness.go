package hook

import (
	"time"

	"github.com/gre-hook/gre-hook/hook/config"
	"github.com/gre-hook/gre-hook/hook/peer"
	"github.com/gre-hook/gre-hook/hook/state"
)

// A record's liveness as status shows it, with the watcher's latest
// replies. What a dead or live peer changes, and what up keeps of it, is
// package peer.

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
			s += " since " + k.DeadSince.Local().Format(time.RFC3339) + " (" + peer.AgeOf(now().Sub(*k.DeadSince)) + ")"
		}
	}
	if k.LastReplyAge == nil {
		return s + ", no reply known (is gre-hook watch running?)"
	}
	return s + ", last reply " + peer.AgeOf(time.Duration(*k.LastReplyAge*float64(time.Second))) + " ago"
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
