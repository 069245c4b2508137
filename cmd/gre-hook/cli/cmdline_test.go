package cli

import (
	"io"
	"reflect"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/gre-hook/gre-hook/hook"
)

// The command line's own messages, exactly.
func TestCommandLineMessages(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"phase twice", []string{"--iface", "eth1", "--phase", "up", "--phase", "down"}, nil,
			"gre-hook: usage: --phase is given twice (try --help)\n"},
		{"config twice", []string{"check", "--config", "/a", "--config=/b"}, nil,
			"gre-hook: usage: --config is given twice (try --help)\n"},
		{"verbose twice, once as -v", []string{"check", "-v", "--verbose"}, nil,
			"gre-hook: usage: --verbose is given twice (-v is --verbose) (try --help)\n"},
		{"up --json names up", []string{"up", "--iface", "eth1", "--json"}, nil,
			"gre-hook: usage: --json does not go with up (try gre-hook up --help)\n"},
		{"--phase down --json names down", []string{"--iface", "eth1", "--phase", "down", "--json"}, nil,
			"gre-hook: usage: --json does not go with down (try gre-hook down --help)\n"},
		{"down --switch-config", []string{"down", "--iface", "eth1", "--switch-config"}, nil,
			"gre-hook: usage: --switch-config goes with up only: down takes down what gre-hook brought up, whichever config that came from\n"},
		{"check --dry-run", []string{"check", "--dry-run"}, nil,
			"gre-hook: usage: --dry-run does not go with check (try gre-hook check --help)\n"},
		{"two commands", []string{"check", "status"}, nil,
			"gre-hook: usage: unexpected argument \"status\" after the command check (try --help)\n"},
		{"unknown command after a flag", []string{"--config", "/c", "frob"}, nil,
			"gre-hook: usage: unknown command \"frob\" (try --help)\n"},
		{"strict without check", []string{"status", "--strict"}, nil,
			"gre-hook: usage: --strict does not go with status (try gre-hook status --help)\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			code := Main(tc.args, envOf(tc.env...), &stdout, &stderr, "t")
			if code != ExitUsage || stderr.String() != tc.want || stdout.Len() != 0 {
				t.Errorf("exit %d, want %d\nstderr: %q\nwant:   %q\nstdout: %q", code, ExitUsage, stderr.String(), tc.want, stdout.String())
			}
		})
	}
}

// Global flags go before or after the command.
func TestFlagsBeforeTheCommand(t *testing.T) {
	for _, tc := range []struct {
		args []string
		cmd  Command
		req  hook.Request
	}{
		{[]string{"--config", "/c", "check"}, CmdCheck, hook.Request{Config: "/c"}},
		{[]string{"-v", "check", "--config=/c"}, CmdCheck, hook.Request{Config: "/c", Verbose: true}},
		{[]string{"--config", "/c", "status", "--iface", "eth1"}, CmdStatus, hook.Request{Config: "/c", Iface: "eth1"}},
		{[]string{"--dry-run", "gc"}, CmdGC, hook.Request{DryRun: true}},
		{[]string{"--iface", "eth1", "up", "--dry-run"}, CmdRun, hook.Request{Iface: "eth1", Phase: hook.PhaseUp, DryRun: true, ByHand: true}},
	} {
		inv, err := Parse(tc.args, envOf())
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if inv.Command != tc.cmd || !reflect.DeepEqual(inv.Request, tc.req) {
			t.Errorf("%q: %s %+v, want %s %+v", tc.args, inv.Command, inv.Request, tc.cmd, tc.req)
		}
	}
}

