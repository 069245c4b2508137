// Package hook brings GRE tunnels up and down for an underlay interface.
//
// A run loads and validates the config, works out what the kernel should
// hold (package plan), compares it with what the kernel does hold, and
// changes only the difference, printing each change as the ip or iptables
// command a person would type. Bringing up is all or nothing: a failed step
// undoes what the run did. Tearing down removes what gre-hook's record and
// the kernel's own marks say it created, and carries on past failures.
package hook

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/gre-hook/gre-hook/hook/config"
	"github.com/gre-hook/gre-hook/hook/mss"
	"github.com/gre-hook/gre-hook/hook/resolve"
	"github.com/gre-hook/gre-hook/hook/rtnl"
	"github.com/gre-hook/gre-hook/hook/state"
)

// Phase is the direction of a run.
type Phase string

const (
	PhaseUp   Phase = "up"
	PhaseDown Phase = "down"
)

// Request is one invocation, already parsed from flags or the environment.
type Request struct {
	Iface  string
	Phase  Phase
	Config string // file or directory; "" for the defaults
	DryRun bool
	// Verbose also reports when there is nothing to do.
	Verbose bool
	// AllowInsecure skips the ownership and permission check of config
	// files, for tests that run as an unprivileged user or from a scratch
	// directory.
	AllowInsecure bool
	// SwitchConfig lets an up take over an underlay whose tunnels came
	// from another config.
	SwitchConfig bool
	// ByHand: the interface came from --iface, not from ifupdown. A run
	// by hand that does nothing says why even without -v.
	ByHand bool
	// Line: the phase came from the command line and the environment has
	// IFACE but no PHASE, as ifupdown2 runs a post-up or pre-down line.
	// Such a line sees no stanza options, gre-hook-config included.
	Line bool
}

// Net is the rtnetlink operations gre-hook uses, in package rtnl's terms
// (kernel.go converts). *rtnl.Handle implements it; tests use a fake.
type Net interface {
	Links() ([]rtnl.Link, error)
	Addrs() ([]rtnl.Addr, error)
	Routes(family int) ([]rtnl.Route, error)
	// AddLink creates l, with l.FwMark.
	AddLink(l rtnl.Link) error
	// SetTunnel changes the tunnel attributes of GRE link l.Name in
	// place to l's (local, remote, ttl, tos, pmtudisc, keys), keeping its
	// index, MTU, fwmark and everything else.
	SetTunnel(l rtnl.Link) error
	// SetFwMark sets the mark of a GRE link's outer packets in place.
	SetFwMark(name string, mark uint32) error
	SetMTU(name string, mtu int) error
	SetMulticast(name string, on bool) error
	SetUp(name string) error
	DelLink(name string) error
	// DelLinks deletes several links, with one error (or nil) per name.
	DelLinks(names []string) []error
	AddAddr(dev string, a rtnl.Addr) error
	DelAddr(dev string, p netip.Prefix) error
	// ReplaceRoute installs r with r.Protocol.
	ReplaceRoute(r rtnl.Route) error
	// DelRoute deletes r if its protocol is r.Protocol (any, for 0).
	DelRoute(r rtnl.Route) error
	// Rules lists the policy routing rules of family 4 or 6; AddRule and
	// DelRule change one (DelRule matches its protocol).
	Rules(family int) ([]rtnl.Rule, error)
	AddRule(r rtnl.Rule) error
	DelRule(r rtnl.Rule) error
}

// System is everything outside the process that a run touches.
type System struct {
	Net Net
	// Tables opens the iptables backend for family 4 or 6.
	Tables func(family int) (mss.Backend, error)
	// LoadModule makes sure a kernel module is loaded.
	LoadModule func(name string) error
	// ModuleAvailable says why a kernel module could not be loaded,
	// without loading it, for status and dry runs; nil in tests that do
	// not model modules.
	ModuleAvailable func(name string) error
	// Command runs an up_command or down_command.
	Command func(ctx context.Context, argv, env []string) error
	// Sysctl reads and sets kernel parameters; nil in tests that do not
	// model them, which then neither read nor set any.
	Sysctl Sysctl
	Store  state.Store
	// LockWait bounds the wait for another run's lock.
	LockWait time.Duration
	// Resolve looks up remotes given as names (nil: Go's own resolver),
	// all of a run's names within ResolveWait (0: resolve.DefaultWait).
	Resolve     resolve.LookupFunc
	ResolveWait time.Duration
	Log         io.Writer
}

