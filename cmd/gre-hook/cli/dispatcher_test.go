package cli

import (
	"testing"

	"github.com/gre-hook/gre-hook/hook"
)

// networkdEnv is networkd-dispatcher's environment for a script of
// STATE.d, as it builds it: its own environment plus these.
func networkdEnv(iface, state, admin, oper string, more ...string) func(string) string {
	return envOf(append([]string{"PATH", "/usr/bin:/bin", "IFACE", iface, "STATE", state,
		"AdministrativeState", admin, "OperationalState", oper,
		"ADDR", "198.51.100.1", "IP_ADDRS", "198.51.100.1", "IP6_ADDRS", "", "ESSID", "",
		"json", `{"AdministrativeState": "` + admin + `", "OperationalState": "` + oper + `"}`}, more...)...)
}

// nmEnv is NetworkManager's dispatcher environment for an action on a
// device.
func nmEnv(iface, action string, more ...string) func(string) string {
	return envOf(append([]string{"NM_DISPATCHER_ACTION", action, "DEVICE_IFACE", iface, "DEVICE_IP_IFACE", iface,
		"CONNECTION_ID", "wired", "CONNECTION_UUID", "5b0c6a0e-0000-4000-8000-000000000001", "IP4_NUM_ADDRESSES", "1",
		"IP4_ADDRESS_0", "198.51.100.1/24 198.51.100.254"}, more...)...)
}

