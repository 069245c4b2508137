package hook

import (
	"context"
	"io"
	"net/netip"
	"time"

	"github.com/gre-hook/gre-hook/hook/config"
	"github.com/gre-hook/gre-hook/hook/engine"
	"github.com/gre-hook/gre-hook/hook/peer"
)

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
func (e *Engine) Watching(cfgPath string) (peer.Watching, error) {
	req := Request{Config: cfgPath, AllowInsecure: !e.sys.Store.Secure}
	cfg, err := LoadConfig(req)
	if err != nil {
		return peer.Watching{}, err
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
