// Package engine makes and applies the steps of one run. It reads the
// kernel once (snapshot.go), compares what the plan wants with it and
// returns the steps, each with its command and its undo (diff.go, with
// sysctl.go and tables.go), runs them and undoes them all on a failure
// (apply.go), removes what a record lists (teardown.go) and merges the
// records (record.go). The default route by policy routing is a bounded
// set of files here: the policy in force and its rules (policy.go), a
// change of [policy] on every underlay (policymove.go), and the previous
// release's main-table defaults (legacy.go). Package hook's operations
// call it with their config; it knows nothing of their requests.
package engine

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

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
	// Apply makes ops in their order, many to a write, and returns the
	// error of each (nil for one made): one that fails does not stop
	// those after it.
	Apply(ops []rtnl.Op) []error
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
type Logger struct {
	Out io.Writer
	// Verbose prints the notes; Dry prints changes as the plan, without
	// gre-hook's prefix.
	Verbose, Dry bool
	// Changed says a change was printed.
	Changed bool
}

// Change prints changes before they are made; in a dry run they are the
// plan. The lines go out in one write: with a thousand tunnels a write per
// line is a noticeable part of a run on a slow router.
func (l *Logger) Change(cmds ...string) {
	if len(cmds) == 0 {
		return
	}
	l.Changed = true
	var b strings.Builder
	for _, c := range cmds {
		if !l.Dry {
			b.WriteString("gre-hook: + ")
		}
		b.WriteString(c)
		b.WriteByte('\n')
	}
	io.WriteString(l.Out, b.String())
}

// Note prints only with -v.
func (l *Logger) Note(format string, args ...interface{}) {
	if l.Verbose {
		fmt.Fprintf(l.Out, "gre-hook: "+format+"\n", args...)
	}
}

// Warn always prints.
func (l *Logger) Warn(format string, args ...interface{}) {
	fmt.Fprintf(l.Out, "gre-hook: warning: "+format+"\n", args...)
}
