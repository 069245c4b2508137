package hook

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// badNames breaks the interface name rules in several ways at once.
const badNames = `[[tunnel]]
name = "gre+"
underlay = "eth1"
remote = "203.0.113.1"

[[tunnel]]
name = "gre%d"
underlay = "eth+"
remote = "203.0.113.2"

[[tunnel]]
name = 'gre"q'
underlay = "eth1"
remote = "203.0.113.3"

[[tunnel]]
name = "gre!x"
underlay = "eth 1"
remote = "203.0.113.4"

[[tunnel]]
name = "gre*"
underlay = "eth1\u0007"
remote = "203.0.113.5"

[[tunnel]]
name = "gre-ok"
underlay = "eth1"
remote = "203.0.113.6"
`

// gre-hook check prints one error per bad name, each naming the file,
// line, tunnel, key, character and reason, and exits 2.
func TestCheckReportsEveryBadName(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "names.toml")
	if err := os.WriteFile(cfg, []byte(badNames), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr strings.Builder
	code := Main([]string{"check", "--config", cfg}, envOf("GRE_HOOK_INSECURE_CONFIG", "1"), &stdout, &stderr, "t")
	if code != ExitUsage {
		t.Errorf("exit %d, want %d", code, ExitUsage)
	}
	plus := `contains '+', which iptables reads as a wildcard ("-o gre+" matches every interface whose name starts with "gre")`
	want := cfg + `:2:1: tunnel "gre+": name: "gre+" ` + plus + "\n" +
		cfg + `:7:1: tunnel "gre%d": name: "gre%d" contains '%', which the kernel replaces with a number when it creates the link ("gre%d" becomes gre0, gre1, ...)` + "\n" +
		cfg + `:8:1: tunnel "gre%d": underlay: "eth+" ` + plus + "\n" +
		cfg + `:12:1: tunnel "gre\"q": name: "gre\"q" contains '"', which breaks reading gre-hook's rules back from iptables -S` + "\n" +
		cfg + `:17:1: tunnel "gre!x": name: "gre!x" contains '!', which iptables reads as negation` + "\n" +
		cfg + `:18:1: tunnel "gre!x": underlay: "eth 1" contains a space, which Linux forbids in interface names` + "\n" +
		cfg + `:22:1: tunnel "gre*": name: "gre*" contains '*', which nftables reads as a wildcard in interface names` + "\n" +
		cfg + `:23:1: tunnel "gre*": underlay: "eth1\a" contains '\a' (U+0007), a control character, which garbles logs and iptables -S output` + "\n"
	if got := stderr.String(); got != want {
		t.Errorf("stderr:\n got %s\nwant %s", got, want)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout: %s", stdout.String())
	}
}
