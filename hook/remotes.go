package hook

import (
	"context"
	"errors"
	"net/netip"

	"github.com/gre-hook/gre-hook/hook/addrpolicy"
	"github.com/gre-hook/gre-hook/hook/config"
	"github.com/gre-hook/gre-hook/hook/engine"
	"github.com/gre-hook/gre-hook/hook/resolve"
	"github.com/gre-hook/gre-hook/hook/state"
)

// remoteQuery is what resolving t's remote asks for: its name, and the
// family of its mode.
func remoteQuery(t *config.Tunnel) resolve.Query {
	f := 4
	if t.Mode.Outer6() {
		f = 6
	}
	return resolve.Query{Name: t.RemoteName, Family: f}
}

// resolveRemotes looks up every remote of tunnels given as a name, all of
// them together under one deadline, before the run takes the lock: a DNS
// server that does not answer at boot must not hold other runs.
func resolveRemotes(ctx context.Context, sys *System, tunnels []config.Tunnel) map[resolve.Query]resolve.Result {
	var qs []resolve.Query
	for i := range tunnels {
		if tunnels[i].RemoteName != "" {
			qs = append(qs, remoteQuery(&tunnels[i]))
		}
	}
	if len(qs) == 0 {
		return nil
	}
	lookup, wait := sys.Resolve, sys.ResolveWait
	if lookup == nil {
		lookup = resolve.System
	}
	if wait <= 0 {
		wait = resolve.DefaultWait
	}
	// Without the router's addresses the policy still refuses what is
	// never a remote; the kernel's answer adds its own addresses.
	own, _ := engine.OwnAddrs(sys.Net)
	return resolve.All(ctx, lookup, qs, wait, own)
}

// errNotLookedUp is the result of a name a run under the caller's lock
// did not look up, and that no earlier up resolved.
var errNotLookedUp = errors.New("not resolved yet; gre-hook watch keeps trying")

// withRecorded completes res, for a run that must not look names up
// (it runs under the run lock, which a slow DNS server would hold): a
// name it lacks has the address the record says the last up used.
func withRecorded(res map[resolve.Query]resolve.Result, tunnels []config.Tunnel, rec *state.Record) map[resolve.Query]resolve.Result {
	out := map[resolve.Query]resolve.Result{}
	for q, r := range res {
		out[q] = r
	}
	for i := range tunnels {
		t := &tunnels[i]
		q := remoteQuery(t)
		if _, ok := out[q]; ok || t.RemoteName == "" {
			continue
		}
		prev := rec.Find(t.Name)
		if prev == nil || prev.Unresolved || prev.RemoteName != t.RemoteName || !prev.Remote.IsValid() {
			out[q] = resolve.Result{Err: errNotLookedUp}
			continue
		}
		out[q] = resolve.Result{Addr: prev.Remote, All: []netip.Addr{prev.Remote}}
	}
	return out
}

// withRemotes returns the tunnels that can come up, their remotes filled
// in, and the record entries of those that cannot.
//
//   - A name that resolves gives its address. If the record's address is
//     still one of the name's, that one stays: a name with several
//     addresses must not move the tunnel on every run.
//   - A name that does not resolve, for a tunnel an earlier run brought up,
//     keeps the address that run used (a DNS outage at ifreload must not
//     take a working tunnel down).
//   - Otherwise the tunnel is left out of this run with a warning, and
//     recorded as unresolved for gre-hook watch. The run goes on with the
//     other tunnels, and succeeds.
func withRemotes(tunnels []config.Tunnel, res map[resolve.Query]resolve.Result, rec *state.Record, l *engine.Logger) (up []config.Tunnel, unresolved []state.Tunnel) {
	for _, t := range tunnels {
		if t.RemoteName == "" {
			up = append(up, t)
			continue
		}
		r := res[remoteQuery(&t)]
		prev := rec.Find(t.Name)
		known := prev != nil && !prev.Unresolved && prev.RemoteName == t.RemoteName && prev.Remote.IsValid() &&
			prev.Remote.Is6() == t.Mode.Outer6()
		switch {
		case r.Err == nil:
			t.Remote = r.Addr
			if known {
				for _, a := range r.All {
					if a == prev.Remote {
						t.Remote = a
					}
				}
			}
			if l.Dry {
				l.Change("# " + t.Name + ": remote " + t.RemoteName + " (" + t.Remote.String() + ")")
			} else {
				l.Note("tunnel %q: remote %s is %s", t.Name, t.RemoteName, t.Remote)
			}
		case known:
			t.Remote = prev.Remote
			l.Warn("tunnel %q: %v; keeping %s, the address the last up used", t.Name, r.Err, t.Remote)
		default:
			why := "does not resolve (" + r.Err.Error() + ")"
			var fe *resolve.FamilyError
			var re *resolve.RefusedError
			switch {
			case errors.As(r.Err, &fe):
				why = "has no " + resolve.FamilyName(fe.Family) + " address, which mode " + string(t.Mode) + " needs (it resolves to " + resolve.JoinAddrs(fe.Have) + " only)"
			case errors.As(r.Err, &re):
				why = "resolves to no address a tunnel can use (" + addrpolicy.JoinRefusals(re.Refused) + ")"
			}
			l.Warn("tunnel %q: remote %s %s: the tunnel is not brought up now. gre-hook watch brings it up when the name resolves; "+
				"without watch it stays down until the next up of %s", t.Name, t.RemoteName, why, t.Underlay)
			unresolved = append(unresolved, state.Tunnel{Name: t.Name, RemoteName: t.RemoteName, Unresolved: true})
			continue
		}
		up = append(up, t)
	}
	return up, unresolved
}

// remoteFromRecord gives c, whose remote is a name, the address its
// record says the tunnel was brought up with, for status; status does not
// resolve names itself. It reports false when no up has resolved it.
func remoteFromRecord(c *config.Tunnel, rec *state.Record, st *TunnelStatus) bool {
	st.RemoteName = c.RemoteName
	e := rec.Find(c.Name)
	if e == nil || e.Unresolved || !e.Remote.IsValid() || e.RemoteName != c.RemoteName {
		return false
	}
	c.Remote = e.Remote
	st.Remote = e.Remote.String()
	return true
}

// describeRemote is status's note of a remote given as a name.
func describeRemote(st TunnelStatus) string {
	switch {
	case st.RemoteName == "":
		return ""
	case st.Remote == "":
		return ", remote " + st.RemoteName + " (not resolved)"
	}
	return ", remote " + st.RemoteName + " (" + st.Remote + ")"
}

// OwnAddrs is what the address policy needs to know of the router's own
// addresses, read from the kernel, for gre-hook watch to judge a name's
// answers by.
func OwnAddrs(n Net) (addrpolicy.Own, error) { return engine.OwnAddrs(n) }
