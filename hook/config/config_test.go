package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/gre-hook/gre-hook/hook/gre"
)

const file = "/etc/gre-hook/t.toml"

// base is a minimal valid tunnel; tests append keys to it (lines 1-4).
const base = `[[tunnel]]
name = "gre1"
underlay = "eth1"
remote = "203.0.113.1"
`

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text, want string
	}{
		{"unknown key in tunnel", base + "colour = \"red\"\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": unknown key "colour"`},
		{"unknown key indented", base + "  colour = \"red\"\n",
			`/etc/gre-hook/t.toml:5:3: tunnel "gre1": unknown key "colour"`},
		{"unknown key in route", base + "address = [\"10.0.0.1/30\"]\n[[tunnel.route]]\nto = \"10.1.0.0/16\"\ngateway = \"10.0.0.2\"\n",
			`/etc/gre-hook/t.toml:8:1: tunnel "gre1" route #1: unknown key "gateway"`},
		{"unknown key at top level", "debug = true\n" + base,
			`/etc/gre-hook/t.toml:1:1: unknown key "debug" (the file holds [[tunnel]] tables and a [policy] table)`},
		{"unknown table", "\n[[tunnels]]\nname = \"x\"\n",
			`/etc/gre-hook/t.toml:2:1: unknown key "tunnels" (the file holds [[tunnel]] tables and a [policy] table)`},
		{"unknown plain table", "[global]\nx = 1\n" + base,
			`/etc/gre-hook/t.toml:1:1: unknown key "global" (the file holds [[tunnel]] tables and a [policy] table)`},
		{"wrong type ttl", base + "ttl = \"high\"\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": ttl: must be an integer, not a string ("high")`},
		{"wrong type address", base + "address = \"10.0.0.1/30\"\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": address: must be an array of strings, not a string; write ["10.0.0.1/30"]`},
		{"wrong type mss", base + "mss = 1.5\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": mss: must be "pmtu", "off" or a number of bytes, not a float (1.5)`},
		{"syntax", "[[tunnel]\nname = 1\n",
			`/etc/gre-hook/t.toml:2:9: expected end of table array name delimiter ']', but got '\n' instead`},
		{"nul bytes", base + "\x00",
			`/etc/gre-hook/t.toml: not a text file (contains NUL bytes)`},
		{"address without prefix", base + "address = [\"10.0.0.1\"]\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": address: "10.0.0.1" is not an address with a prefix length, e.g. 10.0.0.1/30`},
		{"network address", base + "address = [\"10.0.0.0/30\"]\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": address: 10.0.0.0/30 is the network or broadcast address of its subnet`},
		{"two IPv4 addresses", base + "address = [\"10.0.0.1/30\", \"10.0.1.1/30\"]\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": address: at most one IPv4 and one IPv6 address`},
		{"bad local", base + "local = \"198.51.100.300\"\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": local: "198.51.100.300" is not an IP address`},
		{"bad remote", "[[tunnel]]\nname = \"gre1\"\nunderlay = \"eth1\"\nremote = \"203.0.113.300\"\n",
			`/etc/gre-hook/t.toml:4:1: tunnel "gre1": remote: "203.0.113.300" is not an IP address`},
		{"bad remote name", "[[tunnel]]\nname = \"gre1\"\nunderlay = \"eth1\"\nremote = \"site2..example.org\"\n",
			`/etc/gre-hook/t.toml:4:1: tunnel "gre1": remote: "site2..example.org" is not a DNS name: each label between dots must be 1 to 63 characters`},
		{"remote name with a space", "[[tunnel]]\nname = \"gre1\"\nunderlay = \"eth1\"\nremote = \"site2 example.org\"\n",
			`/etc/gre-hook/t.toml:4:1: tunnel "gre1": remote: "site2 example.org" is neither an IP address nor a DNS name (' ' is not allowed in a name)`},
		{"remote name label with a dash", "[[tunnel]]\nname = \"gre1\"\nunderlay = \"eth1\"\nremote = \"-site2.example.org\"\n",
			`/etc/gre-hook/t.toml:4:1: tunnel "gre1": remote: "-site2.example.org" is not a DNS name: a label may not start or end with '-'`},
		{"resolve_interval zero", base + "resolve_interval = 0\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": resolve_interval: 0 is out of range 1-86400 seconds`},
		{"keepalive interval zero", base + "keepalive = { interval = 0, retries = 3 }\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": keepalive: interval 0 is out of range 1-3600 seconds`},
		{"keepalive interval too long", base + "keepalive = { interval = 3601 }\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": keepalive: interval 3601 is out of range 1-3600 seconds`},
		{"keepalive retries", base + "keepalive = { interval = 1, retries = 256 }\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": keepalive: retries 256 is out of range 1-255`},
		{"keepalive float", base + "keepalive = { interval = 0.5 }\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": keepalive: interval must be an integer, not a float (0.5)`},
		{"keepalive unknown key", base + "keepalive = { interval = 1, timeout = 3 }\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": keepalive: unknown key "timeout"`},
		{"keepalive on gretap", base + "mode = \"gretap\"\nkeepalive = { interval = 1 }\n",
			`/etc/gre-hook/t.toml:6:1: tunnel "gre1": keepalive: works only in mode gre (IPv4 outer header, GRE protocol 0x0800); a gretap peer does not answer Cisco keepalives`},
		{"keepalive_reflect on ip6gre", "[[tunnel]]\nname = \"gre1\"\nunderlay = \"eth1\"\nmode = \"ip6gre\"\nremote = \"2001:db8::2\"\nkeepalive_reflect = true\n",
			`/etc/gre-hook/t.toml:6:1: tunnel "gre1": keepalive_reflect: works only in mode gre (IPv4 outer header, GRE protocol 0x0800); a ip6gre peer does not answer Cisco keepalives`},
		{"missing remote", "[[tunnel]]\nname = \"gre1\"\nunderlay = \"eth1\"\n",
			`/etc/gre-hook/t.toml:1:1: tunnel "gre1": remote: is required`},
		{"local and remote of different families", base + "local = \"2001:db8::1\"\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": local: 2001:db8::1 and remote 203.0.113.1 are of different address families`},
		{"remote family not matching mode", "[[tunnel]]\nname = \"gre1\"\nunderlay = \"eth1\"\nmode = \"ip6gre\"\nremote = \"203.0.113.1\"\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": remote: 203.0.113.1 is not an IPv6 address, which mode ip6gre needs (use mode gre)`},
		{"IPv6 remote in gretap", "[[tunnel]]\nname = \"gre1\"\nunderlay = \"eth1\"\nmode = \"gretap\"\nremote = \"2001:db8::2\"\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": remote: 2001:db8::2 is not an IPv4 address, which mode gretap needs (use mode ip6gretap)`},
		{"bad mode", base + "mode = \"ipip\"\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": mode: "ipip" is not one of gre, gretap, ip6gre, ip6gretap`},
		{"local equals remote", base + "local = \"203.0.113.1\"\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": local: is the same address as remote`},
		{"name too long", "[[tunnel]]\nname = \"gre-very-long-name\"\nunderlay = \"eth1\"\nremote = \"203.0.113.1\"\n",
			`/etc/gre-hook/t.toml:2:1: tunnel "gre-very-long-name": name: "gre-very-long-name" is 18 bytes; Linux allows at most 15`},
		{"name of 16 bytes", "[[tunnel]]\nname = \"abcdefghijklmnop\"\nunderlay = \"eth1\"\nremote = \"203.0.113.1\"\n",
			`/etc/gre-hook/t.toml:2:1: tunnel "abcdefghijklmnop": name: "abcdefghijklmnop" is 16 bytes; Linux allows at most 15`},
		{"name missing", "[[tunnel]]\nunderlay = \"eth1\"\nremote = \"203.0.113.1\"\n",
			`/etc/gre-hook/t.toml:1:1: tunnel #1: name: must not be empty`},
		{"fallback name", "[[tunnel]]\nname = \"gre0\"\nunderlay = \"eth1\"\nremote = \"203.0.113.1\"\n",
			`/etc/gre-hook/t.toml:2:1: tunnel "gre0": name: "gre0" is reserved by the kernel for its fallback tunnel device`},
		{"name with slash", "[[tunnel]]\nname = \"a/b\"\nunderlay = \"eth1\"\nremote = \"203.0.113.1\"\n",
			`/etc/gre-hook/t.toml:2:1: tunnel "a/b": name: "a/b" contains '/', which Linux forbids in interface names`},
		{"own underlay", "[[tunnel]]\nname = \"gre1\"\nunderlay = \"gre1\"\nremote = \"203.0.113.1\"\n",
			`/etc/gre-hook/t.toml:3:1: tunnel "gre1": underlay: a tunnel cannot be its own underlay`},
		{"route via not on tunnel", base + "address = [\"10.0.0.1/30\"]\n[[tunnel.route]]\nto = \"10.1.0.0/16\"\nvia = \"10.9.9.9\"\n",
			`/etc/gre-hook/t.toml:8:1: tunnel "gre1" route #1: via: 10.9.9.9 is not on the tunnel: it is in none of the tunnel's address prefixes`},
		{"route via own address", base + "address = [\"10.0.0.1/30\"]\n[[tunnel.route]]\nto = \"10.1.0.0/16\"\nvia = \"10.0.0.1\"\n",
			`/etc/gre-hook/t.toml:8:1: tunnel "gre1" route #1: via: 10.0.0.1 is the tunnel's own address`},
		{"route without peer", base + "address = [\"10.0.0.1/24\"]\n[[tunnel.route]]\nto = \"10.1.0.0/16\"\n",
			`/etc/gre-hook/t.toml:6:1: tunnel "gre1" route #1: via: no IPv4 tunnel peer to route 10.1.0.0/16 through: set via, or a peer, or a /30 (/127) address`},
		{"route host bits", base + "address = [\"10.0.0.1/30\"]\n[[tunnel.route]]\nto = \"10.1.0.1/16\"\n",
			`/etc/gre-hook/t.toml:7:1: tunnel "gre1" route #1: to: 10.1.0.1/16 has host bits set; did you mean 10.1.0.0/16?`},
		{"route default", base + "address = [\"10.0.0.1/30\"]\n[[tunnel.route]]\nto = \"0.0.0.0/0\"\n",
			`/etc/gre-hook/t.toml:7:1: tunnel "gre1" route #1: to: 0.0.0.0/0 is a default route; use default_route = true, which keeps the main table's default as the backup`},
		{"route table main", base + "address = [\"10.0.0.1/30\"]\n[[tunnel.route]]\nto = \"10.1.0.0/16\"\ntable = 255\n",
			`/etc/gre-hook/t.toml:8:1: tunnel "gre1" route #1: table: 255 is not a usable routing table (1-4294967295, not 253 or 255)`},
		{"route in gre-hook's table", base + "address = [\"10.0.0.1/30\"]\n[[tunnel.route]]\nto = \"10.1.0.0/16\"\ntable = 18247\n",
			`/etc/gre-hook/t.toml:8:1: tunnel "gre1" route #1: table: 18247 is gre-hook's own table for the default routes of default_route tunnels ([policy] table); use another`},
		{"key and ikey", base + "key = 5\nikey = 6\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": key: set either key, or ikey and okey, not both`},
		{"key and okey", base + "key = 5\nokey = 6\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": key: set either key, or ikey and okey, not both`},
		{"key zero", base + "key = 0\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": key: 0 is out of range 1-4294967295`},
		{"mss too small", base + "mss = 100\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": mss: 100 is out of range 536-65495`},
		{"mss too large", base + "mss = 65496\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": mss: 65496 is out of range 536-65495`},
		{"mss word", base + "mss = \"auto\"\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": mss: "auto" is not "pmtu", "off" or a number of bytes`},
		{"default_route without peer", base + "default_route = true\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": default_route: needs a tunnel peer: give an address such as 10.0.0.1/30, or a peer`},
		{"relative up_command", base + "up_command = [\"ip\", \"link\"]\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": up_command: "ip" must be an absolute path: the command runs without a shell and without PATH lookup`},
		{"relative down_command", base + "down_command = [\"./down.sh\"]\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": down_command: "./down.sh" must be an absolute path: the command runs without a shell and without PATH lookup`},
		{"ttl out of range", base + "ttl = 300\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": ttl: 300 is out of range 0-255 (0 inherits the inner packet's TTL)`},
		{"pmtudisc off with ttl", base + "pmtudisc = false\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": pmtudisc: false needs ttl = 0 (inherit); the kernel refuses a fixed ttl without pmtudisc`},
		{"mtu too small for IPv6", base + "address = [\"fd00::1/127\"]\nmtu = 1000\n",
			`/etc/gre-hook/t.toml:6:1: tunnel "gre1": mtu: 1000 is out of range 1280-65535`},
		{"peer outside", base + "address = [\"10.0.0.1/24\"]\npeer = [\"10.9.0.1\"]\n",
			`/etc/gre-hook/t.toml:6:1: tunnel "gre1": peer: 10.9.0.1 is not in any of the tunnel's address prefixes`},
		{"two errors at once", base + "ttl = 300\nmss = 1\n",
			"/etc/gre-hook/t.toml:5:1: tunnel \"gre1\": ttl: 300 is out of range 0-255 (0 inherits the inner packet's TTL)\n" +
				"/etc/gre-hook/t.toml:6:1: tunnel \"gre1\": mss: 1 is out of range 536-65495"},
		{"second tunnel", base + "[[tunnel]]\nname = \"gre2\"\nunderlay = \"eth1\"\nremote = \"203.0.113.2\"\n  ttl = -1\n",
			`/etc/gre-hook/t.toml:9:3: tunnel "gre2": ttl: -1 is out of range 0-255 (0 inherits the inner packet's TTL)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts, errs := Parse(file, []byte(tc.text))
			if len(errs) == 0 {
				t.Fatalf("no error; got %+v", ts)
			}
			if got := errs.Error(); got != tc.want {
				t.Errorf("error:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	ts, errs := Parse(file, []byte(base))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	want := Tunnel{Params: gre.Params{Remote: netip.MustParseAddr("203.0.113.1"), TTL: 255, PMTUDisc: true},
		Name: "gre1", Underlay: "eth1", Mode: ModeGRE,
		Multicast: true, MSS: MSSPMTU, ResolveInterval: 300, File: file, Line: 1, Col: 1,
	}
	if len(ts) != 1 || !reflect.DeepEqual(ts[0], want) {
		t.Errorf("got  %+v\nwant %+v", ts, want)
	}
}

func TestParseValues(t *testing.T) {
	ts, errs := Parse(file, []byte(`
[[tunnel]]
name = "t1"
underlay = "eth1"
mode = "ip6gretap"
local = "2001:db8::1"
remote = "::ffff:203.0.113.1"
`))
	if len(errs) == 0 {
		t.Errorf("mapped IPv4 remote accepted for ip6gretap: %+v", ts)
	}
	ts, errs = Parse(file, []byte(`
[[tunnel]]
name = "t1"
underlay = "eth1"
mode = "ip6gretap"
local = "auto"
remote = "2001:db8::2"
ttl = 0
pmtudisc = false
ikey = 1
okey = 4294967295
mtu = 1400
multicast = false
address = ["10.0.0.2/31", "fd00::/127"]
mss = 1300
up_command = ["/bin/true", "a b"]

[[tunnel.route]]
to = "10.1.0.0/16"
metric = 7
table = 100

[[tunnel.route]]
to = "fd10::/48"
via = "fd00::1"
`))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	want := Tunnel{Params: gre.Params{Remote: netip.MustParseAddr("2001:db8::2"), TTL: 0, PMTUDisc: false, IKey: 1, OKey: 4294967295},
		Name: "t1", Underlay: "eth1", Mode: ModeIP6GRETap,
		MTU: 1400, Multicast: false,
		Addresses: []netip.Prefix{netip.MustParsePrefix("10.0.0.2/31"), netip.MustParsePrefix("fd00::/127")},
		Peers:     []netip.Addr{netip.MustParseAddr("10.0.0.3"), netip.MustParseAddr("fd00::1")},
		Routes: []Route{
			{To: netip.MustParsePrefix("10.1.0.0/16"), Via: netip.MustParseAddr("10.0.0.3"), Metric: 7, Table: 100},
			{To: netip.MustParsePrefix("fd10::/48"), Via: netip.MustParseAddr("fd00::1")},
		},
		MSS: MSSFixed, MSSValue: 1300, UpCommand: []string{"/bin/true", "a b"},
		ResolveInterval: 300, File: file, Line: 2, Col: 1,
	}
	if !reflect.DeepEqual(ts[0], want) {
		t.Errorf("got  %+v\nwant %+v", ts[0], want)
	}
	if !ts[0].Carries6() {
		t.Error("Carries6 false for a tunnel with an IPv6 address")
	}
	for _, m := range []string{"off", "pmtu"} {
		ts, errs := Parse(file, []byte(base+"mss = \""+m+"\"\n"))
		if len(errs) > 0 || string(ts[0].MSS) != m {
			t.Errorf("mss %q: %v %v", m, ts, errs)
		}
	}
}

func TestKeepaliveAndNames(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       func(*Tunnel) bool
	}{
		{"keepalive given", "keepalive = { interval = 1, retries = 3 }\n",
			func(t *Tunnel) bool { return *t.Keepalive == Keepalive{1, 3} && t.Reflects() && !t.KeepaliveReflect }},
		{"keepalive defaults", "keepalive = {}\n",
			func(t *Tunnel) bool { return *t.Keepalive == Keepalive{10, 3} }},
		{"keepalive as a table", "[tunnel.keepalive]\ninterval = 5\n",
			func(t *Tunnel) bool { return *t.Keepalive == Keepalive{5, 3} }},
		{"reflect only", "keepalive_reflect = true\n",
			func(t *Tunnel) bool { return t.Keepalive == nil && t.KeepaliveReflect && t.Reflects() }},
		{"neither", "",
			func(t *Tunnel) bool { return t.Keepalive == nil && !t.Reflects() }},
		{"resolve_interval", "resolve_interval = 1\n",
			func(t *Tunnel) bool { return t.ResolveInterval == 1 && t.RemoteName == "" }},
	} {
		ts, errs := Parse(file, []byte(base+tc.text))
		if len(errs) > 0 || len(ts) != 1 || !tc.want(&ts[0]) {
			t.Errorf("%s: %+v %v", tc.name, ts, errs)
		}
	}
	for _, name := range []string{"site2.test", "site2.example.net.", "gw-2.example.net", "site2", "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.example"} {
		ts, errs := Parse(file, []byte("[[tunnel]]\nname = \"gre1\"\nunderlay = \"eth1\"\nremote = \""+name+"\"\n"))
		if len(errs) > 0 || ts[0].RemoteName != name || ts[0].Remote.IsValid() {
			t.Errorf("remote %q: %+v %v", name, ts, errs)
		}
	}
	// Two tunnels naming different hosts do not overlap; the same host
	// twice, in another spelling, does.
	two := func(a, b string) string {
		return "[[tunnel]]\nname = \"gre1\"\nunderlay = \"eth1\"\nremote = \"" + a + "\"\n" +
			"[[tunnel]]\nname = \"gre2\"\nunderlay = \"eth1\"\nremote = \"" + b + "\"\n"
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		a, b    string
		overlap bool
	}{{"site2.test", "site3.test", false}, {"site2.test", "Site2.Test.", true}} {
		f := filepath.Join(dir, "t.toml")
		if err := os.WriteFile(f, []byte(two(tc.a, tc.b)), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load([]string{f})
		if (err != nil) != tc.overlap || (err != nil && !strings.Contains(err.Error(), "overlaps")) {
			t.Errorf("%s and %s: %v", tc.a, tc.b, err)
		}
	}
}

func TestDefaultPeer(t *testing.T) {
	for _, tc := range []struct {
		prefix, peer, brd string
	}{
		{"10.0.0.1/30", "10.0.0.2", "10.0.0.3"},
		{"10.0.0.2/30", "10.0.0.1", "10.0.0.3"},
		{"10.0.0.0/31", "10.0.0.1", ""},
		{"10.0.0.1/31", "10.0.0.0", ""},
		{"fd00::/127", "fd00::1", ""},
		{"fd00::1/127", "fd00::", ""},
		{"10.0.0.1/24", "", "10.0.0.255"},
		{"10.0.0.1/32", "", ""},
		{"fd00::1/64", "", ""},
	} {
		p := netip.MustParsePrefix(tc.prefix)
		peer, ok := DefaultPeer(p)
		if got := addrOr(peer, ok); got != tc.peer {
			t.Errorf("DefaultPeer(%s) = %q, want %q", p, got, tc.peer)
		}
		b, ok := Broadcast(p)
		if got := addrOr(b, ok); got != tc.brd {
			t.Errorf("Broadcast(%s) = %q, want %q", p, got, tc.brd)
		}
	}
}

func addrOr(a netip.Addr, ok bool) string {
	if !ok {
		return ""
	}
	return a.String()
}

func writeFile(t *testing.T, path, text string, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadMergesAndReportsAll(t *testing.T) {
	d := t.TempDir()
	a := writeFile(t, filepath.Join(d, "a.toml"), base+base, 0o600)
	b := writeFile(t, filepath.Join(d, "b.toml"), "\n"+base+"ttl = \"x\"\n", 0o600)
	c := writeFile(t, filepath.Join(d, "c.toml"), "\n\n"+base, 0o600)
	e := writeFile(t, filepath.Join(d, "e.toml"), "[[tunnel]]\nname = \"gre2\"\nunderlay = \"eth1\"\nremote = \"203.0.113.1\"\n", 0o600)
	_, err := Load([]string{a, b, c, e})
	if err == nil {
		t.Fatal("no error")
	}
	// b's gre1 has an error of its own, and its name is taken all the same.
	want := b + `:6:1: tunnel "gre1": ttl: must be an integer, not a string ("x")
` + a + `:5:1: tunnel "gre1": name already used at ` + a + `:1
` + b + `:2:1: tunnel "gre1": name already used at ` + a + `:1
` + c + `:3:1: tunnel "gre1": name already used at ` + a + `:1
` + e + `:1:1: tunnel "gre2": overlaps tunnel "gre1" (` + a + `:1): same local (auto on eth1), remote 203.0.113.1 and key 0; give one of them a key`
	if err.Error() != want {
		t.Errorf("error:\n got %s\nwant %s", err, want)
	}
	if _, ok := err.(Errors); !ok || len(err.(Errors)) != 5 {
		t.Errorf("want 5 errors in Errors, got %T %v", err, err)
	}

	// Overlap with explicit locals, and no overlap once one has a key.
	f := writeFile(t, filepath.Join(d, "f.toml"), base+"local = \"198.51.100.1\"\n[[tunnel]]\nname = \"gre2\"\nunderlay = \"eth2\"\nremote = \"203.0.113.1\"\nlocal = \"198.51.100.1\"\n", 0o600)
	_, err = Load([]string{f})
	if want := f + `:6:1: tunnel "gre2": overlaps tunnel "gre1" (` + f + `:1): same local (198.51.100.1), remote 203.0.113.1 and key 0; give one of them a key`; err == nil || err.Error() != want {
		t.Errorf("error:\n got %v\nwant %s", err, want)
	}
	g := writeFile(t, filepath.Join(d, "g.toml"), base+"local = \"198.51.100.1\"\n[[tunnel]]\nname = \"gre2\"\nunderlay = \"eth2\"\nremote = \"203.0.113.1\"\nlocal = \"198.51.100.1\"\nkey = 2\n", 0o600)
	if _, err := Load([]string{g}); err != nil {
		t.Errorf("keyed tunnels refused: %v", err)
	}

	// Merged in order.
	h := writeFile(t, filepath.Join(d, "h.toml"), "[[tunnel]]\nname = \"gre3\"\nunderlay = \"eth2\"\nremote = \"203.0.113.3\"\n", 0o600)
	cfg, err := Load([]string{c, h})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Tunnels) != 2 || cfg.Tunnels[0].Name != "gre1" || cfg.Tunnels[1].Name != "gre3" {
		t.Errorf("merged tunnels: %+v", cfg.Tunnels)
	}
	if got := cfg.For("eth2"); len(got) != 1 || got[0].Name != "gre3" {
		t.Errorf("For(eth2) = %+v", got)
	}
	if _, err := Load([]string{filepath.Join(d, "missing.toml")}); err == nil || !strings.Contains(err.Error(), "reading config: open ") {
		t.Errorf("missing file: %v", err)
	}
}

func TestSeedConfigs(t *testing.T) {
	for _, f := range []string{"../../configs/site1.toml", "../../configs/site2.toml"} {
		cfg, err := Load([]string{f})
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(cfg.Tunnels) != 1 || len(cfg.Tunnels[0].Routes) != 1 {
			t.Fatalf("%s: %+v", f, cfg.Tunnels)
		}
	}
}

func TestReadPaths(t *testing.T) {
	d := t.TempDir()
	a := writeFile(t, filepath.Join(d, "b.toml"), base, 0o600)
	writeFile(t, filepath.Join(d, "a.toml"), strings.Replace(base, "gre1", "gre2", 1)+"key = 2\n", 0o600)
	writeFile(t, filepath.Join(d, "notes.txt"), "", 0o600)
	writeFile(t, filepath.Join(d, ".hidden.toml"), "", 0o600)
	os.Mkdir(filepath.Join(d, "sub.toml"), 0o700)

	cfg, err := Read(a, true)
	if err != nil || !reflect.DeepEqual(cfg.Files, []string{a}) {
		t.Errorf("Read(file) = %v, %v", cfg, err)
	}
	cfg, err = Read(d, true)
	if want := []string{filepath.Join(d, "a.toml"), filepath.Join(d, "b.toml")}; err != nil || !reflect.DeepEqual(cfg.Files, want) {
		t.Errorf("Read(dir) = %v, %v; want files %v", cfg, err, want)
	}
	if _, err := Read(filepath.Join(d, "nope"), true); err == nil || !strings.Contains(err.Error(), "reading config: open "+filepath.Join(d, "nope")+": no such file or directory") {
		t.Errorf("Read(missing) = %v", err)
	}
	if _, err := read(filepath.Join(d, "nope"), testTrust().open); err == nil || !strings.Contains(err.Error(), "reading config: lstat "+filepath.Join(d, "nope")+": no such file or directory") {
		t.Errorf("Read(missing), checked = %v", err)
	}
	// The defaults are optional: where neither exists, no files and no error.
	if _, err := os.Stat(DefaultFile); os.IsNotExist(err) {
		if _, err := os.Stat(DefaultDir); os.IsNotExist(err) {
			cfg, err := Read("", false)
			if err != nil || len(cfg.Files) != 0 {
				t.Errorf("Read(\"\") without defaults = %v, %v", cfg, err)
			}
		}
	}
}

// A config file far larger than any config (here a sparse one of 1 GiB)
// is refused by its size, with its name, before it is read.
func TestReadRefusesAHugeFile(t *testing.T) {
	p := writeFile(t, filepath.Join(t.TempDir(), "huge.toml"), base, 0o600)
	if err := os.Truncate(p, 1<<30); err != nil {
		t.Fatal(err)
	}
	_, err := Read(p, true)
	if want := "reading config: " + p + ": larger than a config can be (16 MiB)"; err == nil || err.Error() != want {
		t.Errorf("Read(1 GiB file) = %v, want %q", err, want)
	}
}
