package config

import (
	"net/netip"
	"strings"
	"testing"
)

// The host that TestCheckTable's warnings are judged against.
var lintHost = &Host{Addrs: []HostAddr{
	{Iface: "lo", Prefix: netip.MustParsePrefix("127.0.0.1/8")},
	{Iface: "eth0", Prefix: netip.MustParsePrefix("192.168.1.10/24")},
	{Iface: "eth1", Prefix: netip.MustParsePrefix("198.51.100.1/24")},
	// The tunnel's own address, once it is up, shadows nothing.
	{Iface: "gre1", Prefix: netip.MustParsePrefix("10.0.0.1/30")},
}}

// gre1 is a minimal tunnel at lines 1-5 of a file, with a /30 so that
// routes have a peer.
const gre1 = `[[tunnel]]
name = "gre1"
underlay = "eth1"
remote = "203.0.113.1"
address = ["10.0.0.1/30"]
`

// gre2 is another, for conflicts (lines 1-5 of its own file, or 6-10
// after gre1).
const gre2 = `[[tunnel]]
name = "gre2"
underlay = "eth1"
remote = "203.0.113.2"
address = ["10.0.0.5/30"]
`

const route = "[[tunnel.route]]\nto = \"10.1.0.0/16\"\n"

// checkOutput is what `gre-hook check` prints for the files (name, text,
// name, text, ...) on lintHost, less the "gre-hook: " prefix.
func checkOutput(files ...string) string {
	var names []string
	var data [][]byte
	for i := 0; i+1 < len(files); i += 2 {
		names, data = append(names, "/etc/gre-hook/"+files[i]), append(data, []byte(files[i+1]))
	}
	cfg, errs := parseAll(names, data, nil)
	var lines []string
	for _, e := range errs {
		lines = append(lines, e.Error())
	}
	for _, w := range cfg.Warnings(lintHost) {
		lines = append(lines, w.Error())
	}
	return strings.Join(lines, "\n")
}

