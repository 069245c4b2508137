//go:build realkernel

package realkernel

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func nsInode(t *testing.T, name string) uint64 {
	t.Helper()
	st, err := os.Stat(filepath.Join("/run/netns", name))
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

// TestDeadNamespaceRecordsNotInherited: records of a namespace that died
// with its tunnels up stay under /run/gre-hook. The kernel hands a dead
// namespace's inode to the next namespace it makes, so state keyed by the
// inode was inherited: the new namespace's first down "restored" the dead
// one's replaced default route. State is keyed by the never-reused
// namespace cookie now.
func TestDeadNamespaceRecordsNotInherited(t *testing.T) {
	a := newNS(t)
	a.dummy("eth1", "198.51.100.1/24", 1500)
	a.ip("route", "add", "default", "via", "198.51.100.254")
	cfg := writeConfig(t, `
[[tunnel]]
name = "gre-vpn"
underlay = "eth1"
remote = "203.0.113.5"
address = ["10.9.0.2/30"]
default_route = true
mss = "off"
`)
	a.up(cfg, "eth1")
	dirA := a.stateDir()
	t.Cleanup(func() { os.RemoveAll(dirA) })
	if _, err := os.Stat(filepath.Join(dirA, "eth1.json")); err != nil {
		t.Fatalf("no record after up: %v", err)
	}
	inode := nsInode(t, a.name)
	// The namespace dies with its tunnel up, as a container does.
	mustRun(t, "ip", "netns", "del", a.name)

	// Namespaces until the kernel reuses the inode. It hands out the
	// lowest free number, so the namespaces made on the way are kept: they
	// fill the lower holes that earlier tests left. The dead namespace is
	// freed by a kernel worker, and ip's own short-lived mount namespaces
	// draw from the same numbers, so reuse usually comes within a few
	// tries but is not certain.
	var b, last *netns
	deadline := time.Now().Add(30 * time.Second)
	for made := 0; b == nil && made < 200 && time.Now().Before(deadline); made++ {
		last = newNS(t)
		if nsInode(t, last.name) == inode {
			b = last
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if b == nil {
		// No reuse this time: what can still be checked is that state is
		// not keyed by anything the kernel reuses.
		t.Logf("no new namespace got the dead one's inode %d within 30 s; checking how state is keyed", inode)
		dirB := last.stateDir()
		if dirB == dirA || !strings.Contains(dirA, "netns-cookie-") || !strings.Contains(dirB, "netns-cookie-") {
			t.Fatalf("state directories %s and %s are not keyed by namespace cookies", dirA, dirB)
		}
		return
	}
	t.Logf("namespace %s got the dead namespace's inode %d", b.name, inode)
	if dirB := b.stateDir(); dirB == dirA {
		t.Fatalf("the new namespace shares the dead one's state directory %s", dirA)
	}
	b.dummy("eth1", "198.51.100.1/24", 1500)
	b.ip("route", "add", "default", "via", "198.51.100.253")
	before := b.snapshot()
	r := b.must(b.gh(nil, "--config", cfg, "--iface", "eth1", "--phase", "down"))
	if r.stderr != "" {
		t.Errorf("down in the new namespace did something:\n%s", r.stderr)
	}
	b.assertUnchanged("down in a namespace that reuses a dead one's inode", before)
}
