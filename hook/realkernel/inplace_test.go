//go:build realkernel

package realkernel

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Edits of a live tunnel's config: what the kernel can change
// on a live link, up changes in place, and the link keeps its index.

// tunnelView is what the kernel reports of a tunnel's link: its index and
// the attributes an edit changes.
func (n *netns) tunnelView(name string) string {
	n.t.Helper()
	l, ok := n.link(name)
	if !ok {
		return "no " + name
	}
	return fmt.Sprintf("index %d mtu %d local %s remote %s ttl %s ikey %s okey %s", n.linkIndex(name), l.Mtu,
		l.data("local"), l.data("remote"), l.data("ttl"), l.data("ikey"), l.data("okey"))
}

// TestEditInPlace: an up after an edit of mtu, ttl and remote keeps the
// link's index, and the kernel reports the new values; the up_command
// does not run, since no daemon needs to hear of it. Then the failures:
// a step after the change in place that the kernel refuses (an mtu above
// the link's maximum), a failing up_command after a new address, and a
// change in place that the kernel refuses (another tunnel has those
// endpoints): each rolls back to the old attributes on the same link.
func TestEditInPlace(t *testing.T) {
	t.Parallel()
	ns := newCleanNS(t)
	ns.dummy("eth1", "198.51.100.1/24", 1500)
	ran := filepath.Join(t.TempDir(), "ran")
	notify := fmt.Sprintf("up_command = [\"/bin/sh\", \"-c\", \"echo $GRE_HOOK_TUNNEL >> %s\"]\n", ran)
	// The keys of [[tunnel]] go before its [[tunnel.route]].
	base := strings.Replace(site1, "address = ", "ttl = 255\n"+notify+"address = ", 1)
	edit := func(extra string) string { return strings.Replace(base, "address = ", extra+"address = ", 1) }
	cfg := writeConfig(t, base)
	ns.up(cfg, "eth1")
	index := ns.linkIndex("gre-site2")
	runs := func() int {
		data, _ := os.ReadFile(ran)
		return strings.Count(string(data), "\n")
	}
	assertEq(t, "up_command runs after the first up", runs(), 1)
	assertEq(t, "after the first up", ns.tunnelView("gre-site2"),
		fmt.Sprintf("index %d mtu 1476 local 198.51.100.1 remote 203.0.113.1 ttl 255 ikey  okey ", index))

	edited := strings.Replace(edit("mtu = 1400\n"), "ttl = 255", "ttl = 64", 1)
	edited = strings.Replace(edited, `remote = "203.0.113.1"`, `remote = "203.0.113.9"`, 1)
	os.WriteFile(cfg, []byte(edited), 0o644)
	dry := ns.must(ns.gh(nil, "--config", cfg, "--iface", "eth1", "--phase", "up", "--dry-run"))
	want := "ip link set gre-site2 type gre remote 203.0.113.9 ttl 64  # in place, was remote 203.0.113.1 ttl 255\nip link set gre-site2 mtu 1400\n"
	assertEq(t, "dry run of the edit", dry.stderr, want)
	up := ns.up(cfg, "eth1")
	assertEq(t, "up's log", up.stderr, "gre-hook: + "+strings.ReplaceAll(strings.TrimSuffix(want, "\n"), "\n", "\ngre-hook: + ")+"\n")
	assertEq(t, "after the edit", ns.tunnelView("gre-site2"),
		fmt.Sprintf("index %d mtu 1400 local 198.51.100.1 remote 203.0.113.9 ttl 64 ikey  okey ", index))
	t.Logf("ip -d link after the edit:\n%s", ns.ip("-d", "link", "show", "gre-site2"))
	if l, _ := ns.link("gre-site2"); l.data("fwmark") != "0x4747" {
		t.Errorf("the fwmark after the change in place: %q", l.data("fwmark"))
	}
	if r := ns.ourRoutes(); len(r) != 1 || !strings.HasPrefix(r[0], "192.168.2.0/24 via 10.0.0.2 dev gre-site2 ") {
		t.Errorf("routes after the edit: %q", r)
	}
	assertEq(t, "up_command runs after the edit", runs(), 1)
	if st := ns.gh(nil, "status", "--config", cfg, "--iface", "eth1"); st.code != 0 {
		t.Errorf("status after the edit exited %d:\n%s%s", st.code, st.stdout, st.stderr)
	}
	good := ns.snapshot("iptables") + ns.tunnelView("gre-site2")

	for _, tc := range []struct {
		name, config, fails string
		setup               func()
	}{
		{"an mtu the kernel refuses", strings.NewReplacer("ttl = 64", "ttl = 32", "mtu = 1400", "mtu = 65535").Replace(edited),
			"ip link set gre-site2 mtu 65535: invalid argument", nil},
		{"a failing up_command after a new address", strings.NewReplacer("ttl = 64", "ttl = 32", "10.0.0.1/30", "10.0.0.5/30", "/bin/sh", "/bin/false").Replace(edited),
			"up_command: /bin/false", nil},
		{"another tunnel's endpoints", strings.Replace(edited, "203.0.113.9", "203.0.113.7", 1),
			"ip link set gre-site2 type gre remote 203.0.113.7: file exists (tunnel other already uses local 198.51.100.1 remote 203.0.113.7 key 0)",
			func() {
				ns.ip("link", "add", "other", "type", "gre", "local", "198.51.100.1", "remote", "203.0.113.7")
				good = ns.snapshot("iptables") + ns.tunnelView("gre-site2")
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup()
			}
			os.WriteFile(cfg, []byte(tc.config), 0o644)
			r := ns.gh(nil, "--config", cfg, "--iface", "eth1", "--phase", "up")
			if r.code != 1 || !strings.Contains(r.stderr, tc.fails) || !strings.Contains(r.stderr, "; rolled back") {
				t.Fatalf("up exited %d, want 1 with %q and rolled back:\n%s", r.code, tc.fails, r.stderr)
			}
			t.Logf("up:\n%s", r.stderr)
			assertEq(t, "the kernel after the rollback", ns.snapshot("iptables")+ns.tunnelView("gre-site2"), good)
		})
	}
	os.WriteFile(cfg, []byte(edited), 0o644)
	if r := ns.up(cfg, "eth1"); r.stderr != "" {
		t.Errorf("an up after the rollbacks changed something:\n%s", r.stderr)
	}
	ns.ip("link", "del", "other")
	ns.down(cfg, "eth1")
	ns.assertNothingLeft("down")
}

