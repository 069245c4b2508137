package cli

import (
	"io"
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

// oneTunnel is a valid config with a tunnel on eth1.
const oneTunnel = `[[tunnel]]
name = "gre-site2"
underlay = "eth1"
remote = "203.0.113.1"
`

// gre-hook check prints one error per bad name, each on its own line
// starting "gre-hook: " and naming the file,
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
	plus := `contains '+', which iptables reads as a wildcard at the end of a name ("-o gre+" matches every interface whose name starts with "gre")`
	want := "gre-hook: warning: GRE_HOOK_INSECURE_CONFIG=1: the config is read without checking who owns it or can write it; this is for tests only\n" +
		"gre-hook: " + cfg + `:2:1: tunnel "gre+": name: "gre+" ` + plus + "\n" +
		"gre-hook: " + cfg + `:7:1: tunnel "gre%d": name: "gre%d" contains '%', which the kernel replaces with a number when it creates the link ("gre%d" becomes gre0, gre1, ...)` + "\n" +
		"gre-hook: " + cfg + `:8:1: tunnel "gre%d": underlay: "eth+" ` + plus + "\n" +
		"gre-hook: " + cfg + `:12:1: tunnel "gre\"q": name: "gre\"q" contains '"', which breaks reading gre-hook's rules back from iptables -S` + "\n" +
		"gre-hook: " + cfg + `:17:1: tunnel "gre!x": name: "gre!x" contains '!', which iptables reads as negation` + "\n" +
		"gre-hook: " + cfg + `:18:1: tunnel "gre!x": underlay: "eth 1" contains a space, which Linux forbids in interface names` + "\n" +
		"gre-hook: " + cfg + `:22:1: tunnel "gre*": name: "gre*" contains '*', which nftables reads as a wildcard in interface names` + "\n" +
		"gre-hook: " + cfg + `:23:1: tunnel "gre*": underlay: "eth1\a" contains '\a' (U+0007), a control character, which garbles logs and iptables -S output` + "\n"
	if got := stderr.String(); got != want {
		t.Errorf("stderr:\n got %s\nwant %s", got, want)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout: %s", stdout.String())
	}
}

// Every run that reads the config unchecked says so, check included.
func TestInsecureConfigWarns(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "gre-hook.toml")
	if err := os.WriteFile(cfg, []byte(oneTunnel), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(cfg, 0o666); err != nil {
		t.Fatal(err)
	}
	byEnv := "gre-hook: warning: GRE_HOOK_INSECURE_CONFIG=1: the config is read without checking who owns it or can write it; this is for tests only\n"
	byStanza := "gre-hook: warning: gre-hook-insecure-config yes (IF_GRE_HOOK_INSECURE_CONFIG=yes): the config is read without checking who owns it or can write it; this is for tests only\n"
	for _, tc := range []struct {
		name string
		args []string
		env  func(string) string
		want string
	}{
		{"check", []string{"check", "--config", cfg}, envOf("GRE_HOOK_INSECURE_CONFIG", "1"), byEnv},
		{"stanza option", []string{"check", "--config", cfg}, envOf("IF_GRE_HOOK_INSECURE_CONFIG", "yes"), byStanza},
		// A run for an interface without tunnels reads the config too,
		// and otherwise prints nothing.
		{"run with nothing to do", nil, envOf("IFACE", "eth9", "PHASE", "post-up", "GRE_HOOK_CONFIG", cfg, "GRE_HOOK_STATE_DIR", t.TempDir(), "IF_GRE_HOOK_INSECURE_CONFIG", "yes"), byStanza},
		{"dry run", []string{"--config", cfg, "--iface", "eth9", "--phase", "up", "--dry-run"}, envOf("GRE_HOOK_INSECURE_CONFIG", "1", "GRE_HOOK_STATE_DIR", t.TempDir()), byEnv},
		// Nothing is read for lo, so nothing is said.
		{"lo", nil, envOf("IFACE", "lo", "PHASE", "post-up", "GRE_HOOK_INSECURE_CONFIG", "1"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr strings.Builder
			if code := Main(tc.args, tc.env, io.Discard, &stderr, "t"); code != ExitOK {
				t.Errorf("exit %d\n%s", code, stderr.String())
			}
			if got := stderr.String(); got != tc.want {
				t.Errorf("stderr:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}
