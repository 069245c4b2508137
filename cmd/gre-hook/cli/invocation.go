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
	if err := inv.fromEnv(getenv); err != nil {
		return nil, err
	}
	fl, err := parseFlags(args)
	if err != nil {
		return nil, err
	}
	// A phase named on the command line: "gre-hook up" in a post-up line.
	// ifupdown2 gives stanza commands no PHASE, so this is the form that
	// works under both managers.
	argPhase, err := inv.command(fl)
	if err != nil {
		return nil, err
	}
	switch {
	case fl.help:
		if inv.HelpFor == "" && len(fl.words) > 0 {
			inv.HelpFor = fl.words[0]
		}
		if inv.HelpFor == "" && (fl.set["phase"] || fl.set["iface"]) {
			inv.HelpFor = "up"
		}
		inv.Command = CmdHelp
		if _, ok := commandUsage[inv.HelpFor]; !ok && inv.HelpFor != "" {
			return nil, usageErr("no help for %q: it is not a command (try --help)", inv.HelpFor)
		}
		return inv, nil
	case fl.version:
		inv.Command = CmdVersion
		return inv, nil
	}
	req := &inv.Request
	req.Config = fl.config
	if req.Config == "" {
		req.Config = getenv("GRE_HOOK_CONFIG")
	}
	if req.Config == "" {
		req.Config = getenv("IF_GRE_HOOK_CONFIG")
	}
	req.DryRun = fl.dry
	req.SwitchConfig = fl.switchCfg
	req.Verbose = fl.verbose || getenv("VERBOSITY") == "1"
	inv.JSON = fl.json
	inv.Strict = fl.strict
	only := func(allowed ...string) error { return fl.only(inv.Command, argPhase, allowed...) }

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
		if fl.iface != "" {
			if msg := config.ValidIfName(fl.iface); msg != "" {
				return nil, usageErr("--iface: %s", msg)
			}
		}
		req.Iface = fl.iface
		return inv, nil
	}
	if err := only("iface", "phase", "dry-run", "switch-config"); err != nil {
		return nil, err
	}
	if fl.switchCfg && (argPhase == "down" || fl.phase == "down" || fl.phase == "pre-down") {
		return nil, usageErr("--switch-config goes with up only: down takes down what gre-hook brought up, whichever config that came from")
	}
	if err := inv.target(fl, argPhase, getenv); err != nil {
		return nil, err
	}
	return inv, nil
}

// fromEnv takes the settings the environment gives every command.
func (inv *Invocation) fromEnv(getenv func(string) string) error {
	inv.StateDir = getenv("GRE_HOOK_STATE_DIR")
	if inv.StateDir != "" && !filepath.IsAbs(inv.StateDir) {
		return usageErr("GRE_HOOK_STATE_DIR=%q is not an absolute path; records and the lock would land in whatever directory gre-hook is run from", inv.StateDir)
	}
	if v := getenv("GRE_HOOK_LOCK_WAIT"); v != "" {
		n, err := strconv.ParseFloat(v, 64)
		// ParseFloat takes "NaN", which every comparison calls false, so
		// the range is written to hold only for real numbers in it.
		if err != nil || !(n >= 0 && n <= 3600) {
			return usageErr("GRE_HOOK_LOCK_WAIT=%q is not a number of seconds from 0 to 3600", v)
		}
		inv.LockWait = time.Duration(n * float64(time.Second))
	}
	if v := getenv("GRE_HOOK_XTABLES_WAIT"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 3600 {
			return usageErr("GRE_HOOK_XTABLES_WAIT=%q is not a whole number of seconds from 1 to 3600", v)
		}
		inv.XtablesWait = n
	}
	switch {
	case getenv("GRE_HOOK_INSECURE_CONFIG") == "1":
		inv.InsecureConfig = "GRE_HOOK_INSECURE_CONFIG=1"
	case getenv("IF_GRE_HOOK_INSECURE_CONFIG") == "yes":
		inv.InsecureConfig = "gre-hook-insecure-config yes (IF_GRE_HOOK_INSECURE_CONFIG=yes)"
	}
	inv.Request.AllowInsecure = inv.InsecureConfig != ""
	return nil
}

// flagValues is the command line: the flags' values, which were set, and
// the words that are not flags.
type flagValues struct {
	iface, phase, config                                 string
	dry, verbose, version, help, json, switchCfg, strict bool
	set                                                  map[string]bool
	words                                                []string
}

