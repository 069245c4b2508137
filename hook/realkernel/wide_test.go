//go:build realkernel

package realkernel

import (
	"os"
	"sort"
	"testing"
)

// TestWideTableAndMetric routes through tables and metrics from 2^31 up,
// with the 64-bit binary and with one built for i386 (GRE_HOOK_BIN_386):
// the package is linux-any, and on 32-bit targets such values once turned
// negative and the route silently landed in main with metric 0. The guest
// kernel runs i386 binaries.
func TestWideTableAndMetric(t *testing.T) {
	t.Parallel()
	bin386 := os.Getenv("GRE_HOOK_BIN_386")
	if bin386 == "" {
		t.Fatal("GRE_HOOK_BIN_386 is not set: build gre-hook with GOARCH=386 (scripts/test does)")
	}
	for _, b := range []struct{ name, path string }{{"amd64", bin}, {"386", bin386}} {
		b := b
		t.Run(b.name, func(t *testing.T) {
			ns := newNS(t)
			ns.bin = b.path
			ns.dummy("eth1", "198.51.100.1/24", 1500)
			cfg := writeConfig(t, `
[[tunnel]]
name = "wide"
underlay = "eth1"
remote = "203.0.113.1"
address = ["10.0.0.1/30"]
mss = "off"
[[tunnel.route]]
to = "192.168.2.0/24"
table = 3000000000
metric = 4000000000
[[tunnel.route]]
to = "192.168.3.0/24"
metric = 2147483648
`)
			ns.up(cfg, "eth1")
			want := []string{
				"192.168.2.0/24 via 10.0.0.2 dev wide proto 176 metric 4000000000 table 3000000000",
				"192.168.3.0/24 via 10.0.0.2 dev wide proto 176 metric 2147483648 table main",
			}
			routes := func() []string {
				rs := ns.ourRoutes()
				sort.Strings(rs)
				return rs
			}
			assertEq(t, "our routes", routes(), want)
			if second := ns.up(cfg, "eth1"); second.stderr != "" {
				t.Errorf("second up was not quiet:\n%s", second.stderr)
			}
			assertEq(t, "our routes after a second up", routes(), want)
			ns.down(cfg, "eth1")
			ns.assertClean()
		})
	}
}
