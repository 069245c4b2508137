package rtnl

import (
	"os"
	"path/filepath"
	"testing"
)

func TestListsModule(t *testing.T) {
	p := filepath.Join(t.TempDir(), "modules.dep")
	dep := "kernel/net/ipv4/ip_tunnel.ko.xz:\nkernel/net/ipv4/ip_gre.ko.xz: kernel/net/ipv4/gre.ko.xz kernel/net/ipv4/ip_tunnel.ko.xz\nkernel/net/ipv6/ip6_gre.ko:\n"
	if err := os.WriteFile(p, []byte(dep), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"ip_gre": true, "ip6_gre": true, "ip-gre": true, "gre": false, "ip_tunnel": true, "ip_gr": false} {
		if got, err := listsModule(p, name); err != nil || got != want {
			t.Errorf("listsModule(%q) = %v, %v; want %v", name, got, err, want)
		}
	}
	if _, err := listsModule(filepath.Join(t.TempDir(), "none"), "ip_gre"); err == nil {
		t.Error("no error for a missing list")
	}
}