// TestEditInPlaceKeepsMulticast: smcroute on site1 forwards a multicast
// stream from its LAN into the tunnel, and site2 counts what arrives.
// Both sites' configs are then edited (mtu, ttl, and the endpoint: site2
// moves to its second address) and brought up again, without telling
// smcroute: the stream keeps crossing, the mroute's VIF is the same
// link, and the up_command (smcroutectl reload, here a marker) does not
// run. smcroute 2.5 learns of interfaces only at start and reload, so a
// link made again (a new index) would end the stream.
func TestEditInPlaceKeepsMulticast(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("smcrouted"); err != nil {
		t.Fatalf("smcroute is not installed: %v", err)
	}
	s := newTwoSites(t, "", "", false)
	underlaysByHand(s)
	s.r2.ip("addr", "add", "203.0.113.2/24", "dev", "eth1")
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	ran := filepath.Join(dir, "ran")
	notify := fmt.Sprintf("up_command = [\"/bin/sh\", \"-c\", \"echo $GRE_HOOK_TUNNEL >> %s\"]\n", ran)
	r1base := `
[[tunnel]]
name = "gre-site2"
underlay = "eth1"
local = "198.51.100.1"
remote = "203.0.113.1"
ttl = 255
multicast = true
address = ["10.0.0.1/30"]
` + notify + `
[[tunnel.route]]
to = "192.168.2.0/24"
`
	r2base := `
[[tunnel]]
name = "gre-site1"
underlay = "eth1"
local = "203.0.113.1"
remote = "198.51.100.1"
ttl = 255
multicast = true
address = ["10.0.0.2/30"]
` + notify + `
[[tunnel.route]]
to = "192.168.1.0/24"
`
	r1cfg, r2cfg := writeConfig(t, r1base), writeConfig(t, r2base)
	withCleanState(s.r1).up(r1cfg, "eth1")
	withCleanState(s.r2).up(r2cfg, "eth1")
	runs := func() string {
		data, _ := os.ReadFile(ran)
		return strings.Join(strings.Fields(string(data)), " ")
	}
	assertEq(t, "up_commands run after the first ups", runs(), "gre-site2 gre-site1")

	// smcroute starts after the tunnel is up, as at boot after ifup.
	conf := filepath.Join(dir, "smcroute.conf")
	os.WriteFile(conf, []byte("mroute from eth0 source 192.168.1.10 group 239.1.2.3 to gre-site2\n"), 0o644)
	smc := exec.Command("ip", "netns", "exec", s.r1.name, "smcrouted", "-n", "-f", conf, "-i", "rk-"+s.r1.name,
		"-u", filepath.Join(dir, "smcroute.sock"), "-P", filepath.Join(dir, "smcroute.pid"), "-l", "debug")
	smcLog := &lockedBuf{}
	smc.Stdout, smc.Stderr = smcLog, smcLog
	if err := smc.Start(); err != nil {
		t.Fatalf("starting smcrouted: %v", err)
	}
	t.Cleanup(func() { smc.Process.Kill(); smc.Wait() })

	// site2 counts the datagrams that come out of its tunnel.
	got := filepath.Join(dir, "got")
	out, err := os.Create(got)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	recv := exec.Command("ip", "netns", "exec", s.r2.name, "socat", "-u",
		"UDP4-RECV:5004,ip-add-membership=239.1.2.3:gre-site1,reuseaddr", "STDOUT")
	recv.Stdout = out
	if err := recv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { recv.Process.Kill(); recv.Wait() })
	// h1 sends a numbered datagram every 100 ms to the group, TTL 8.
	send := exec.Command("ip", "netns", "exec", s.h1.name, "sh", "-c",
		"i=0; while :; do echo mc-$i; i=$((i+1)); sleep 0.1; done | socat -u STDIN UDP4-DATAGRAM:239.1.2.3:5004,ip-multicast-ttl=8,ip-multicast-if=192.168.1.10")
	if err := send.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { send.Process.Kill(); send.Wait() })
	count := func() int {
		data, _ := os.ReadFile(got)
		return len(regexp.MustCompile(`mc-\d+`).FindAll(data, -1))
	}
	arrives := func(what string, after int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for count() < after+10 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d datagrams arrived at site2, want more than %d\nsmcroute:\n%s\nr1 mroute:\n%s\nr1 VIFs:\n%s", what, count(), after+10,
					smcLog.String(), s.r1.ip("mroute", "show"), s.r1.exec("cat", "/proc/net/ip_mr_vif"))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	arrives("before the edit", 0)
	vifs := s.r1.exec("cat", "/proc/net/ip_mr_vif")
	if !strings.Contains(vifs, "gre-site2") {
		t.Fatalf("smcroute made no VIF for gre-site2:\n%s", vifs)
	}
	i1, i2 := s.r1.linkIndex("gre-site2"), s.r2.linkIndex("gre-site1")
	t.Logf("before the edit: r1 VIFs\n%s%s", vifs, s.r1.ip("mroute", "show"))

	// The edit: site2 moves to 203.0.113.2; both get mtu 1400 and ttl 64.
	retune := func(cfg string) string {
		return strings.NewReplacer("ttl = 255", "ttl = 64\nmtu = 1400", `"203.0.113.1"`, `"203.0.113.2"`).Replace(cfg)
	}
	os.WriteFile(r2cfg, []byte(retune(r2base)), 0o644)
	os.WriteFile(r1cfg, []byte(retune(r1base)), 0o644)
	for _, r := range []struct {
		ns         *netns
		cfg, name  string
		index      int
		wantChange string
	}{
		{s.r2, r2cfg, "gre-site1", i2, "gre-hook: + ip link set gre-site1 type gre local 203.0.113.2 ttl 64  # in place, was local 203.0.113.1 ttl 255\n"},
		{s.r1, r1cfg, "gre-site2", i1, "gre-hook: + ip link set gre-site2 type gre remote 203.0.113.2 ttl 64  # in place, was remote 203.0.113.1 ttl 255\n"},
	} {
		up := r.ns.up(r.cfg, "eth1")
		assertEq(t, r.name+": up's log", up.stderr, r.wantChange+"gre-hook: + ip link set "+r.name+" mtu 1400\n")
		if i := r.ns.linkIndex(r.name); i != r.index {
			t.Errorf("%s was made again: index %d -> %d", r.name, r.index, i)
		}
		l, _ := r.ns.link(r.name)
		if l.Mtu != 1400 || l.data("ttl") != "64" || !strings.Contains(l.data("local")+" "+l.data("remote"), "203.0.113.2") {
			t.Errorf("%s after the edit:\n%s", r.name, r.ns.ip("-d", "link", "show", r.name))
		}
	}
	assertEq(t, "up_commands run after the edits", runs(), "gre-site2 gre-site1")
	arrives("after the edit, with no reload", count())
	after := s.r1.exec("cat", "/proc/net/ip_mr_vif")
	t.Logf("after the edit: r1 VIFs\n%s%s", after, s.r1.ip("mroute", "show"))
	if !strings.Contains(after, "gre-site2") {
		t.Errorf("gre-site2's VIF is gone:\n%s", after)
	}
	if mr := s.r1.ip("mroute", "show"); !strings.Contains(mr, "Oifs: gre-site2") {
		t.Errorf("r1's mroute no longer leads into gre-site2:\n%s", mr)
	}
	// The outer packets go to site2's new address.
	if st := s.r2.ip("-s", "link", "show", "gre-site1"); !regexp.MustCompile(`RX:.*\n\s+\d+\s+[1-9]`).MatchString(st) {
		t.Errorf("gre-site1 received nothing:\n%s", st)
	}
	if err := smc.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("smcrouted is gone (%v):\n%s", err, smcLog.String())
	}
}