// Logger prints changes and notes for one run.
type logger struct {
	w       io.Writer
	verbose bool
	dry     bool
	changed bool
}

// change prints changes before they are made; in a dry run they are the
// plan. The lines go out in one write: with a thousand tunnels a write per
// line is a noticeable part of a run on a slow router.
func (l *logger) change(cmds ...string) {
	if len(cmds) == 0 {
		return
	}
	l.changed = true
	var b strings.Builder
	for _, c := range cmds {
		if !l.dry {
			b.WriteString("gre-hook: + ")
		}
		b.WriteString(c)
		b.WriteByte('\n')
	}
	io.WriteString(l.w, b.String())
}

// note prints only with -v.
func (l *logger) note(format string, args ...interface{}) {
	if l.verbose {
		fmt.Fprintf(l.w, "gre-hook: "+format+"\n", args...)
	}
}

// warn always prints.
func (l *logger) warn(format string, args ...interface{}) {
	fmt.Fprintf(l.w, "gre-hook: warning: "+format+"\n", args...)
}

// sourceOf names the config a request reads, as records keep it.
func sourceOf(req Request) string {
	if req.Config == "" {
		return state.DefaultSource
	}
	if abs, err := filepath.Abs(req.Config); err == nil {
		return abs
	}
	return filepath.Clean(req.Config)
}

func describeSource(s string) string {
	if s == state.DefaultSource {
		return "the default config (" + config.DefaultFile + " and " + config.DefaultDir + ")"
	}
	return s
}

// openRecord takes the state lock (with lock) and reads the underlay's
// record under it, as an up or a down begins: a run that held the lock
// meanwhile may have changed it. what names the run in errors ("bringing
// up", "taking down"); unlock is never nil.
func openRecord(req Request, sys *System, l *logger, lock bool, what string) (rec *state.Record, unlock func(), err error) {
	unlock = func() {}
	if lock {
		if unlock, err = state.Lock(sys.Store.Dir, sys.LockWait); err != nil {
			return nil, nil, err
		}
	}
	if rec, err = sys.Store.Load(req.Iface); err != nil {
		unlock()
		return nil, nil, fmt.Errorf("%s tunnels on %s: %w", what, req.Iface, err)
	}
	distrust(rec, req, l)
	return rec, unlock, nil
}

// distrust keeps a checked run from honouring what an unchecked one
// wrote: a record made under GRE_HOOK_INSECURE_CONFIG may list commands
// from a config anyone could have written. It says so, and drops them.
func distrust(rec *state.Record, req Request, l *logger) {
	if rec == nil || !rec.Insecure || req.AllowInsecure {
		return
	}
	l.warn("the record of %s was written by a run that skipped the config checks (GRE_HOOK_INSECURE_CONFIG); its down_commands are not run", rec.Underlay)
	for i := range rec.Tunnels {
		rec.Tunnels[i].Down = nil
	}
}

// LoadConfig reads the configuration a request names. A run reads it
// once and hands it to Up, Down, GC or Status: with a thousand tunnels,
// parsing it is most of the CPU a run spends.
func LoadConfig(req Request) (*config.Config, error) {
	return config.Read(req.Config, req.AllowInsecure)
}

// DescribeConfig names the config req reads, for messages.
func DescribeConfig(req Request) string {
	return describeSource(sourceOf(req))
}

func newLogger(req Request, sys *System) *logger {
	return &logger{w: sys.Log, verbose: req.Verbose, dry: req.DryRun}
}