func TestCheckTable(t *testing.T) {
	const a, b = "/etc/gre-hook/a.toml", "/etc/gre-hook/b.toml"
	for _, tc := range []struct {
		name  string
		files []string
		want  string
	}{
		{"five errors in one tunnel, type errors among them",
			[]string{"a.toml", gre1 + "ttl = \"high\"\nmss = 1.5\ncolour = \"red\"\ntos = 300\npmtudisc = \"no\"\n"},
			a + `:6:1: tunnel "gre1": ttl: must be an integer, not a string ("high")
` + a + `:7:1: tunnel "gre1": mss: must be "pmtu", "off" or a number of bytes, not a float (1.5)
` + a + `:8:1: tunnel "gre1": unknown key "colour"
` + a + `:9:1: tunnel "gre1": tos: 300 is out of range 0-255 (1 inherits the inner packet's TOS)
` + a + `:10:1: tunnel "gre1": pmtudisc: must be true or false, not a string ("no")`},
		{"tos on gre", []string{"a.toml", gre1 + "tos = 16\n"}, ""},
		{"tos on an IPv6 underlay, which the kernel ignores",
			[]string{"a.toml", "[[tunnel]]\nname = \"gre6\"\nunderlay = \"eth1\"\nmode = \"ip6gre\"\nremote = \"2001:db8::2\"\ntos = 16\n"},
			a + `:6:1: tunnel "gre6": tos: mode ip6gre has no tos the kernel keeps (it ignores the attribute; the outer IPv6 header's traffic class comes from the flow information, which gre-hook does not set): leave tos out`},
		{"a type error in one tunnel does not hide another's errors",
			[]string{"a.toml", gre1 + "ttl = \"high\"\n" + strings.Replace(gre2, "203.0.113.2", "203.0.113.300", 1)},
			a + `:6:1: tunnel "gre1": ttl: must be an integer, not a string ("high")
` + a + `:10:1: tunnel "gre2": remote: "203.0.113.300" is not an IP address`},
		{"a type error in one file does not hide another file's",
			[]string{"a.toml", gre1 + "ttl = 1.5\n", "b.toml", gre2 + "mtu = \"1400\"\n"},
			a + `:6:1: tunnel "gre1": ttl: must be an integer, not a float (1.5)
` + b + `:6:1: tunnel "gre2": mtu: must be an integer, not a string ("1400")`},
		{"a syntax error in one file, a type error in the next",
			[]string{"a.toml", "[[tunnel]\n", "b.toml", gre2 + "key = true\n"},
			a + `:2:9: expected end of table array name delimiter ']', but got '\n' instead
` + b + `:6:1: tunnel "gre2": key: must be an integer, not a boolean (true)`},
		{"address as a string",
			[]string{"a.toml", strings.Replace(gre1, `["10.0.0.1/30"]`, `"10.0.0.1/30"`, 1)},
			a + `:5:1: tunnel "gre1": address: must be an array of strings, not a string; write ["10.0.0.1/30"]`},
		{"an address that is a number",
			[]string{"a.toml", strings.Replace(gre1, `["10.0.0.1/30"]`, `["10.0.0.1/30", 5]`, 1)},
			a + `:5:1: tunnel "gre1": address: item 2 must be a string, not an integer (5)`},
		{"up_command as a string",
			[]string{"a.toml", gre1 + "up_command = \"/usr/bin/smcroutectl reload\"\n"},
			a + `:6:1: tunnel "gre1": up_command: must be an array of strings, not a string; write ["/usr/bin/smcroutectl reload"]`},
		{"name as a number",
			[]string{"a.toml", strings.Replace(gre1, `"gre1"`, `5`, 1)},
			a + `:2:1: tunnel #1: name: must be a string, not an integer (5)`},
		{"a date for a number",
			[]string{"a.toml", gre1 + "ttl = 1979-05-27\n"},
			a + `:6:1: tunnel "gre1": ttl: must be an integer, not a date`},
		{"keepalive as a number",
			[]string{"a.toml", gre1 + "keepalive = 10\n"},
			a + `:6:1: tunnel "gre1": keepalive: must be a table such as { interval = 10, retries = 3 }, not an integer (10)`},
		{"keepalive with a float and an unknown key",
			[]string{"a.toml", gre1 + "keepalive = { interval = 0.5, timeout = 3 }\n"},
			a + `:6:1: tunnel "gre1": keepalive: interval must be an integer, not a float (0.5)
` + a + `:6:1: tunnel "gre1": keepalive: unknown key "timeout"`},
		{"route as a string",
			[]string{"a.toml", gre1 + "route = \"10.1.0.0/16\"\n"},
			a + `:6:1: tunnel "gre1": route: must be [[tunnel.route]] tables, not a string ("10.1.0.0/16")`},
		{"route with a string metric and an unknown key",
			[]string{"a.toml", gre1 + route + "metric = \"10\"\ngateway = \"10.0.0.2\"\n"},
			a + `:8:1: tunnel "gre1" route #1: metric: must be an integer, not a string ("10")
` + a + `:9:1: tunnel "gre1" route #1: unknown key "gateway"`},
		{"inline route with a bad via",
			[]string{"a.toml", gre1 + "route = [{ to = \"10.1.0.0/16\", via = 10 }]\n"},
			a + `:6:1: tunnel "gre1" route #1: via: must be a string, not an integer (10)`},
		{"[tunnel] with single brackets",
			[]string{"a.toml", strings.Replace(gre1, "[[tunnel]]", "[tunnel]", 1)},
			a + `:1:1: tunnel: must be [[tunnel]] tables (double brackets), not a single table`},
		{"unknown top-level key and a bad tunnel",
			[]string{"a.toml", "debug = true\n" + strings.Replace(gre1, "eth1", "eth 1", 1)},
			a + `:1:1: unknown key "debug" (the file holds [[tunnel]] tables and a [policy] table)
` + a + `:4:1: tunnel "gre1": underlay: "eth 1" contains a space, which Linux forbids in interface names`},
		{"the same key twice",
			[]string{"a.toml", gre1 + "ttl = 64\nttl = 65\n"},
			a + `:7:10: Key 'tunnel.ttl' has already been defined.`},
		{"the same inner address on two tunnels",
			[]string{"a.toml", gre1 + strings.Replace(gre2, "10.0.0.5/30", "10.0.0.1/30", 1)},
			a + `:10:1: tunnel "gre2": address: 10.0.0.1 is already the address of tunnel "gre1" (` + a + `:5:1)`},
		{"the same inner address in two files",
			[]string{"a.toml", gre1, "b.toml", strings.Replace(gre2, "10.0.0.5/30", "10.0.0.1/24", 1)},
			b + `:5:1: tunnel "gre2": address: 10.0.0.1 is already the address of tunnel "gre1" (` + a + `:5:1)`},
		{"overlapping inner subnets",
			[]string{"a.toml", gre1 + strings.Replace(gre2, "10.0.0.5/30", "10.0.0.5/29", 1)},
			a + `:10:1: tunnel "gre2": address: 10.0.0.5/29 overlaps 10.0.0.1/30 of tunnel "gre1" (` + a + `:5:1): the kernel would reach the shared addresses through one of them only`},
		{"the same IPv6 inner address in two files",
			[]string{"a.toml", strings.Replace(gre1, `"10.0.0.1/30"`, `"10.0.0.1/30", "fd00::1/64"`, 1), "b.toml", strings.Replace(gre2, `"10.0.0.5/30"`, `"fd00::1/126"`, 1)},
			b + `:5:1: tunnel "gre2": address: fd00::1 is already the address of tunnel "gre1" (` + a + `:5:1)`},
		{"the same route on two tunnels",
			[]string{"a.toml", gre1 + route + gre2 + route},
			a + `:14:1: tunnel "gre2" route #1: to: 10.1.0.0/16 (table main, metric 0) is also routed through tunnel "gre1" (` + a + `:7:1); each up would take the route from the other`},
		{"the same route in two files, table 100",
			[]string{"a.toml", gre1 + route + "table = 100\n", "b.toml", gre2 + route + "table = 100\n"},
			b + `:7:1: tunnel "gre2" route #1: to: 10.1.0.0/16 (table 100, metric 0) is also routed through tunnel "gre1" (` + a + `:7:1); each up would take the route from the other`},
		{"the same route twice in one tunnel",
			[]string{"a.toml", gre1 + route + route + "table = 254\n"},
			a + `:9:1: tunnel "gre1" route #2: to: 10.1.0.0/16 (table main, metric 0) is already route #1 of this tunnel (` + a + `:7:1)`},
		{"the same route at other metrics is a backup, not a conflict",
			[]string{"a.toml", gre1 + route + gre2 + route + "metric = 100\n"},
			""},
		{"the same route in other tables is no conflict",
			[]string{"a.toml", gre1 + route + gre2 + route + "table = 100\n"},
			""},
		{"a route to the tunnel's own remote",
			[]string{"a.toml", gre1 + "[[tunnel.route]]\nto = \"203.0.113.0/24\"\n"},
			a + `:7:1: tunnel "gre1" route #1: to: 203.0.113.0/24 contains the tunnel's own remote 203.0.113.1: the encapsulated packets would be routed back into the tunnel (a routing loop)`},
		{"a route to the remote beside default_route is a loop too: there is no pin, the main table routes the outer packets",
			[]string{"a.toml", gre1 + "default_route = true\n[[tunnel.route]]\nto = \"203.0.113.0/24\"\n"},
			a + `:8:1: tunnel "gre1" route #1: to: 203.0.113.0/24 contains the tunnel's own remote 203.0.113.1: the encapsulated packets would be routed back into the tunnel (a routing loop)`},
		{"a route to the remote in another table is no loop",
			[]string{"a.toml", gre1 + "[[tunnel.route]]\nto = \"203.0.113.0/24\"\ntable = 100\n"},
			""},
		{"a route to another tunnel's remote is no loop",
			[]string{"a.toml", gre1 + "[[tunnel.route]]\nto = \"203.0.113.2/32\"\n" + gre2},
			""},
		{"a literal local that is not on this host",
			[]string{"a.toml", gre1 + "local = \"198.51.100.7\"\n"},
			a + `:6:1: warning: tunnel "gre1": local: 198.51.100.7 is not an address of this host (up fails until it is)`},
		{"a literal local that is on this host",
			[]string{"a.toml", gre1 + "local = \"198.51.100.1\"\n"},
			""},
		{"a route that shadows a connected one",
			[]string{"a.toml", gre1 + "[[tunnel.route]]\nto = \"192.168.1.128/25\"\n"},
			a + `:7:1: warning: tunnel "gre1" route #1: to: 192.168.1.128/25 shadows 192.168.1.0/24, connected on eth0: those hosts would be reached through the tunnel, not eth0`},
		{"a route that covers a connected one shadows nothing",
			[]string{"a.toml", gre1 + "[[tunnel.route]]\nto = \"192.168.0.0/16\"\n"},
			""},
		{"errors and warnings together",
			[]string{"a.toml", gre1 + "local = \"198.51.100.7\"\n" + gre2 + "ttl = \"64\"\n"},
			a + `:12:1: tunnel "gre2": ttl: must be an integer, not a string ("64")
` + a + `:6:1: warning: tunnel "gre1": local: 198.51.100.7 is not an address of this host (up fails until it is)`},
		{"a conflict and a type error in different files",
			[]string{"a.toml", gre1 + route + "metric = [1]\n", "b.toml", strings.Replace(gre2, "10.0.0.5/30", "10.0.0.2/30", 1)},
			a + `:8:1: tunnel "gre1" route #1: metric: must be an integer, not an array
` + b + `:5:1: tunnel "gre2": address: 10.0.0.2/30 overlaps 10.0.0.1/30 of tunnel "gre1" (` + a + `:5:1): the kernel would reach the shared addresses through one of them only`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := checkOutput(tc.files...); got != tc.want {
				t.Errorf("check:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}
