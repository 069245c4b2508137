//go:build realkernel

package realkernel

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// nmConf is NetworkManager's main config for the test routers: keyfiles
// only (Debian's ifupdown plugin would read the machine's
// /etc/network/interfaces), and no polkit, which is not running.
const nmConf = `[main]
plugins=keyfile
auth-polkit=false

[logging]
level=INFO
`

// nmUnderlay is the underlay's keyfile connection.
const nmUnderlay = `[connection]
id=underlay
type=ethernet
interface-name=eth1
autoconnect=true

[ipv4]
method=manual
address1=%s/24,%s

[ipv6]
method=disabled
`

// newNMRouter starts a desktop's NetworkManager in r: its own system bus,
// its own /etc/NetworkManager (with Debian's 01-ifupdown, which runs
// if-up.d at up), /run/NetworkManager and /var/lib/NetworkManager, the
// dispatcher (D-Bus would start it on demand; here it is started first,
// with --persist), and NetworkManager itself. if-up.d holds the package's
// gre-hook hook, as on a Debian desktop with ifupdown installed.
func newNMRouter(t *testing.T, ns *netns, addr, gw string) *daemonRouter {
	t.Helper()
	r := newDaemonRouter(t, ns, map[string]string{"/run/dbus": "", "/run/NetworkManager": "", "/var/lib/NetworkManager": "", "/etc/NetworkManager": ""})
	etc := filepath.Join(r.dir, "etc_NetworkManager")
	for _, d := range []string{"system-connections", "dispatcher.d/pre-down.d", "dispatcher.d/pre-up.d", "dispatcher.d/no-wait.d", "conf.d"} {
		if err := os.MkdirAll(filepath.Join(etc, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ifupdown, err := os.ReadFile("/etc/NetworkManager/dispatcher.d/01-ifupdown")
	if err != nil {
		t.Fatalf("network-manager's 01-ifupdown: %v", err)
	}
	files := map[string]struct {
		body string
		mode os.FileMode
	}{
		"NetworkManager.conf":                      {nmConf, 0o644},
		"dispatcher.d/01-ifupdown":                 {string(ifupdown), 0o755},
		"system-connections/underlay.nmconnection": {fmt.Sprintf(nmUnderlay, addr, gw), 0o600},
	}
	for name, f := range files {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(f.body), f.mode); err != nil {
			t.Fatal(err)
		}
	}
	r.startBus()
	r.start("nm-dispatcher", "/usr/lib/NetworkManager/nm-dispatcher", "--persist")
	r.start("NetworkManager", "NetworkManager", "--no-daemon")
	return r
}

// TestNetworkManager: the two sites with NetworkManager managing each
// router's underlay from a keyfile, the gre-hook package's dispatcher
// links and Debian's 01-ifupdown calling gre-hook.
// nmcli is the command line of an nmcli that waits up to 120 s: its
// default of 10 s is less than a down may take here, where the
// dispatcher's pre-down runs gre-hook under emulation (seen: "Error:
// Timeout expired (10 seconds)").
func nmcli(args ...string) []string {
	return append([]string{"nmcli", "--wait", "120"}, args...)
}

func TestNetworkManager(t *testing.T) {
	t.Parallel() // with TestNetworkd: each router has its own daemons
	d := newDaemonSites(t, newNMRouter)
	sites := d.sites
	// NetworkManager shows the tunnels as "connected (externally)" (or,
	// just after it starts, "connecting (externally)"), with an
	// in-memory connection named after the link: it watches them, and must
	// change nothing of theirs (up checks that their routes are there).
	notNMs := func(t *testing.T) {
		t.Helper()
		for _, site := range sites {
			out := site.r.must("nmcli", "-t", "-f", "DEVICE,STATE,CONNECTION", "device")
			for _, l := range strings.Split(out, "\n") {
				// "connecting (externally)" is the same external state,
				// seen while NetworkManager settles after a restart.
				if strings.HasPrefix(l, site.tunnel+":") && l != site.tunnel+":unmanaged:" && l != site.tunnel+":connected (externally):"+site.tunnel &&
					l != site.tunnel+":connecting (externally):"+site.tunnel {
					t.Errorf("%s: NetworkManager has %s as its own: %s", site.r.ns.name, site.tunnel, l)
				}
			}
		}
	}
	t.Run("boot", func(t *testing.T) {
		d.up(t, "at boot")
		d.checkTraffic(t)
		notNMs(t)
	})
	t.Run("nmcli connection down and up", func(t *testing.T) {
		d.each(nmcli("connection", "down", "underlay")...)
		d.clean(t, "after nmcli connection down")
		d.each(nmcli("connection", "up", "underlay")...)
		d.up(t, "after nmcli connection up")
		notNMs(t)
	})
	t.Run("nmcli device reapply", func(t *testing.T) {
		d.each(nmcli("device", "reapply", "eth1")...)
		d.up(t, "after nmcli device reapply")
		notNMs(t)
	})
	t.Run("carrier loss", d.carrierLoss)
	t.Run("NetworkManager restart", func(t *testing.T) {
		// The dispatcher is restarted with it, as under systemd. Started by D-Bus
		// activation here, it would get the launch helper's empty
		// environment, no PATH, and gre-hook would find no iptables; under
		// systemd, activation goes through NetworkManager-dispatcher.service.
		for _, r := range d.rs {
			r.stop("NetworkManager")
			r.stop("nm-dispatcher")
			r.start("nm-dispatcher", "/usr/lib/NetworkManager/nm-dispatcher", "--persist")
			r.start("NetworkManager", "NetworkManager", "--no-daemon")
		}
		d.up(t, "after NetworkManager restarts")
		notNMs(t)
	})
	t.Run("down at the end", func(t *testing.T) {
		d.each(nmcli("connection", "down", "underlay")...)
		d.clean(t, "after nmcli connection down")
	})
}
