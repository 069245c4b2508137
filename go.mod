module github.com/gre-hook/gre-hook

go 1.19

require (
	github.com/BurntSushi/toml v1.5.0
	github.com/coreos/go-iptables v0.8.0
	github.com/vishvananda/netlink v1.3.0
	golang.org/x/sys v0.10.0
)

require github.com/vishvananda/netns v0.0.5 // for a netlink socket of our own (rtnl route requests)
