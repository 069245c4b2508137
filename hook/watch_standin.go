package hook

import (
	"context"

	"github.com/gre-hook/gre-hook/hook/config"
)

// UpWithConfig runs up on req.Iface as if the config req names were cfg.
//
// TEMPORARY: it exists only for the stand-in engine of gre-hook watch
// (hook/watch/adapter.go), which withdraws a dead tunnel's routes by
// running up with a copy of the config in which that tunnel has no routes
// and no default route. Delete it when SetLiveness replaces that adapter.
func UpWithConfig(ctx context.Context, req Request, sys *System, cfg *config.Config) error {
	req.Phase = PhaseUp
	req.loaded = cfg
	return Run(ctx, req, sys)
}
