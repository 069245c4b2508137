package config

import "testing"

// TestEndpointAddresses is the address policy (hook/addrpolicy) as check
// applies it to what the config gives literally: each remote and local
// refused, with its message, and those accepted.
func TestEndpointAddresses(t *testing.T) {
	tun := "[[tunnel]]\nname = \"gre1\"\nunderlay = \"eth1\"\n"
	for _, tc := range []struct {
		name, text, want string
	}{
		{"remote localhost", tun + "remote = \"localhost\"\n",
			`/etc/gre-hook/t.toml:4:1: tunnel "gre1": remote: "localhost" always names this host itself, a loopback address (RFC 6761), which cannot be a tunnel's remote`},
		{"remote under localhost", tun + "remote = \"peer.localhost.\"\n",
			`/etc/gre-hook/t.toml:4:1: tunnel "gre1": remote: "peer.localhost." always names this host itself, a loopback address (RFC 6761), which cannot be a tunnel's remote`},
		{"remote 0.0.0.0", tun + "remote = \"0.0.0.0\"\n",
			`/etc/gre-hook/t.toml:4:1: tunnel "gre1": remote: 0.0.0.0 is the unspecified address: a tunnel with it takes GRE from, or sends it to, any address`},
		{"remote loopback", tun + "remote = \"127.0.0.1\"\n",
			`/etc/gre-hook/t.toml:4:1: tunnel "gre1": remote: 127.0.0.1 is a loopback address, this host itself`},
		{"remote multicast", tun + "remote = \"224.0.0.5\"\n",
			`/etc/gre-hook/t.toml:4:1: tunnel "gre1": remote: 224.0.0.5 is a multicast address`},
		{"remote broadcast", tun + "remote = \"255.255.255.255\"\n",
			`/etc/gre-hook/t.toml:4:1: tunnel "gre1": remote: 255.255.255.255 is the limited broadcast address`},
		{"remote ip6 loopback", tun + "mode = \"ip6gre\"\nremote = \"::1\"\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": remote: ::1 is a loopback address, this host itself`},
		{"local 0.0.0.0", tun + "remote = \"203.0.113.1\"\nlocal = \"0.0.0.0\"\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": local: 0.0.0.0 is the unspecified address: a tunnel with it takes GRE from, or sends it to, any address`},
		{"local loopback", tun + "remote = \"203.0.113.1\"\nlocal = \"127.0.0.1\"\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": local: 127.0.0.1 is a loopback address, this host itself`},
		{"local multicast", tun + "remote = \"203.0.113.1\"\nlocal = \"224.0.0.1\"\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": local: 224.0.0.1 is a multicast address`},
		{"local broadcast", tun + "remote = \"203.0.113.1\"\nlocal = \"255.255.255.255\"\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": local: 255.255.255.255 is the limited broadcast address`},
		{"local link-local v6", tun + "mode = \"ip6gre\"\nremote = \"2001:db8::2\"\nlocal = \"fe80::1\"\n",
			`/etc/gre-hook/t.toml:6:1: tunnel "gre1": local: fe80::1 is a link-local address, which a tunnel cannot be bound to`},
		{"local of the other family, remote a name", tun + "remote = \"peer.example.net\"\nlocal = \"2001:db8::1\"\n",
			`/etc/gre-hook/t.toml:5:1: tunnel "gre1": local: 2001:db8::1 is not an IPv4 address, which mode gre needs`},
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
	for _, ok := range []string{
		tun + "remote = \"peer.example.net\"\n",
		tun + "remote = \"localhost.example.net\"\n",
		tun + "remote = \"203.0.113.1\"\nlocal = \"198.51.100.1\"\n",
		tun + "remote = \"10.0.0.2\"\nlocal = \"10.0.0.1\"\n",
		tun + "mode = \"ip6gre\"\nremote = \"2001:db8::2\"\nlocal = \"2001:db8::1\"\n",
		tun + "remote = \"203.0.113.1\"\nlocal = \"auto\"\n",
	} {
		if _, errs := Parse(file, []byte(ok)); len(errs) != 0 {
			t.Errorf("%s: %v", ok, errs)
		}
	}
}
