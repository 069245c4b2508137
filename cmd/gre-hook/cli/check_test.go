package cli

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gre-hook/gre-hook/hook/config"
)

// withHost makes check judge warnings against h for the test.
func withHost(t *testing.T, h *config.Host) {
	old := hostAddrs
	hostAddrs = func() (*config.Host, error) { return h, nil }
	t.Cleanup(func() { hostAddrs = old })
}

// check's output, exactly: every line of it starts "gre-hook: ", errors
// of two files and a cross-file conflict come out in one run, warnings
// are marked and fail only with --strict, and a directory with no files
// is named and fails.
func TestCheckOutput(t *testing.T) {
	withHost(t, &config.Host{Addrs: []config.HostAddr{{Iface: "eth1", Prefix: netip.MustParsePrefix("198.51.100.1/24")}}})
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bad := filepath.Join(dir, "bad")
	a := write("bad/a.toml", "[[tunnel]]\nname = \"gre1\"\nunderlay = \"eth1\"\nremote = \"203.0.113.1\"\naddress = [\"10.0.0.1/30\"]\nttl = \"high\"\n")
	b := write("bad/b.toml", "[[tunnel]]\nname = \"gre2\"\nunderlay = \"eth1\"\nremote = \"203.0.113.2\"\naddress = [\"10.0.0.2/30\"]\nmtu = 1.5\n")
	warn := write("warn.toml", "[[tunnel]]\nname = \"gre1\"\nunderlay = \"eth1\"\nremote = \"203.0.113.1\"\nlocal = \"198.51.100.7\"\n")
	empty := filepath.Join(dir, "empty")
	os.Mkdir(empty, 0o755)
	insecure := "gre-hook: warning: GRE_HOOK_INSECURE_CONFIG=1: the config is read without checking who owns it or can write it; this is for tests only\n"
	for _, tc := range []struct {
		name         string
		args         []string
		code         int
		stdout, want string
	}{
		{"errors of two files and a conflict", []string{"check", "--config", bad}, ExitUsage, "",
			"gre-hook: " + a + `:6:1: tunnel "gre1": ttl: must be an integer, not a string ("high")` + "\n" +
				"gre-hook: " + b + `:6:1: tunnel "gre2": mtu: must be an integer, not a float (1.5)` + "\n" +
				"gre-hook: " + b + `:5:1: tunnel "gre2": address: 10.0.0.2/30 overlaps 10.0.0.1/30 of tunnel "gre1" (` + a + `:5:1): the kernel would reach the shared addresses through one of them only` + "\n"},
		{"a warning passes", []string{"check", "--config", warn}, ExitOK, "",
			"gre-hook: " + warn + `:5:1: warning: tunnel "gre1": local: 198.51.100.7 is not an address of this host (up fails until it is)` + "\n"},
		{"a warning with -v", []string{"check", "-v", "--config", warn}, ExitOK, "1 tunnel(s) in 1 file(s): ok, 1 warning(s)\n",
			"gre-hook: " + warn + `:5:1: warning: tunnel "gre1": local: 198.51.100.7 is not an address of this host (up fails until it is)` + "\n"},
		{"a warning fails with --strict", []string{"check", "--strict", "--config", warn}, ExitUsage, "",
			"gre-hook: " + warn + `:5:1: warning: tunnel "gre1": local: 198.51.100.7 is not an address of this host (up fails until it is)` + "\n" +
				"gre-hook: check: 1 warning(s), which --strict counts as errors\n"},
		{"an empty directory", []string{"check", "--config", empty}, ExitUsage, "",
			"gre-hook: check: no config files: directory " + empty + " holds no *.toml files\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			code := Main(tc.args, envOf("GRE_HOOK_INSECURE_CONFIG", "1"), &stdout, &stderr, "t")
			if code != tc.code || stderr.String() != insecure+tc.want || stdout.String() != tc.stdout {
				t.Errorf("exit %d, want %d\nstderr:\n%s\nwant:\n%s%s\nstdout:\n%s\nwant:\n%s", code, tc.code, stderr.String(), insecure, tc.want, stdout.String(), tc.stdout)
			}
		})
	}
}
