package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gre-hook/gre-hook/hook"
	"github.com/gre-hook/gre-hook/hook/config"
)

// Command is what an invocation asks for.
type Command string

const (
	CmdRun     Command = "run"     // up or down, by hand or from ifupdown
	CmdCheck   Command = "check"   // validate the config
	CmdGC      Command = "gc"      // remove what no config explains
	CmdStatus  Command = "status"  // compare the kernel with the config
	CmdWatch   Command = "watch"   // send keepalives, fail over (hook/watch)
	CmdVersion Command = "version" // print the version
	CmdHelp    Command = "help"    // print usage
	CmdNothing Command = "nothing" // an ifupdown call gre-hook has no work for
)

// Invocation is a parsed command line and environment.
type Invocation struct {
	Command Command
	Request hook.Request
	JSON    bool
	// Strict makes check fail on warnings too.
	Strict bool
	// HelpFor is the command whose --help was asked for, or "".
	HelpFor string
	// Settings from the environment.
	StateDir     string
	LockWait     time.Duration
	XtablesWait  int
	CommandLimit time.Duration
	// InsecureConfig names the setting that turned off the config file
	// checks (Request.AllowInsecure), for the warning every run prints.
	InsecureConfig string
}

// ErrUsage marks errors in how gre-hook was called.
var ErrUsage = errors.New("usage")

func usageErr(format string, args ...interface{}) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...))
}

// Usage is the --help text.
const Usage = `Usage:
  gre-hook up|down                           in a post-up/pre-down line (ifupdown or
                                             ifupdown2): the phase here, IFACE from the
                                             environment
  gre-hook                                   as an ifupdown hook: reads IFACE and PHASE
  gre-hook --iface IFACE --phase up|down     bring an underlay's tunnels up or down
  gre-hook check [--config PATH] [--strict] [-v]
                                             validate the configuration: every error,
                                             then warnings (--strict fails on those)
  gre-hook gc [--config PATH] [--dry-run]    remove tunnels, routes and rules of
                                             gre-hook's that no configuration explains
  gre-hook status [--iface IFACE] [--json] [--config PATH]
                                             compare the kernel with the configuration
  gre-hook watch [--config PATH] [-v]        send keepalives on the tunnels that are up,
                                             withdraw a dead peer's routes, and follow
                                             remotes given as names and local = "auto"
                                             (runs in the foreground; SIGHUP re-reads
                                             the config)
  gre-hook --version

Options:
  --config PATH   config file, or directory of *.toml files
                  (default /etc/gre-hook/gre-hook.toml and /etc/gre-hook/conf.d/*.toml)
  --dry-run       print the changes as ip and iptables commands; change nothing
  --switch-config with up: take over an underlay whose tunnels came from
                  another config (gre-hook remembers each underlay's config;
                  runs reading another one leave its tunnels alone)
  -v, --verbose   also say when there is nothing to do
  --json          status as JSON
  --strict        with check: fail on warnings too
  -h, --help      this help; after a command, that command's help
                  (options go before or after the command, each once)

Environment:
  IFACE, PHASE    set by ifupdown (PHASE post-up or up brings tunnels up,
                  pre-down or down takes them down; other phases do nothing)
  MODE, ADDRFAM, VERBOSITY, IF_GRE_HOOK_CONFIG
                  also from ifupdown; the stanza option "gre-hook-config PATH"
                  arrives as IF_GRE_HOOK_CONFIG
  GRE_HOOK_CONFIG           config path, below --config
  GRE_HOOK_STATE_DIR        record and lock directory (default /run/gre-hook)
  GRE_HOOK_LOCK_WAIT        seconds to wait for another run's lock (default 30)
  GRE_HOOK_XTABLES_WAIT     seconds iptables waits for the xtables lock (default 10)
  GRE_HOOK_INSECURE_CONFIG  1 reads the config without checking that only root
                            can write it (for tests only; warns on every run)

Exit status: 0 done or nothing to do, 1 a change failed, 2 bad usage or config,
3 status found drift.
`

// skipIface reports an ifupdown call for an interface gre-hook never has
// tunnels on: the loopback, ifupdown's --all pseudo-interface and its
// meta stanzas.
func skipIface(iface string, getenv func(string) string) bool {
	return iface == "--all" || iface == "lo" || getenv("ADDRFAM") == "meta"
}

