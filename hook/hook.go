// Package hook brings GRE tunnels up and down for an underlay interface.
//
// A run loads and validates the config, works out what the kernel should
// hold (package plan), compares it with what the kernel does hold, and
// changes only the difference, printing each change as the ip or iptables
// command a person would type. Bringing up is all or nothing: a failed step
// undoes what the run did. Tearing down removes what gre-hook's record and
// the kernel's own marks say it created, and carries on past failures.
//
// This package holds the operations, as methods of an Engine: up, down,
// gc and status for the command line, and what gre-hook watch calls.
// Package engine makes and applies the steps they share, the default
// route by policy routing included; package peer is what the watcher
// changes and follows: a dead or live peer, a tunnel moved in place.
package hook

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/gre-hook/gre-hook/hook/config"
	"github.com/gre-hook/gre-hook/hook/engine"
	"github.com/gre-hook/gre-hook/hook/peer"
	"github.com/gre-hook/gre-hook/hook/state"
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

// What a caller builds a System from, and the direction of a run, are
// package engine's: the steps of a run are made and applied there.
type (
	System  = engine.System
	Net     = engine.Net
	Sysctl  = engine.Sysctl
	ProcSys = engine.ProcSys
	Phase   = engine.Phase
)

const (
	PhaseUp   = engine.PhaseUp
	PhaseDown = engine.PhaseDown
)

// What Watching lists is package peer's.
type (
	Watching      = peer.Watching
	WatchedTunnel = peer.WatchedTunnel
	DynamicTunnel = peer.DynamicTunnel
)

// Engine is gre-hook's operations on one System, as the command line and
// gre-hook watch call them. Each logs to the System's Log. The config is
// read by the caller, once (LoadConfig), and handed to the operations of
// the command line; the watcher's read the configs the records name.
type Engine struct {
	sys *System
}

// NewEngine is the Engine over sys.
func NewEngine(sys *System) *Engine { return &Engine{sys: sys} }

// Up brings up the tunnels that cfg, the config req names, has on
// req.Iface.
func (e *Engine) Up(ctx context.Context, req Request, cfg *config.Config) error {
	return up(ctx, req, cfg, e.sys, newLogger(req, e.sys))
}

// Down takes down the tunnels on req.Iface. cfg is the config req names,
// or nil when it could not be read, and cfgErr says why: down then goes
// by the record and the kernel's marks.
func (e *Engine) Down(ctx context.Context, req Request, cfg *config.Config, cfgErr error) error {
	return down(ctx, req, cfg, cfgErr, e.sys, newLogger(req, e.sys))
}

// GC removes what of gre-hook's no config and record account for
// (runGC).
func (e *Engine) GC(ctx context.Context, req Request, cfg *config.Config) error {
	return runGC(ctx, req, cfg, e.sys)
}

// Status prints how the kernel differs from the config and reports
// whether it does (runStatus).
func (e *Engine) Status(req Request, cfg *config.Config, out io.Writer, asJSON bool) (drift bool, err error) {
	return runStatus(req, cfg, e.sys, out, asJSON)
}

// Watching lists what gre-hook watch follows, judging records with no
// config of their own by cfgPath ("" for the defaults).
func (e *Engine) Watching(cfgPath string) (Watching, error) {
	req := Request{Config: cfgPath, AllowInsecure: !e.sys.Store.Secure}
	cfg, err := LoadConfig(req)
	if err != nil {
		return Watching{}, err
	}
	return peer.List(e.sys, newSources(req, cfg).forRecord)
}

// SetLiveness records a peer dead or alive and changes that tunnel's
// routes, from its record alone (peer.SetLiveness).
func (e *Engine) SetLiveness(ctx context.Context, underlay, tunnel string, alive bool, lastReply time.Time) error {
	return peer.SetLiveness(ctx, e.sys, underlay, tunnel, alive, lastReply)
}

// Retarget moves a tunnel to new endpoints in place; a zero address
// keeps that endpoint (peer.Retarget).
func (e *Engine) Retarget(ctx context.Context, underlay, tunnel string, local, remote netip.Addr) error {
	return peer.Retarget(ctx, e.sys, underlay, tunnel, local, remote)
}

// Reconcile brings up a tunnel that up left unresolved, now that its name
// resolves (reconcile).
func (e *Engine) Reconcile(ctx context.Context, underlay, tunnel string) error {
	return reconcile(ctx, e.sys, underlay, tunnel)
}

// openRecord takes the state lock (with lock) and reads the underlay's
// record under it, as an up or a down begins: a run that held the lock
// meanwhile may have changed it. what names the run in errors ("bringing
// up", "taking down"); unlock is never nil.
func openRecord(req Request, sys *System, l *engine.Logger, lock bool, what string) (rec *state.Record, unlock func(), err error) {
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
func distrust(rec *state.Record, req Request, l *engine.Logger) {
	if rec == nil || !rec.Insecure || req.AllowInsecure {
		return
	}
	l.Warn("the record of %s was written by a run that skipped the config checks (GRE_HOOK_INSECURE_CONFIG); its down_commands are not run", rec.Underlay)
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

func newLogger(req Request, sys *System) *engine.Logger {
	return &engine.Logger{Out: sys.Log, Verbose: req.Verbose, Dry: req.DryRun}
}
