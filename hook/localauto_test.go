package hook

import (
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// local = "auto" on IPv6 takes the stable address, never the temporary,
// deprecated or tentative ones the kernel lists before it (newest first).
func TestLocalAutoIPv6TakesTheStableAddress(t *testing.T) {
	e := newEnv(t)
	forever := 0xffffffff
	e.fk.Net.AddDeviceAddrFlags("eth1", netip.MustParsePrefix("2001:db8:1::1/64"), unix.IFA_F_PERMANENT, forever)
	e.fk.Net.AddDeviceAddrFlags("eth1", netip.MustParsePrefix("2001:db8:1::2/64"), 0, 0)
	e.fk.Net.AddDeviceAddrFlags("eth1", netip.MustParsePrefix("2001:db8:1::3/64"), unix.IFA_F_TEMPORARY, 3600)
	e.fk.Net.AddDeviceAddrFlags("eth1", netip.MustParsePrefix("2001:db8:1::4/64"), unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED, forever)
	e.fk.Net.AddDeviceAddrFlags("eth1", netip.MustParsePrefix("2001:db8:1::5/64"), unix.IFA_F_TENTATIVE, forever)
	e.write("[[tunnel]]\nname = \"gre-v6\"\nunderlay = \"eth1\"\nmode = \"ip6gre\"\nremote = \"2001:db8:2::1\"\n")
	out := e.mustRun(PhaseUp)
	if !strings.Contains(e.dump(), "link gre-v6 ip6gre local 2001:db8:1::1 remote 2001:db8:2::1 ") {
		t.Errorf("kernel:\n%s\nlog:\n%s", e.dump(), out)
	}
	// Only tentative and temporary addresses: none to take.
	e2 := newEnv(t)
	if err := e2.fk.Net.DelAddr("eth1", netip.MustParsePrefix("2001:db8:1::1/64")); err != nil {
		t.Fatal(err)
	}
	e2.fk.Net.AddDeviceAddrFlags("eth1", netip.MustParsePrefix("2001:db8:1::3/64"), unix.IFA_F_TEMPORARY, 3600)
	e2.fk.Net.AddDeviceAddrFlags("eth1", netip.MustParsePrefix("2001:db8:1::5/64"), unix.IFA_F_TENTATIVE, forever)
	e2.write("[[tunnel]]\nname = \"gre-v6\"\nunderlay = \"eth1\"\nmode = \"ip6gre\"\nremote = \"2001:db8:2::1\"\n")
	if out, err := e2.run(PhaseUp); err == nil || !strings.Contains(err.Error(), "has no global IPv6 address yet") {
		t.Errorf("up with no stable address: %v\n%s\n%s", err, out, e2.dump())
	}
}

// An up keeps the local = "auto" address the tunnel has while the
// underlay still has it, even when it is not the one a first up would
// take: the watcher moved it there, and another up (a failover's, an
// ifreload) must not create the link again.
func TestLocalAutoKeepsTheRecordedLocal(t *testing.T) {
	e := newEnv(t)
	e.write("[[tunnel]]\nname = \"gre-a\"\nunderlay = \"eth1\"\nremote = \"203.0.113.1\"\naddress = [\"10.0.0.1/30\"]\n")
	e.mustRun(PhaseUp)
	if !strings.Contains(e.dump(), "link gre-a gre local 198.51.100.1 ") {
		t.Fatalf("kernel:\n%s", e.dump())
	}
	e.fk.Net.AddDeviceAddr("eth1", netip.MustParsePrefix("198.51.100.7/24"))
	if err := engineTo(e.sys, nil).Retarget(bg(), "eth1", "gre-a", netip.MustParseAddr("198.51.100.7"), netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	if out := e.mustRun(PhaseUp); out != "" {
		t.Errorf("an up after the move changed things:\n%s", out)
	}
	if !strings.Contains(e.dump(), "link gre-a gre local 198.51.100.7 ") {
		t.Errorf("kernel:\n%s", e.dump())
	}
	var st strings.Builder
	if drift, err := statusOf(t, e.req(PhaseUp), e.sys, &st); err != nil || drift {
		t.Errorf("status: drift %v err %v\n%s", drift, err, st.String())
	}
	// Once that address goes, the next up takes the oldest again.
	if err := e.fk.Net.DelAddr("eth1", netip.MustParsePrefix("198.51.100.7/24")); err != nil {
		t.Fatal(err)
	}
	e.mustRun(PhaseUp)
	if !strings.Contains(e.dump(), "link gre-a gre local 198.51.100.1 ") {
		t.Errorf("kernel:\n%s", e.dump())
	}
}

// An ip6gre tunnel that is up is left alone by the next up: the kernel
// reports no pmtudisc for the ip6 modes (it has none), which must not
// read as a difference from the config's default.
func TestIP6GREUpTwiceChangesNothing(t *testing.T) {
	e := newEnv(t)
	e.write("[[tunnel]]\nname = \"gre-v6\"\nunderlay = \"eth1\"\nmode = \"ip6gre\"\nremote = \"2001:db8:2::1\"\n")
	e.mustRun(PhaseUp)
	if out := e.mustRun(PhaseUp); out != "" {
		t.Errorf("the second up changed things:\n%s", out)
	}
}

// local = "auto" never takes the remote: with the remote as the
// underlay's only address up refuses, and with another address there it
// takes that one.
func TestLocalAutoNeverTheRemote(t *testing.T) {
	e := newEnv(t)
	if err := e.fk.Net.DelAddr("eth1", netip.MustParsePrefix("198.51.100.1/24")); err != nil {
		t.Fatal(err)
	}
	e.fk.Net.AddDeviceAddr("eth1", netip.MustParsePrefix("203.0.113.1/24"))
	e.write("[[tunnel]]\nname = \"gre-a\"\nunderlay = \"eth1\"\nremote = \"203.0.113.1\"\naddress = [\"10.0.0.1/30\"]\n")
	want := `underlay eth1's only IPv4 address 203.0.113.1 is the remote itself`
	if out, err := e.run(PhaseUp); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("up with the remote as the only address: %v\n%s\n%s", err, out, e.dump())
	}
	e.fk.Net.AddDeviceAddr("eth1", netip.MustParsePrefix("198.51.100.9/24"))
	e.mustRun(PhaseUp)
	if !strings.Contains(e.dump(), "link gre-a gre local 198.51.100.9 ") {
		t.Errorf("kernel:\n%s", e.dump())
	}
}