// Each command has its own --help, on stdout, exit 0.
func TestCommandHelp(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		first string
	}{
		{[]string{"--help"}, "Usage:\n  gre-hook up|down"},
		{[]string{"up", "--help"}, "Usage: gre-hook up|down [--iface IFACE]"},
		{[]string{"down", "-h"}, "Usage: gre-hook up|down [--iface IFACE]"},
		{[]string{"--iface", "eth1", "--phase", "up", "--help"}, "Usage: gre-hook up|down [--iface IFACE]"},
		{[]string{"check", "--help"}, "Usage: gre-hook check [--config PATH] [--strict] [-v]"},
		{[]string{"--help", "check"}, "Usage: gre-hook check [--config PATH] [--strict] [-v]"},
		{[]string{"help", "check"}, "Usage: gre-hook check [--config PATH] [--strict] [-v]"},
		{[]string{"gc", "--help"}, "Usage: gre-hook gc [--config PATH] [--dry-run] [-v]"},
		{[]string{"status", "--help"}, "Usage: gre-hook status [--iface IFACE] [--json] [--config PATH]"},
		{[]string{"watch", "--help"}, "Usage: gre-hook watch [--config PATH] [-v]"},
	} {
		var stdout, stderr strings.Builder
		code := Main(tc.args, envOf(), &stdout, &stderr, "t")
		if code != ExitOK || !strings.HasPrefix(stdout.String(), tc.first) || stderr.Len() != 0 {
			t.Errorf("%q: exit %d, stdout starts %q, want %q; stderr %q", tc.args, code, firstLine(stdout.String()), tc.first, stderr.String())
		}
	}
	// check -v is in the help.
	var stdout strings.Builder
	Main([]string{"--help"}, envOf(), &stdout, io.Discard, "t")
	if !strings.Contains(stdout.String(), "gre-hook check [--config PATH] [--strict] [-v]") {
		t.Errorf("the help does not show check -v:\n%s", stdout.String())
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// A run that needs root says so, first, when it is not root.
func TestNeedsRoot(t *testing.T) {
	old := geteuid
	geteuid = func() int { return 1000 }
	t.Cleanup(func() { geteuid = old })
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"up", "--iface", "eth1"}, "gre-hook: up on eth1 needs root: it changes links, addresses, routes and iptables rules (run it as root, or add --dry-run to print the plan)\n"},
		{[]string{"--iface", "eth1", "--phase", "down"}, "gre-hook: down on eth1 needs root: it changes links, addresses, routes and iptables rules (run it as root, or add --dry-run to print the plan)\n"},
		{[]string{"gc"}, "gre-hook: gc needs root: it removes links, routes and iptables rules (run it as root, or add --dry-run to print what it would remove)\n"},
		{[]string{"status"}, "gre-hook: status needs root: it reads iptables rules and gre-hook's records (run it as root)\n"},
		{[]string{"watch"}, "gre-hook: watch needs root: it sends keepalives on raw sockets and changes routes (run it as root)\n"},
	} {
		var stderr strings.Builder
		code := Main(tc.args, envOf("GRE_HOOK_CONFIG", "/nonexistent/gre-hook.toml"), io.Discard, &stderr, "t")
		if code != ExitFailed || stderr.String() != tc.want {
			t.Errorf("%q: exit %d, stderr %q\nwant exit %d, %q", tc.args, code, stderr.String(), ExitFailed, tc.want)
		}
	}
	// check and a dry run need no root.
	var stderr strings.Builder
	if code := Main([]string{"check", "--config", "/nonexistent/gre-hook.toml"}, envOf(), io.Discard, &stderr, "t"); code != ExitUsage || strings.Contains(stderr.String(), "root") {
		t.Errorf("check as non-root: exit %d %q", code, stderr.String())
	}
}

func TestVersion(t *testing.T) {
	info := &debug.BuildInfo{Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "3e0070c5f6a7b8c9d0e1f2a3b4c5d6e7f8091a2b"}, {Key: "vcs.modified", Value: "true"}}}
	for _, tc := range []struct {
		stamp string
		info  *debug.BuildInfo
		want  string
	}{
		{"0.1.0", info, "0.1.0"},
		{"dev", info, "dev (commit 3e0070c5f6a7, modified)"},
		{"dev", &debug.BuildInfo{Settings: info.Settings[:1]}, "dev (commit 3e0070c5f6a7)"},
		{"dev", &debug.BuildInfo{}, "dev (commit unknown: built without version control information)"},
		{"dev", nil, "dev (commit unknown: built without version control information)"},
	} {
		if got := versionOf(tc.stamp, tc.info); got != tc.want {
			t.Errorf("versionOf(%q) = %q, want %q", tc.stamp, got, tc.want)
		}
	}
}
