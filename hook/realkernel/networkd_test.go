//go:build realkernel

package realkernel

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// netplanYAML is the underlay as an Ubuntu Server's netplan has it: a
// static address and the default route, rendered for systemd-networkd.
const netplanYAML = `network:
  version: 2
  renderer: networkd
  ethernets:
    eth1:
      addresses: [%s/24]
      routes:
        - to: default
          via: %s
`

// netplanShims stand in for the parts of `netplan apply` that talk to
// systemd as PID 1, which the guest does not run: daemon-reload and the
// start and stop of netplan's own helper units (none here), and udev's
// trigger and settle (no udev runs). What apply does to networkd itself,
// `networkctl reload` and `networkctl reconfigure`, is real.
var netplanShims = map[string]string{
	"systemctl": `#!/bin/sh
case "$1" in
daemon-reload|start|stop) exit 0 ;;
--quiet) [ "$2" = is-active ] && exit 3 ;;
is-active) exit 3 ;;
esac
echo "systemctl shim: $* is not something netplan apply was seen to need" >&2
exit 1
`,
	"udevadm": `#!/bin/sh
case "$1" in
trigger|settle) exit 0 ;;
esac
exec /bin/udevadm "$@"
`,
}

// newNetworkdRouter starts an Ubuntu Server's network stack in r: its own
// system bus, netplan's YAML for eth1 rendered by `netplan generate`,
// systemd-networkd, and networkd-dispatcher as its unit starts it.
func newNetworkdRouter(t *testing.T, ns *netns, addr, gw string) *daemonRouter {
	t.Helper()
	r := newDaemonRouter(t, ns, map[string]string{"/run/dbus": "", "/run/systemd": "", "/etc/netplan": "", "/run/gre-hook-shims": ""})
	yaml := filepath.Join(r.dir, "etc_netplan", "10-underlay.yaml")
	if err := os.WriteFile(yaml, []byte(fmt.Sprintf(netplanYAML, addr, gw)), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, body := range netplanShims {
		if err := os.WriteFile(filepath.Join(r.dir, "run_gre-hook-shims", name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r.must("netplan", "generate")
	if out := r.must("cat", "/run/systemd/network/10-netplan-eth1.network"); !strings.Contains(out, "Name=eth1") {
		t.Fatalf("netplan generate wrote:\n%s", out)
	}
	r.startBus()
	r.start("systemd-networkd", "/lib/systemd/systemd-networkd")
	// As Debian's unit runs it, with /etc/default/networkd-dispatcher's
	// --run-startup-triggers.
	r.start("networkd-dispatcher", "networkd-dispatcher", "--run-startup-triggers")
	return r
}

// networkState is eth1's state as networkctl reports it: "routable
// configured" and so on.
func networkState(r *daemonRouter) string {
	out, _ := r.try("networkctl", "list", "--no-pager", "--no-legend", "eth1")
	f := strings.Fields(out)
	if len(f) < 5 {
		return strings.TrimSpace(out)
	}
	return f[3] + " " + f[4]
}

// policyObjects are rules and routes of the kinds gre-hook makes with
// protocol 176 (ip rules, one selecting a table of its own; a route in that
// table and a host route in main, both via the underlay's gateway), made by
// hand on r1. Seen on Debian 12's systemd 252 with its defaults:
// networkctl reconfigure and netplan apply remove every one of them. The
// package's networkd.conf.d drop-in (ManageForeignRoutingPolicyRules=no,
// ManageForeignRoutes=no) keeps the rules, and the routes at a restart of
// networkd; a reconfigure still loses the routes via eth1, because networkd
// removes and re-adds eth1's address and the kernel drops the routes that
// use it. gre-hook puts its own back when configured follows.
var policyObjects = [][]string{
	{"rule", "add", "table", "200", "from", "192.0.2.99", "protocol", "176", "pref", "100"},
	{"rule", "add", "table", "main", "suppress_prefixlength", "0", "protocol", "176", "pref", "99"},
	{"route", "add", "192.0.2.0/24", "via", "198.51.100.254", "dev", "eth1", "proto", "176", "table", "200"},
	{"route", "add", "192.0.2.1", "via", "198.51.100.254", "dev", "eth1", "proto", "176"},
}

func policyObjectsKept(n *netns, routes bool) string {
	var missing []string
	// The package names protocol 176 in /etc/iproute2/rt_protos.d.
	ip := func(args ...string) string { return strings.ReplaceAll(n.ip(args...), "proto gre-hook", "proto 176") }
	rules := ip("rule", "show")
	for _, want := range []string{"100:\tfrom 192.0.2.99 lookup 200 proto 176", "99:\tfrom all lookup main suppress_prefixlength 0 proto 176"} {
		if !strings.Contains(rules, want) {
			missing = append(missing, "rule "+want)
		}
	}
	if routes && !strings.Contains(ip("route", "show", "table", "200"), "192.0.2.0/24 via 198.51.100.254 dev eth1 proto 176") {
		missing = append(missing, "route 192.0.2.0/24 table 200")
	}
	if routes && !strings.Contains(ip("route", "show", "192.0.2.1"), "192.0.2.1 via 198.51.100.254 dev eth1 proto 176") {
		missing = append(missing, "route 192.0.2.1")
	}
	if len(missing) > 0 {
		return n.name + " lost " + strings.Join(missing, ", ") + "; it has:\n" + rules + ip("route", "show", "table", "all", "proto", "176")
	}
	return ""
}

// configured waits until networkd has configured eth1 again.
func configured(t *testing.T, rs []*daemonRouter) {
	t.Helper()
	eventually(t, 30*time.Second, "configured again", func() string {
		for _, r := range rs {
			if st := networkState(r); st != "routable configured" {
				return r.ns.name + ": eth1 is " + st
			}
		}
		return ""
	}, rs...)
}

// TestNetworkd: the two sites on Ubuntu Server's stack, netplan,
// systemd-networkd and networkd-dispatcher, with the gre-hook package's
// dispatcher links and nothing else calling gre-hook.
func TestNetworkd(t *testing.T) {
	t.Parallel() // with TestNetworkManager: each router has its own daemons
	d := newDaemonSites(t, newNetworkdRouter)
	rs := d.rs
	t.Run("boot", func(t *testing.T) {
		d.up(t, "at boot")
		d.checkTraffic(t)
	})
	t.Run("networkctl down and up", func(t *testing.T) {
		d.each("networkctl", "down", "eth1")
		d.clean(t, "after networkctl down")
		d.each("networkctl", "up", "eth1")
		d.up(t, "after networkctl up")
	})
	for _, o := range policyObjects {
		d.r1.ip(o...)
	}
	t.Run("networkctl reconfigure", func(t *testing.T) {
		d.each("networkctl", "reconfigure", "eth1")
		configured(t, rs)
		d.up(t, "after networkctl reconfigure")
		if m := policyObjectsKept(d.r1, false); m != "" {
			t.Error(m)
		}
	})
	t.Run("netplan apply", func(t *testing.T) {
		// A route via eth1 that the kernel drops when networkd takes
		// eth1's address away to reconfigure it: its going shows apply
		// has got that far, so configured below is the state after it.
		const marker = "192.0.2.77"
		for i, r := range rs {
			r.ns.ip("route", "add", marker, "via", d.sites[i].gateway, "dev", "eth1", "proto", "static")
		}
		// Both routers at once: each apply is seconds of Python.
		errs := make(chan string, len(rs))
		for _, r := range rs {
			go func(r *daemonRouter) {
				if out, err := r.try("sh", "-c", "PATH=/run/gre-hook-shims:$PATH exec netplan apply"); err != nil {
					errs <- fmt.Sprintf("netplan apply in %s: %v\n%s", r.ns.name, err, out)
					return
				}
				errs <- ""
			}(r)
		}
		for range rs {
			if m := <-errs; m != "" {
				t.Error(m)
			}
		}
		if t.Failed() {
			t.FailNow()
		}
		// apply returns before networkd has reconfigured eth1.
		eventually(t, 60*time.Second, "networkd reconfigures eth1 after netplan apply", func() string {
			for _, r := range rs {
				if out := strings.TrimSpace(r.ns.ip("route", "show", marker)); out != "" {
					return r.ns.name + " still has " + out
				}
			}
			return ""
		}, rs...)
		configured(t, rs)
		d.up(t, "after netplan apply")
		if m := policyObjectsKept(d.r1, false); m != "" {
			t.Error(m)
		}
	})
	t.Run("networkd restart", func(t *testing.T) {
		for _, o := range policyObjects[2:] {
			d.r1.ip(append([]string{"route", "replace"}, o[2:]...)...)
		}
		for _, r := range rs {
			r.stop("systemd-networkd")
			r.start("systemd-networkd", "/lib/systemd/systemd-networkd")
		}
		configured(t, rs)
		d.up(t, "after networkd restarts")
		if m := policyObjectsKept(d.r1, true); m != "" {
			t.Error(m)
		}
	})
	for _, o := range policyObjects {
		d.r1.try("ip", append([]string{o[0], "del"}, o[2:]...)...)
	}
	t.Run("carrier loss", d.carrierLoss)
	t.Run("down at the end", func(t *testing.T) {
		d.each("networkctl", "down", "eth1")
		d.clean(t, "after networkctl down")
		for _, r := range rs {
			if _, err := r.ns.try("ip", "link", "show", "eth1"); err != nil {
				t.Errorf("%s lost its eth1", r.ns.name)
			}
		}
	})
}