// TestDispatch is the table of (manager, state or action, environment) ->
// up, down or ignore, through Parse as gre-hook sees the call.
func TestDispatch(t *testing.T) {
	const up, down, ignore = hook.PhaseUp, hook.PhaseDown, hook.Phase("")
	for _, tc := range []struct {
		name  string
		args  []string
		env   func(string) string
		want  hook.Phase // ignore: CmdNothing
		iface string
		usage bool
	}{
		// networkd-dispatcher: no arguments.
		{name: "networkd routable", env: networkdEnv("eth1", "routable", "configured", "routable"), want: up},
		{name: "networkd routable while configuring", env: networkdEnv("eth1", "routable", "configuring", "routable"), want: up},
		{name: "networkd configured routable", env: networkdEnv("eth1", "configured", "configured", "routable"), want: up},
		{name: "networkd configured, state unknown", env: networkdEnv("eth1", "configured", "configured", ""), want: up},
		{name: "networkd configured before routable", env: networkdEnv("eth1", "configured", "configured", "degraded"), want: ignore},
		{name: "networkd configured without carrier", env: networkdEnv("eth1", "configured", "configured", "no-carrier"), want: ignore},
		{name: "networkd off", env: networkdEnv("eth1", "off", "configured", "off"), want: down},
		{name: "networkd no-carrier", env: networkdEnv("eth1", "no-carrier", "configuring", "no-carrier"), want: down},
		{name: "networkd linger", env: networkdEnv("eth1", "linger", "linger", "off"), want: down},
		{name: "networkd carrier", env: networkdEnv("eth1", "carrier", "configuring", "carrier"), want: ignore},
		{name: "networkd degraded", env: networkdEnv("eth1", "degraded", "configured", "degraded"), want: ignore},
		{name: "networkd degraded-carrier", env: networkdEnv("eth1", "degraded-carrier", "configured", "degraded-carrier"), want: ignore},
		{name: "networkd dormant", env: networkdEnv("eth1", "dormant", "configuring", "dormant"), want: ignore},
		{name: "networkd enslaved", env: networkdEnv("eth1", "enslaved", "configured", "enslaved"), want: ignore},
		{name: "networkd missing", env: networkdEnv("eth1", "missing", "pending", "missing"), want: ignore},
		{name: "networkd configuring", env: networkdEnv("eth1", "configuring", "configuring", "carrier"), want: ignore},
		{name: "networkd pending", env: networkdEnv("eth1", "pending", "pending", "off"), want: ignore},
		{name: "networkd failed", env: networkdEnv("eth1", "failed", "failed", "routable"), want: ignore},
		{name: "networkd unmanaged", env: networkdEnv("eth1", "unmanaged", "unmanaged", "routable"), want: ignore},
		{name: "networkd initialized", env: networkdEnv("eth1", "initialized", "initialized", "off"), want: ignore},
		{name: "networkd a state of the future", env: networkdEnv("eth1", "frobbed", "configured", "routable"), want: ignore},
		{name: "networkd lo", env: networkdEnv("lo", "routable", "unmanaged", "carrier"), want: ignore},
		{name: "networkd bad name", env: networkdEnv("eth+", "routable", "configured", "routable"), usage: true},
		{name: "networkd stanza variables dropped", env: networkdEnv("eth1", "routable", "configured", "routable", "IF_GRE_HOOK_CONFIG", "/x", "ADDRFAM", "meta"), want: up},
		{name: "networkd config from its environment", env: networkdEnv("eth1", "routable", "configured", "routable", "GRE_HOOK_CONFIG", "/etc/x.toml"), want: up},

		// NetworkManager: $1 the interface, $2 the action.
		{name: "nm up", args: []string{"eth1", "up"}, env: nmEnv("eth1", "up"), want: up},
		{name: "nm dhcp4-change", args: []string{"eth1", "dhcp4-change"}, env: nmEnv("eth1", "dhcp4-change"), want: up},
		{name: "nm dhcp6-change", args: []string{"eth1", "dhcp6-change"}, env: nmEnv("eth1", "dhcp6-change"), want: up},
		{name: "nm reapply", args: []string{"eth1", "reapply"}, env: nmEnv("eth1", "reapply"), want: up},
		{name: "nm pre-down", args: []string{"eth1", "pre-down"}, env: nmEnv("eth1", "pre-down"), want: down},
		{name: "nm down", args: []string{"eth1", "down"}, env: nmEnv("eth1", "down"), want: down},
		{name: "nm pre-up", args: []string{"eth1", "pre-up"}, env: nmEnv("eth1", "pre-up"), want: ignore},
		{name: "nm hostname", args: []string{"none", "hostname"}, env: nmEnv("", "hostname"), want: ignore},
		{name: "nm connectivity-change", args: []string{"", "connectivity-change"}, env: nmEnv("", "connectivity-change", "CONNECTIVITY_STATE", "FULL"), want: ignore},
		{name: "nm vpn-up", args: []string{"tun0", "vpn-up"}, env: nmEnv("eth1", "vpn-up", "VPN_IP_IFACE", "tun0"), want: ignore},
		{name: "nm vpn-down", args: []string{"tun0", "vpn-down"}, env: nmEnv("eth1", "vpn-down"), want: ignore},
		{name: "nm bad name", args: []string{"eth 1", "up"}, env: nmEnv("eth 1", "up"), usage: true},
		{name: "nm lo", args: []string{"lo", "up"}, env: nmEnv("lo", "up"), want: ignore},
		// The arguments are the dispatcher's only when $2 is the action
		// its environment names.
		{name: "nm action mismatch", args: []string{"eth1", "down"}, env: nmEnv("eth1", "up"), usage: true},
		{name: "two words by hand", args: []string{"eth1", "up"}, env: envOf(), usage: true},

		// Debian's 01-ifupdown runs if-up.d inside NetworkManager's
		// dispatcher environment, with PHASE=post-up and no arguments: an
		// ifupdown hook call, the second run of the double run.
		{name: "nm 01-ifupdown if-up.d", env: nmEnv("eth1", "up", "IFACE", "eth1", "LOGICAL", "eth1", "METHOD", "NetworkManager", "VERBOSITY", "0",
			"ADDRFAM", "inet", "MODE", "start", "PHASE", "post-up"), want: up},
		{name: "nm 01-ifupdown if-post-down.d", env: nmEnv("eth1", "down", "IFACE", "eth1", "METHOD", "NetworkManager",
			"ADDRFAM", "inet", "MODE", "stop", "PHASE", "post-down"), want: ignore},
		// ifupdown's own hook is not networkd-dispatcher's, even with a
		// STATE in the environment.
		{name: "ifupdown hook with STATE", env: envOf("IFACE", "eth1", "PHASE", "pre-down", "STATE", "routable"), want: down},
		// ifupdown2's stanza lines have IFACE and no PHASE, but no STATE:
		// they stay the usage error that names the lines to write.
		{name: "ifupdown2 bare line", env: envOf("IFACE", "eth1", "LOGICAL", "eth1", "METHOD", "static", "ADDRFAM", "inet"), usage: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv, err := Parse(tc.args, tc.env)
			if tc.usage {
				if err == nil {
					t.Fatalf("Parse = %+v, want a usage error", inv)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == ignore {
				if inv.Command != CmdNothing {
					t.Fatalf("command %s (%+v), want nothing", inv.Command, inv.Request)
				}
				return
			}
			iface := tc.iface
			if iface == "" {
				iface = "eth1"
			}
			r := inv.Request
			if inv.Command != CmdRun || r.Phase != tc.want || r.Iface != iface || r.ByHand || r.Line || r.Verbose {
				t.Fatalf("got %s %+v, want run %s on %s (not by hand, not a line, not verbose)", inv.Command, r, tc.want, iface)
			}
			if want := tc.env("GRE_HOOK_CONFIG"); r.Config != want {
				t.Errorf("config %q, want %q (IF_* from a dispatcher's environment is not a stanza option)", r.Config, want)
			}
		})
	}
}