// parseFlags reads the flags, which may come before or after the
// command, each at most once.
func parseFlags(args []string) (*flagValues, error) {
	if err := repeatedFlag(args); err != nil {
		return nil, err
	}
	fl := &flagValues{set: map[string]bool{}}
	fs := flag.NewFlagSet("gre-hook", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&fl.iface, "iface", "", "")
	fs.StringVar(&fl.phase, "phase", "", "")
	fs.StringVar(&fl.config, "config", "", "")
	fs.BoolVar(&fl.dry, "dry-run", false, "")
	fs.BoolVar(&fl.verbose, "v", false, "")
	fs.BoolVar(&fl.verbose, "verbose", false, "")
	fs.BoolVar(&fl.version, "version", false, "")
	fs.BoolVar(&fl.help, "h", false, "")
	fs.BoolVar(&fl.help, "help", false, "")
	fs.BoolVar(&fl.json, "json", false, "")
	fs.BoolVar(&fl.switchCfg, "switch-config", false, "")
	fs.BoolVar(&fl.strict, "strict", false, "")
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			return nil, usageErr("%v (try --help)", err)
		}
		if rest = fs.Args(); len(rest) == 0 {
			break
		}
		fl.words, rest = append(fl.words, rest[0]), rest[1:]
	}
	fs.Visit(func(f *flag.Flag) { fl.set[f.Name] = true })
	return fl, nil
}

// command takes the command word, if any, and returns the phase it names
// ("up", "down"), if it is one.
func (inv *Invocation) command(fl *flagValues) (argPhase string, err error) {
	if len(fl.words) == 0 {
		return "", nil
	}
	switch Command(fl.words[0]) {
	case "up", "down":
		argPhase = fl.words[0]
	case CmdCheck, CmdGC, CmdStatus, CmdWatch:
		inv.Command = Command(fl.words[0])
	case CmdHelp:
		fl.help = true
		fl.words = fl.words[1:]
	default:
		return "", usageErr("unknown command %q (try --help)", fl.words[0])
	}
	if len(fl.words) > 1 {
		return "", usageErr("unexpected argument %q after the command %s (try --help)", fl.words[1], fl.words[0])
	}
	if fl.help && len(fl.words) == 1 {
		if _, ok := commandUsage[fl.words[0]]; !ok {
			return "", usageErr("no help for %q: it is not a command (try --help)", fl.words[0])
		}
	}
	return argPhase, nil
}

// only refuses the flags set that do not go with the command (config and
// verbose go with all).
func (fl *flagValues) only(cmd Command, argPhase string, allowed ...string) error {
	// name is the command as the user would write it, for messages.
	name := string(cmd)
	if cmd == CmdRun {
		switch {
		case argPhase != "":
			name = argPhase
		case fl.phase == "up" || fl.phase == "down":
			name = fl.phase
		default:
			name = "up/down"
		}
	}
	ok := map[string]bool{"config": true, "v": true, "verbose": true}
	for _, a := range allowed {
		ok[a] = true
	}
	for _, f := range sortedFlags(fl.set) {
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

// target sets the interface and phase of an up or down: from the flags,
// from a command word and IFACE, or from ifupdown's IFACE and PHASE. A
// hook call for an interface or phase that is never gre-hook's becomes
// CmdNothing.
func (inv *Invocation) target(fl *flagValues, argPhase string, getenv func(string) string) error {
	req := &inv.Request
	iface, phase := fl.iface, fl.phase
	fromEnv := !fl.set["iface"] && !fl.set["phase"] && argPhase == ""
	switch {
	case argPhase != "":
		if fl.set["phase"] {
			return usageErr("the phase is given twice: %q and --phase %q", argPhase, phase)
		}
		phase = argPhase
		if !fl.set["iface"] {
			req.Line = getenv("PHASE") == ""
			iface = getenv("IFACE")
			if iface == "" {
				return usageErr("%s: no interface: IFACE is not set; by hand, add --iface IFACE", argPhase)
			}
			if skipIface(iface, getenv) {
				inv.Command = CmdNothing
				return nil
			}
		}
	case fromEnv:
		iface, phase = getenv("IFACE"), getenv("PHASE")
		if iface == "" && phase == "" {
			return usageErr("no IFACE and PHASE in the environment; by hand, use --iface IFACE --phase up|down (try --help)")
		}
		// ifupdown calls hooks for every interface and phase; most are
		// not ours, and those must stay silent and cheap.
		if skipIface(iface, getenv) {
			inv.Command = CmdNothing
			return nil
		}
		if iface != "" && phase == "" {
			// ifupdown2 runs post-up and pre-down lines with IFACE but
			// without PHASE or MODE; which one this is cannot be told, and
			// doing nothing silently would leave the site unjoined.
			return usageErr("IFACE=%s but PHASE is not set, so the phase is unknown (ifupdown2 sets no PHASE for stanza commands); "+
				"write the phase in the stanza: \"post-up /usr/sbin/gre-hook up\" and \"pre-down /usr/sbin/gre-hook down\"", iface)
		}
	case !fl.set["iface"] || !fl.set["phase"]:
		return usageErr("--iface and --phase go together")
	}
	switch phase {
	case "up", "post-up":
		req.Phase = hook.PhaseUp
	case "down", "pre-down":
		req.Phase = hook.PhaseDown
	default:
		if fromEnv {
			inv.Command = CmdNothing
			return nil
		}
		return usageErr("--phase %q is not up or down", phase)
	}
	if msg := config.ValidIfName(iface); msg != "" {
		return usageErr("interface name %s", msg)
	}
	req.Iface = iface
	req.ByHand = fl.set["iface"]
	return nil
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