// Parse turns arguments (without the program name) and the environment
// into an Invocation. It never touches the system.
func Parse(args []string, getenv func(string) string) (*Invocation, error) {
	// networkd-dispatcher's and NetworkManager's calls become the ifupdown
	// hook call they amount to (dispatcher.go).
	if d, ok := parseDispatch(args, getenv); ok {
		if d.Phase == "" {
			return &Invocation{Command: CmdNothing}, nil
		}
		args, getenv = nil, d.hookEnv(getenv)
	}
	inv := &Invocation{Command: CmdRun, LockWait: 30 * time.Second, XtablesWait: 10, CommandLimit: 30 * time.Second}
	inv.StateDir = getenv("GRE_HOOK_STATE_DIR")
	if inv.StateDir != "" && !filepath.IsAbs(inv.StateDir) {
		return nil, usageErr("GRE_HOOK_STATE_DIR=%q is not an absolute path; records and the lock would land in whatever directory gre-hook is run from", inv.StateDir)
	}
	if v := getenv("GRE_HOOK_LOCK_WAIT"); v != "" {
		n, err := strconv.ParseFloat(v, 64)
		// ParseFloat takes "NaN", which every comparison calls false, so
		// the range is written to hold only for real numbers in it.
		if err != nil || !(n >= 0 && n <= 3600) {
			return nil, usageErr("GRE_HOOK_LOCK_WAIT=%q is not a number of seconds from 0 to 3600", v)
		}
		inv.LockWait = time.Duration(n * float64(time.Second))
	}
	if v := getenv("GRE_HOOK_XTABLES_WAIT"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 3600 {
			return nil, usageErr("GRE_HOOK_XTABLES_WAIT=%q is not a whole number of seconds from 1 to 3600", v)
		}
		inv.XtablesWait = n
	}
	req := &inv.Request
	switch {
	case getenv("GRE_HOOK_INSECURE_CONFIG") == "1":
		inv.InsecureConfig = "GRE_HOOK_INSECURE_CONFIG=1"
	case getenv("IF_GRE_HOOK_INSECURE_CONFIG") == "yes":
		inv.InsecureConfig = "gre-hook-insecure-config yes (IF_GRE_HOOK_INSECURE_CONFIG=yes)"
	}
	req.AllowInsecure = inv.InsecureConfig != ""

	// Flags may come before or after the command, and each at most once.
	if err := repeatedFlag(args); err != nil {
		return nil, err
	}
	fs := flag.NewFlagSet("gre-hook", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var iface, phase, cfg string
	var dry, verbose, version, help, jsonOut, switchCfg, strict bool
	fs.StringVar(&iface, "iface", "", "")
	fs.StringVar(&phase, "phase", "", "")
	fs.StringVar(&cfg, "config", "", "")
	fs.BoolVar(&dry, "dry-run", false, "")
	fs.BoolVar(&verbose, "v", false, "")
	fs.BoolVar(&verbose, "verbose", false, "")
	fs.BoolVar(&version, "version", false, "")
	fs.BoolVar(&help, "h", false, "")
	fs.BoolVar(&help, "help", false, "")
	fs.BoolVar(&jsonOut, "json", false, "")
	fs.BoolVar(&switchCfg, "switch-config", false, "")
	fs.BoolVar(&strict, "strict", false, "")
	var words []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			return nil, usageErr("%v (try --help)", err)
		}
		if rest = fs.Args(); len(rest) == 0 {
			break
		}
		words, rest = append(words, rest[0]), rest[1:]
	}

	// A phase named on the command line: "gre-hook up" in a post-up line.
	// ifupdown2 gives stanza commands no PHASE, so this is the form that
	// works under both managers.
	var argPhase string
	if len(words) > 0 {
		switch Command(words[0]) {
		case "up", "down":
			argPhase = words[0]
		case CmdCheck, CmdGC, CmdStatus, CmdWatch:
			inv.Command = Command(words[0])
		case CmdHelp:
			help = true
			words = words[1:]
		default:
			return nil, usageErr("unknown command %q (try --help)", words[0])
		}
		if len(words) > 1 {
			return nil, usageErr("unexpected argument %q after the command %s (try --help)", words[1], words[0])
		}
		if help && len(words) == 1 {
			if _, ok := commandUsage[words[0]]; !ok {
				return nil, usageErr("no help for %q: it is not a command (try --help)", words[0])
			}
		}
	}
	switch {
	case help:
		if inv.HelpFor == "" && len(words) > 0 {
			inv.HelpFor = words[0]
		}
		if inv.HelpFor == "" && (set(fs, "phase") || set(fs, "iface")) {
			inv.HelpFor = "up"
		}
		inv.Command = CmdHelp
		if _, ok := commandUsage[inv.HelpFor]; !ok && inv.HelpFor != "" {
			return nil, usageErr("no help for %q: it is not a command (try --help)", inv.HelpFor)
		}
		return inv, nil
	case version:
		inv.Command = CmdVersion
		return inv, nil
	}
	flags := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { flags[f.Name] = true })
	// name is the command as the user would write it, for messages.
	name := string(inv.Command)
	if inv.Command == CmdRun {
		switch {
		case argPhase != "":
			name = argPhase
		case phase == "up" || phase == "down":
			name = phase
		default:
			name = "up/down"
		}
	}
	only := func(allowed ...string) error {
		ok := map[string]bool{"config": true, "v": true, "verbose": true}
		for _, a := range allowed {
			ok[a] = true
		}
		for _, f := range sortedFlags(flags) {
			if !ok[f] {
				help := "gre-hook " + name + " --help"
				if name == "up/down" {
					help = "gre-hook up --help"
				}
				return usageErr("--%s does not go with %s (try %s)", f, name, help)
			}
		}
		return nil
	}

	req.Config = cfg
	if req.Config == "" {
		req.Config = getenv("GRE_HOOK_CONFIG")
	}
	if req.Config == "" {
		req.Config = getenv("IF_GRE_HOOK_CONFIG")
	}
	req.DryRun = dry
	req.SwitchConfig = switchCfg
	req.Verbose = verbose || getenv("VERBOSITY") == "1"
	inv.JSON = jsonOut
	inv.Strict = strict

	switch inv.Command {
	case CmdCheck:
		return inv, only("strict")
	case CmdWatch:
		return inv, only()
	case CmdGC:
		return inv, only("dry-run")
	case CmdStatus:
		if err := only("iface", "json"); err != nil {
			return nil, err
		}
		if iface != "" {
			if msg := config.ValidIfName(iface); msg != "" {
				return nil, usageErr("--iface: %s", msg)
			}
		}
		req.Iface = iface
		return inv, nil
	}
	if err := only("iface", "phase", "dry-run", "switch-config"); err != nil {
		return nil, err
	}
	if switchCfg && (argPhase == "down" || phase == "down" || phase == "pre-down") {
		return nil, usageErr("--switch-config goes with up only: down takes down what gre-hook brought up, whichever config that came from")
	}

	fromEnv := !flags["iface"] && !flags["phase"] && argPhase == ""
	switch {
	case argPhase != "":
		if flags["phase"] {
			return nil, usageErr("the phase is given twice: %q and --phase %q", argPhase, phase)
		}
		phase = argPhase
		if !flags["iface"] {
			req.Line = getenv("PHASE") == ""
			iface = getenv("IFACE")
			if iface == "" {
				return nil, usageErr("%s: no interface: IFACE is not set; by hand, add --iface IFACE", argPhase)
			}
			if skipIface(iface, getenv) {
				inv.Command = CmdNothing
				return inv, nil
			}
		}
	case fromEnv:
		iface, phase = getenv("IFACE"), getenv("PHASE")
		if iface == "" && phase == "" {
			return nil, usageErr("no IFACE and PHASE in the environment; by hand, use --iface IFACE --phase up|down (try --help)")
		}
		// ifupdown calls hooks for every interface and phase; most are
		// not ours, and those must stay silent and cheap.
		if skipIface(iface, getenv) {
			inv.Command = CmdNothing
			return inv, nil
		}
		if iface != "" && phase == "" {
			// ifupdown2 runs post-up and pre-down lines with IFACE but
			// without PHASE or MODE; which one this is cannot be told, and
			// doing nothing silently would leave the site unjoined.
			return nil, usageErr("IFACE=%s but PHASE is not set, so the phase is unknown (ifupdown2 sets no PHASE for stanza commands); "+
				"write the phase in the stanza: \"post-up /usr/sbin/gre-hook up\" and \"pre-down /usr/sbin/gre-hook down\"", iface)
		}
	case !flags["iface"] || !flags["phase"]:
		return nil, usageErr("--iface and --phase go together")
	}
	switch phase {
	case "up", "post-up":
		req.Phase = hook.PhaseUp
	case "down", "pre-down":
		req.Phase = hook.PhaseDown
	default:
		if fromEnv {
			inv.Command = CmdNothing
			return inv, nil
		}
		return nil, usageErr("--phase %q is not up or down", phase)
	}
	if msg := config.ValidIfName(iface); msg != "" {
		return nil, usageErr("interface name %s", msg)
	}
	req.Iface = iface
	req.ByHand = flags["iface"]
	return inv, nil
}

