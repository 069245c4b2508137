//go:build realkernel

package realkernel

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestWatchFollowsRecreatedUnderlay: a local = "auto" tunnel whose
// underlay is deleted and created again with another address, as PPP does
// at each reconnect (a new link, a new index; the old address's
// RTM_DELADDR is read when the old index no longer resolves). gre-hook
// watch moves the tunnel's local to the new address in place, within 5s.
func TestWatchFollowsRecreatedUnderlay(t *testing.T) {
	t.Parallel()
	n := withCleanState(newNS(t))
	n.dummy("ppp0", "198.51.100.1/24", 1500)
	cfg := writeConfig(t, `
[[tunnel]]
name = "gre-p"
underlay = "ppp0"
remote = "203.0.113.1"
address = ["10.0.0.1/30"]
`)
	n.up(cfg, "ppp0")
	if l, _ := n.link("gre-p"); l.data("local") != "198.51.100.1" {
		t.Fatalf("gre-p after up: %+v", l)
	}
	idx := n.linkIndex("gre-p")
	w := startWatch(t, n, cfg)
	w.waitLog("gre-p: following the address of ppp0 (198.51.100.1)", 1, 10*time.Second)
	time.Sleep(500 * time.Millisecond) // the follower subscribed

	for round, addr := range []string{"198.51.100.9", "198.51.100.20"} {
		del := time.Now()
		n.ip("link", "del", "ppp0")
		n.dummy("ppp0", addr+"/24", 1500)
		// From the new address: what the watcher can follow.
		start := time.Now()
		var l linkInfo
		for {
			l, _ = n.link("gre-p")
			if l.data("local") == addr {
				break
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("round %d: gre-p's local is %q 5s after ppp0 came back with %s; watcher log:\n%s", round, l.data("local"), addr, w.log.String())
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Logf("round %d: gre-p followed ppp0 to %s within %.3fs of the new address (%.3fs after the old link's deletion began)",
			round, addr, time.Since(start).Seconds(), time.Since(del).Seconds())
		if i := n.linkIndex("gre-p"); i != idx {
			t.Errorf("round %d: gre-p was re-created: index %d -> %d", round, idx, i)
		}
		if a := n.ip("-4", "-o", "addr", "show", "dev", "gre-p"); !strings.Contains(a, "10.0.0.1/30") {
			t.Errorf("round %d: gre-p's address: %s", round, a)
		}
	}
}

// addrFlags lists an interface's IPv6 addresses with the flags ip shows.
func (n *netns) addrFlags(dev string) map[string][]string {
	n.t.Helper()
	var ls []struct {
		AddrInfo []map[string]interface{} `json:"addr_info"`
	}
	out := n.ip("-6", "-j", "addr", "show", "dev", dev)
	if err := json.Unmarshal([]byte(out), &ls); err != nil || len(ls) != 1 {
		n.t.Fatalf("parsing %s: %v", out, err)
	}
	m := map[string][]string{}
	for _, a := range ls[0].AddrInfo {
		local, _ := a["local"].(string)
		var flags []string
		for k, v := range a {
			if b, ok := v.(bool); ok && b {
				flags = append(flags, k)
			}
			if k == "preferred_life_time" {
				if f, ok := v.(float64); ok && f == 0 {
					flags = append(flags, "preferred_lft=0")
				}
			}
		}
		m[local] = flags
	}
	return m
}

func hasFlag(fs []string, f string) bool {
	for _, x := range fs {
		if x == f {
			return true
		}
	}
	return false
}

// TestLocalAutoIPv6Selection: an IPv6 underlay with a stable address (the
// oldest), a temporary one the kernel made from it, a deprecated one and
// a tentative one (duplicate address detection held for 100s), all newer
// and so listed first. up takes the stable one. Then a second stable
// address comes and the first goes: the watcher's follower moves the
// tunnel to it, by the same rule, and a later up leaves the tunnel there
// (no re-creation).
func TestLocalAutoIPv6Selection(t *testing.T) {
	t.Parallel()
	n := withCleanState(newNS(t))
	n.ip("link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
	n.exec("sysctl", "-qw", "net.ipv6.neigh.eth1.retrans_time_ms=100000", "net.ipv6.conf.eth1.use_tempaddr=2", "net.ipv6.conf.eth1.accept_ra=0")
	n.ip("link", "set", "eth1p", "up")
	n.ip("link", "set", "eth1", "up")
	stable, deprecated, tentative, stable2 := "2001:db8:1::1", "2001:db8:1::2", "2001:db8:1::5", "2001:db8:1::7"
	n.ip("addr", "add", stable+"/64", "dev", "eth1", "nodad", "mngtmpaddr")
	n.ip("addr", "add", deprecated+"/64", "dev", "eth1", "nodad", "preferred_lft", "0")
	n.ip("addr", "add", tentative+"/64", "dev", "eth1")
	have := n.addrFlags("eth1")
	temporary := ""
	for a, fs := range have {
		if hasFlag(fs, "temporary") {
			temporary = a
		}
	}
	if temporary == "" || !hasFlag(have[tentative], "tentative") || !hasFlag(have[deprecated], "deprecated") && !hasFlag(have[deprecated], "preferred_lft=0") {
		t.Fatalf("the kernel did not make the addresses wanted: %v\n%s", have, n.ip("-6", "addr", "show", "dev", "eth1"))
	}
	t.Logf("eth1, as the kernel lists it:\n%s", n.ip("-6", "addr", "show", "dev", "eth1"))
	cfg := writeConfig(t, `
[[tunnel]]
name = "gre-v6"
underlay = "eth1"
mode = "ip6gre"
remote = "2001:db8:2::1"
`)
	n.up(cfg, "eth1")
	if l, _ := n.link("gre-v6"); l.data("local") != stable {
		t.Fatalf("up took local %q, want the stable %s; addresses %v", l.data("local"), stable, have)
	}
	dry := n.must(n.gh(nil, "--config", cfg, "--iface", "eth1", "--phase", "up", "--dry-run"))
	if strings.Contains(dry.stdout+dry.stderr, "ip -6 tunnel") || strings.Contains(dry.stdout+dry.stderr, "link del") {
		t.Errorf("a dry run after up plans changes:\n%s%s", dry.stdout, dry.stderr)
	}
	idx := n.linkIndex("gre-v6")
	w := startWatch(t, n, cfg)
	w.waitLog("gre-v6: following the address of eth1 ("+stable+")", 1, 10*time.Second)
	time.Sleep(500 * time.Millisecond)
	n.ip("addr", "add", stable2+"/64", "dev", "eth1", "nodad")
	n.ip("addr", "del", stable+"/64", "dev", "eth1")
	start := time.Now()
	for {
		l, _ := n.link("gre-v6")
		if l.data("local") == stable2 {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("the follower moved gre-v6 to %q, want %s; addresses:\n%s\nwatcher log:\n%s", l.data("local"), stable2, n.ip("-6", "addr", "show", "dev", "eth1"), w.log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("the follower moved gre-v6 to %s in %.3fs", stable2, time.Since(start).Seconds())
	if r := n.up(cfg, "eth1"); strings.Contains(r.stderr, "+ ") {
		t.Errorf("an up after the move changed things:\n%s", r.stderr)
	}
	if i := n.linkIndex("gre-v6"); i != idx {
		t.Errorf("gre-v6 was re-created: index %d -> %d", idx, i)
	}
	if l, _ := n.link("gre-v6"); l.data("local") != stable2 {
		t.Errorf("after the second up gre-v6 has local %q", l.data("local"))
	}
}
