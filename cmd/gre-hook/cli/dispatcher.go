package cli

// The two dispatchers that run gre-hook where ifupdown does not: the
// package links /usr/sbin/gre-hook into their script directories, and
// gre-hook tells from its arguments and environment which one called it.
//
//   - networkd-dispatcher (systemd-networkd, netplan's Ubuntu Server) runs
//     {/etc,/usr/lib}/networkd-dispatcher/STATE.d/* with no arguments and
//     IFACE, STATE, AdministrativeState, OperationalState, ADDR, IP_ADDRS,
//     IP6_ADDRS and json in its own environment. STATE is an
//     administrative state (configured, configuring, linger, ...) or an
//     operational one (routable, no-carrier, off, ...).
//   - NetworkManager's dispatcher runs {/etc,/usr/lib}/NetworkManager/
//     dispatcher.d/* (and pre-down.d/* for pre-down only) with $1 the
//     interface and $2 the action, in an environment of its own making
//     that has NM_DISPATCHER_ACTION (= $2), DEVICE_IFACE, CONNECTION_ID...
//
// Either call becomes the ifupdown hook's (IFACE and PHASE), so that from
// there on there is one code path.

// Dispatch is what a dispatcher's call asks of gre-hook.
type Dispatch struct {
	Manager string // "networkd-dispatcher" or "NetworkManager"
	Iface   string
	Event   string // networkd-dispatcher's STATE, NetworkManager's action
	Phase   string // "up", "down", or "" for an event gre-hook ignores
}

// networkd-dispatcher's states. routable means the underlay has carrier
// and an address that routes beyond the link: tunnels can come up.
// configured comes when networkd has finished (re)configuring the link,
// before or after routable; a reconfigure (networkctl reconfigure, netplan
// apply, a restart of networkd) ends with it, after networkd has removed
// the routes it did not make, so up runs again and puts gre-hook's back.
// It counts only while the link is routable (OperationalState as the
// dispatcher last saw it): a configured link without carrier has nothing
// for a tunnel to run over, and routable follows when carrier returns.
//
// off (the link set down; off.d runs after it is down), no-carrier (the
// cable pulled: networkd then drops the link's addresses and routes) and
// linger (the link is gone) take the tunnels down. Everything else is
// ignored: carrier and degraded (no routable address yet), dormant,
// degraded-carrier, enslaved, missing, configuring, pending, failed,
// unmanaged, initialized.
func networkdPhase(state, operational string) string {
	switch state {
	case "routable":
		return "up"
	case "configured":
		if operational == "routable" || operational == "" {
			return "up"
		}
	case "off", "no-carrier", "linger":
		return "down"
	}
	return ""
}

// NetworkManager's actions. up, and dhcp4-change, dhcp6-change and
// reapply, after which the local address may have moved, bring tunnels
// up (again: up changes only what differs). pre-down (scripts in
// pre-down.d only) and down take them down; carrier loss and a vanished
// device send down with no pre-down before it, so down must do it all.
// The rest (pre-up, hostname, connectivity-change, the vpn-* actions of
// the VPN's own interface...) is ignored.
func nmPhase(action string) string {
	switch action {
	case "up", "dhcp4-change", "dhcp6-change", "reapply":
		return "up"
	case "pre-down", "down":
		return "down"
	}
	return ""
}

// parseDispatch recognises a dispatcher's call. ok is false for every
// other call, ifupdown's hooks included: Debian's NetworkManager runs
// if-up.d through its 01-ifupdown with PHASE=post-up and no arguments,
// which stays an ifupdown hook call.
func parseDispatch(args []string, getenv func(string) string) (d Dispatch, ok bool) {
	switch {
	case len(args) == 2 && getenv("NM_DISPATCHER_ACTION") != "" && args[1] == getenv("NM_DISPATCHER_ACTION"):
		return Dispatch{Manager: "NetworkManager", Iface: args[0], Event: args[1], Phase: nmPhase(args[1])}, true
	case len(args) == 0 && getenv("PHASE") == "" && getenv("IFACE") != "" && getenv("STATE") != "":
		return Dispatch{Manager: "networkd-dispatcher", Iface: getenv("IFACE"), Event: getenv("STATE"),
			Phase: networkdPhase(getenv("STATE"), getenv("OperationalState"))}, true
	}
	return Dispatch{}, false
}

// hookEnv is the environment of the ifupdown hook call that d amounts to:
// IFACE and PHASE from d, no ifupdown stanza variables (a dispatcher
// passes on whatever its daemon's environment has), the rest as is.
func (d Dispatch) hookEnv(getenv func(string) string) func(string) string {
	phase := map[string]string{"up": "post-up", "down": "pre-down"}[d.Phase]
	return func(k string) string {
		switch {
		case k == "IFACE":
			return d.Iface
		case k == "PHASE":
			return phase
		case k == "MODE", k == "ADDRFAM", k == "VERBOSITY", k == "LOGICAL", k == "METHOD", len(k) > 3 && k[:3] == "IF_":
			return ""
		}
		return getenv(k)
	}
}