func set(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

func sortedFlags(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// valueFlags take a value in the next argument unless written --f=v.
var valueFlags = map[string]bool{"iface": true, "phase": true, "config": true}

// flagAlias gives the name a flag is counted under.
var flagAlias = map[string]string{"v": "verbose", "h": "help"}

// repeatedFlag refuses a flag given twice: the flag package would take
// the last one in silence, and "--phase up --phase down" is a mistake
// whichever way it is read.
func repeatedFlag(args []string) error {
	seen := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if len(a) < 2 || a[0] != '-' {
			continue
		}
		n := strings.TrimLeft(a, "-")
		hasValue := strings.Contains(n, "=")
		if hasValue {
			n = n[:strings.IndexByte(n, '=')]
		}
		if valueFlags[n] && !hasValue {
			i++
		}
		key := n
		if alias, ok := flagAlias[n]; ok {
			key = alias
		}
		if prev, ok := seen[key]; ok {
			if prev != n || n != key {
				return usageErr("--%s is given twice (-%s is --%s) (try --help)", key, firstShort(prev, n, key), key)
			}
			return usageErr("--%s is given twice (try --help)", key)
		}
		seen[key] = n
	}
	return nil
}

// firstShort is the short spelling among a and b.
func firstShort(a, b, long string) string {
	if a != long {
		return a
	}
	return b
}
