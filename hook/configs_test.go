package hook

import "github.com/gre-hook/gre-hook/hook/internal/fixture"

// Configs the state tests apply, all for underlay eth1.

// site1 is configs/site1.toml.
const site1 = `
[[tunnel]]
name = "gre-site2"
underlay = "eth1"
mode = "gre"
local = "198.51.100.1"
remote = "203.0.113.1"
ttl = 255
multicast = true
address = ["10.0.0.1/30"]
mss = "pmtu"

[[tunnel.route]]
to = "192.168.2.0/24"
`

// site1Edited moves site1's tunnel to another remote, address and route.
var site1Edited = fixture.Config(fixture.Site2().Set("remote", `"203.0.113.2"`).Set("address", `["10.0.0.5/30"]`).Routing("192.168.3.0/24"))

// many has three tunnels of different kinds.
var many = fixture.Config(fixture.Site2()) + `
[[tunnel]]
name = "gre-v6"
underlay = "eth1"
mode = "ip6gre"
local = "auto"
remote = "2001:db8:2::1"
key = 42
address = ["10.0.1.0/31", "fd00::1/127"]
mss = 1400

[[tunnel.route]]
to = "fd10::/48"

[[tunnel.route]]
to = "192.168.10.0/24"
table = 100
metric = 5

[[tunnel]]
name = "tap-lab"
underlay = "eth1"
mode = "gretap"
remote = "203.0.113.9"
ikey = 7
okey = 8
multicast = false
pmtudisc = false
ttl = 0
mss = "off"
address = ["10.0.2.1/24"]
up_command = ["/usr/local/bin/lab-up", "x"]
down_command = ["/usr/local/bin/lab-down"]
`

// defaultRoute sends all traffic through the tunnel.
const defaultRoute = `
[[tunnel]]
name = "gre-vpn"
underlay = "eth1"
remote = "203.0.113.5"
address = ["10.9.0.2/30"]
default_route = true
`
