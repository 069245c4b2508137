package cli

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gre-hook/gre-hook/hook"
)

func envOf(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestParse(t *testing.T) {
	ifup := func(phase string, more ...string) func(string) string {
		return envOf(append([]string{"IFACE", "eth1", "PHASE", phase, "MODE", "start", "ADDRFAM", "inet", "METHOD", "static"}, more...)...)
	}
	for _, tc := range []struct {
		name  string
		args  []string
		env   func(string) string
		cmd   Command
		req   hook.Request
		usage bool
		json  bool
	}{
		{name: "ifupdown post-up", env: ifup("post-up"), cmd: CmdRun, req: hook.Request{Iface: "eth1", Phase: hook.PhaseUp}},
		{name: "ifupdown pre-down", env: ifup("pre-down"), cmd: CmdRun, req: hook.Request{Iface: "eth1", Phase: hook.PhaseDown}},
		{name: "ifupdown2 up", env: ifup("up"), cmd: CmdRun, req: hook.Request{Iface: "eth1", Phase: hook.PhaseUp}},
		{name: "ifupdown2 down", env: ifup("down"), cmd: CmdRun, req: hook.Request{Iface: "eth1", Phase: hook.PhaseDown}},
		{name: "stanza line up", args: []string{"up"}, env: ifup("post-up"), cmd: CmdRun, req: hook.Request{Iface: "eth1", Phase: hook.PhaseUp}},
		{name: "stanza line down", args: []string{"down"}, env: ifup("pre-down"), cmd: CmdRun, req: hook.Request{Iface: "eth1", Phase: hook.PhaseDown}},
		{name: "ifupdown2 stanza line up", args: []string{"up"}, env: envOf("IFACE", "eth1", "LOGICAL", "eth1", "METHOD", "static", "ADDRFAM", "inet"), cmd: CmdRun, req: hook.Request{Iface: "eth1", Phase: hook.PhaseUp, Line: true}},
		{name: "ifupdown2 stanza line down", args: []string{"down"}, env: envOf("IFACE", "eth1", "ADDRFAM", "inet"), cmd: CmdRun, req: hook.Request{Iface: "eth1", Phase: hook.PhaseDown, Line: true}},
		{name: "stanza line with config after", args: []string{"down", "--config", "/c"}, env: envOf("IFACE", "eth1"), cmd: CmdRun, req: hook.Request{Iface: "eth1", Phase: hook.PhaseDown, Config: "/c", Line: true}},
		{name: "stanza line with config before", args: []string{"--config", "/c", "up"}, env: envOf("IFACE", "eth1"), cmd: CmdRun, req: hook.Request{Iface: "eth1", Phase: hook.PhaseUp, Config: "/c", Line: true}},
		{name: "positional phase by hand", args: []string{"up", "--iface", "eth2", "--dry-run"}, env: envOf(), cmd: CmdRun, req: hook.Request{Iface: "eth2", Phase: hook.PhaseUp, DryRun: true, ByHand: true}},
		{name: "positional phase on lo", args: []string{"up"}, env: envOf("IFACE", "lo"), cmd: CmdNothing},
		{name: "positional phase without IFACE", args: []string{"up"}, env: envOf(), usage: true},
		{name: "switch config", args: []string{"up", "--iface", "eth1", "--config", "/new", "--switch-config"}, env: envOf(), cmd: CmdRun, req: hook.Request{Iface: "eth1", Phase: hook.PhaseUp, Config: "/new", SwitchConfig: true, ByHand: true}},
		{name: "switch config with gc", args: []string{"gc", "--switch-config"}, env: envOf(), usage: true},
		{name: "phase twice", args: []string{"up", "--iface", "eth1", "--phase", "down"}, env: envOf(), usage: true},
		{name: "ifupdown2 bare stanza line", env: envOf("IFACE", "eth1", "LOGICAL", "eth1", "METHOD", "static", "ADDRFAM", "inet"), usage: true},
		{name: "pre-up", env: ifup("pre-up"), cmd: CmdNothing},
		{name: "post-down", env: ifup("post-down"), cmd: CmdNothing},
		{name: "lo", env: envOf("IFACE", "lo", "PHASE", "post-up"), cmd: CmdNothing},
		{name: "--all", env: envOf("IFACE", "--all", "PHASE", "post-up"), cmd: CmdNothing},
		{name: "meta", env: ifup("post-up", "ADDRFAM", "meta"), cmd: CmdNothing},
		{name: "verbosity", env: ifup("post-up", "VERBOSITY", "1"), cmd: CmdRun, req: hook.Request{Iface: "eth1", Phase: hook.PhaseUp, Verbose: true}},
		{name: "stanza config", env: ifup("post-up", "IF_GRE_HOOK_CONFIG", "/stanza"), cmd: CmdRun, req: hook.Request{Iface: "eth1", Phase: hook.PhaseUp, Config: "/stanza"}},
		{name: "env config beats stanza", env: ifup("post-up", "IF_GRE_HOOK_CONFIG", "/stanza", "GRE_HOOK_CONFIG", "/env"), cmd: CmdRun, req: hook.Request{Iface: "eth1", Phase: hook.PhaseUp, Config: "/env"}},
		{name: "flag config beats env", args: []string{"--config", "/flag"}, env: ifup("post-up", "IF_GRE_HOOK_CONFIG", "/stanza", "GRE_HOOK_CONFIG", "/env"), cmd: CmdRun, req: hook.Request{Iface: "eth1", Phase: hook.PhaseUp, Config: "/flag"}},
		{name: "bad iface from env", env: envOf("IFACE", "a/b", "PHASE", "post-up"), usage: true},
		{name: "wildcard iface from env", env: envOf("IFACE", "eth+", "PHASE", "post-up"), usage: true},
		{name: "wildcard iface by hand", args: []string{"--iface", "eth+", "--phase", "up"}, env: envOf(), usage: true},
		{name: "template iface by hand", args: []string{"--iface", "gre%d", "--phase", "down"}, env: envOf(), usage: true},
		{name: "quote in iface for a stanza line", args: []string{"up"}, env: envOf("IFACE", `eth"1`), usage: true},
		{name: "control character in iface", env: envOf("IFACE", "eth1\x1b", "PHASE", "post-up"), usage: true},
		{name: "status wildcard iface", args: []string{"status", "--iface", "eth*"}, env: envOf(), usage: true},
		{name: "empty env", env: envOf(), usage: true},
		{name: "by hand", args: []string{"--iface", "eth1", "--phase", "up", "--dry-run", "-v"}, env: envOf(), cmd: CmdRun, req: hook.Request{Iface: "eth1", Phase: hook.PhaseUp, DryRun: true, Verbose: true, ByHand: true}},
		{name: "by hand down", args: []string{"--iface=eth2", "--phase=down"}, env: envOf(), cmd: CmdRun, req: hook.Request{Iface: "eth2", Phase: hook.PhaseDown, ByHand: true}},
		{name: "by hand flags beat env", args: []string{"--iface", "eth2", "--phase", "down"}, env: ifup("post-up"), cmd: CmdRun, req: hook.Request{Iface: "eth2", Phase: hook.PhaseDown, ByHand: true}},
		{name: "iface without phase", args: []string{"--iface", "eth1"}, env: envOf(), usage: true},
		{name: "phase without iface", args: []string{"--phase", "up"}, env: envOf(), usage: true},
		{name: "bad phase by hand", args: []string{"--iface", "eth1", "--phase", "post-up-ish"}, env: envOf(), usage: true},
		{name: "long iface", args: []string{"--iface", "abcdefghijklmnop", "--phase", "up"}, env: envOf(), usage: true},
		{name: "unknown flag", args: []string{"--frobnicate"}, env: envOf(), usage: true},
		{name: "stray argument", args: []string{"--iface", "eth1", "--phase", "up", "extra"}, env: envOf(), usage: true},
		{name: "unknown command", args: []string{"frob"}, env: envOf(), usage: true},
		{name: "json without status", args: []string{"--iface", "eth1", "--phase", "up", "--json"}, env: envOf(), usage: true},
		{name: "check", args: []string{"check", "--config", "/c"}, env: envOf(), cmd: CmdCheck, req: hook.Request{Config: "/c"}},
		{name: "check with iface", args: []string{"check", "--iface", "eth1"}, env: envOf(), usage: true},
		{name: "check with dry-run", args: []string{"check", "--dry-run"}, env: envOf(), usage: true},
		{name: "gc", args: []string{"gc", "--dry-run"}, env: envOf(), cmd: CmdGC, req: hook.Request{DryRun: true}},
		{name: "gc with phase", args: []string{"gc", "--phase", "up"}, env: envOf(), usage: true},
		{name: "status", args: []string{"status", "--iface", "eth1", "--json"}, env: envOf(), cmd: CmdStatus, req: hook.Request{Iface: "eth1"}, json: true},
		{name: "status bad iface", args: []string{"status", "--iface", "a b"}, env: envOf(), usage: true},
		{name: "status with dry-run", args: []string{"status", "--dry-run"}, env: envOf(), usage: true},
		{name: "help", args: []string{"--help"}, env: envOf(), cmd: CmdHelp},
		{name: "help command", args: []string{"help"}, env: envOf(), cmd: CmdHelp},
		{name: "version", args: []string{"--version"}, env: envOf(), cmd: CmdVersion},
		{name: "insecure", args: []string{"check"}, env: envOf("GRE_HOOK_INSECURE_CONFIG", "1"), cmd: CmdCheck, req: hook.Request{AllowInsecure: true}},
		{name: "insecure from the stanza", args: []string{"check"}, env: envOf("IF_GRE_HOOK_INSECURE_CONFIG", "yes"), cmd: CmdCheck, req: hook.Request{AllowInsecure: true}},
		{name: "insecure only with 1", args: []string{"check"}, env: envOf("GRE_HOOK_INSECURE_CONFIG", "yes"), cmd: CmdCheck, req: hook.Request{}},
		{name: "bad lock wait", env: ifup("post-up", "GRE_HOOK_LOCK_WAIT", "soon"), usage: true},
		// strconv.ParseFloat takes all of these, and NaN compares false
		// with every bound.
		{name: "lock wait NaN", env: ifup("post-up", "GRE_HOOK_LOCK_WAIT", "NaN"), usage: true},
		{name: "lock wait nan", env: ifup("post-up", "GRE_HOOK_LOCK_WAIT", "nan"), usage: true},
		{name: "lock wait Inf", env: ifup("post-up", "GRE_HOOK_LOCK_WAIT", "Inf"), usage: true},
		{name: "lock wait +Inf", env: ifup("post-up", "GRE_HOOK_LOCK_WAIT", "+Inf"), usage: true},
		{name: "lock wait -Inf", env: ifup("post-up", "GRE_HOOK_LOCK_WAIT", "-Inf"), usage: true},
		{name: "lock wait infinity", env: ifup("post-up", "GRE_HOOK_LOCK_WAIT", "infinity"), usage: true},
		{name: "lock wait -1", env: ifup("post-up", "GRE_HOOK_LOCK_WAIT", "-1"), usage: true},
		{name: "lock wait 1e400", env: ifup("post-up", "GRE_HOOK_LOCK_WAIT", "1e400"), usage: true},
		{name: "lock wait 3601", env: ifup("post-up", "GRE_HOOK_LOCK_WAIT", "3601"), usage: true},
		{name: "bad xtables wait", env: ifup("post-up", "GRE_HOOK_XTABLES_WAIT", "0"), usage: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv, err := Parse(tc.args, tc.env)
			if tc.usage {
				if !errors.Is(err, ErrUsage) {
					t.Fatalf("got %+v, %v; want an error wrapping ErrUsage", inv, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if inv.Command != tc.cmd {
				t.Errorf("command %s, want %s", inv.Command, tc.cmd)
			}
			if tc.cmd == CmdNothing || tc.cmd == CmdHelp || tc.cmd == CmdVersion {
				return
			}
			if !reflect.DeepEqual(inv.Request, tc.req) {
				t.Errorf("request %+v, want %+v", inv.Request, tc.req)
			}
			if inv.JSON != tc.json {
				t.Errorf("json %v", inv.JSON)
			}
		})
	}
}

func TestParseSettings(t *testing.T) {
	inv, err := Parse(nil, envOf("IFACE", "eth1", "PHASE", "post-up", "GRE_HOOK_STATE_DIR", "/tmp/s", "GRE_HOOK_LOCK_WAIT", "1.5", "GRE_HOOK_XTABLES_WAIT", "3"))
	if err != nil {
		t.Fatal(err)
	}
	if inv.StateDir != "/tmp/s" || inv.LockWait != 1500*time.Millisecond || inv.XtablesWait != 3 {
		t.Errorf("settings: %+v", inv)
	}
	inv, _ = Parse(nil, envOf("IFACE", "eth1", "PHASE", "post-up"))
	if inv.LockWait != 30*time.Second || inv.XtablesWait != 10 || inv.StateDir != "" {
		t.Errorf("defaults: %+v", inv)
	}
}

// A stanza line under ifupdown2 gets IFACE without PHASE. gre-hook must
// not exit 0 silently then: it says which line to write.
func TestBareStanzaLineUnderIfupdown2(t *testing.T) {
	var stderr strings.Builder
	code := Main(nil, envOf("IFACE", "eth1", "LOGICAL", "eth1", "METHOD", "static", "ADDRFAM", "inet"), io.Discard, &stderr, "t")
	if code != ExitUsage {
		t.Errorf("exit %d, want %d", code, ExitUsage)
	}
	for _, want := range []string{"PHASE is not set", "post-up /usr/sbin/gre-hook up", "pre-down /usr/sbin/gre-hook down"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("message lacks %q:\n%s", want, stderr.String())
		}
	}
}

// An ifupdown2 post-up line sees no stanza options; one that finds no
// tunnels must say so, since ifupdown2 shows output only of failures.
func TestIfupdown2LineWithoutTunnelsFails(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "empty.toml")
	if err := os.WriteFile(cfg, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	env := envOf("IFACE", "eth1", "LOGICAL", "eth1", "METHOD", "static", "ADDRFAM", "inet",
		"GRE_HOOK_CONFIG", cfg, "GRE_HOOK_INSECURE_CONFIG", "1", "GRE_HOOK_STATE_DIR", t.TempDir())
	var stderr strings.Builder
	if code := Main([]string{"up"}, env, io.Discard, &stderr, "t"); code != ExitUsage || !strings.Contains(stderr.String(), "--config PATH") {
		t.Errorf("up line: exit %d\n%s", code, stderr.String())
	}
	// A pre-down line with nothing to take down, and a line under
	// ifupdown (PHASE set), say nothing but the test setting's warning.
	quiet := func(out string) bool {
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if l != "" && !strings.Contains(l, "GRE_HOOK_INSECURE_CONFIG=1") {
				return false
			}
		}
		return true
	}
	stderr.Reset()
	if code := Main([]string{"down"}, env, io.Discard, &stderr, "t"); code != ExitOK || !quiet(stderr.String()) {
		t.Errorf("down line: exit %d\n%s", code, stderr.String())
	}
	withPhase := func(k string) string {
		if k == "PHASE" {
			return "post-up"
		}
		return env(k)
	}
	stderr.Reset()
	if code := Main([]string{"up"}, withPhase, io.Discard, &stderr, "t"); code != ExitOK || !quiet(stderr.String()) {
		t.Errorf("ifupdown line: exit %d\n%s", code, stderr.String())
	}
}

func TestMainExitCodes(t *testing.T) {
	if code := Main([]string{"frob"}, envOf(), io.Discard, io.Discard, "t"); code != ExitUsage {
		t.Errorf("bad usage: exit %d", code)
	}
	if code := Main(nil, envOf("IFACE", "lo", "PHASE", "post-up"), io.Discard, io.Discard, "t"); code != ExitOK {
		t.Errorf("lo: exit %d", code)
	}
	if code := Main([]string{"check", "--config", "/nonexistent/gre-hook.toml"}, envOf(), io.Discard, io.Discard, "t"); code != ExitUsage {
		t.Errorf("check of a missing config: exit %d", code)
	}
}

// gc with a config that does not load stops before it changes anything:
// what no config explains would be everything. It does not even take the
// lock. Should it ever go on, the state directory, under a regular file,
// makes it fail at that lock, before it touches the kernel.
func TestGCRefusesBrokenConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gre-hook.toml")
	if err := os.WriteFile(cfg, []byte("[[tunnel]]\nname = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	env := envOf("GRE_HOOK_INSECURE_CONFIG", "1", "GRE_HOOK_STATE_DIR", filepath.Join(notDir, "run"))
	var stderr strings.Builder
	code := Main([]string{"gc", "--config", cfg}, env, io.Discard, &stderr, "t")
	if want := "gre-hook: gc: refusing to run with a broken config: " + cfg + ":1:1: tunnel #1: underlay: must not be empty\n" +
		"gre-hook: " + cfg + ":1:1: tunnel #1: remote: is required\n" +
		"gre-hook: " + cfg + ":2:1: tunnel #1: name: must be a string, not an integer (1)\n"; code != ExitUsage || !strings.Contains(stderr.String(), want) {
		t.Errorf("exit %d, want %d and %q in\n%s", code, ExitUsage, want, stderr.String())
	}
}
