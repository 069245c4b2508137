// Command gre-hook brings GRE tunnels up and down with their underlay
// interface, as an ifupdown hook or by hand. See gre-hook(8).
package main

import (
	"os"

	"github.com/gre-hook/gre-hook/cmd/gre-hook/cli"
	"github.com/gre-hook/gre-hook/hook/watch"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	// Best effort: with no PATH at all, the run says iptables is missing.
	_ = cli.EnsurePath(os.Getenv, os.Setenv)
	cli.BeforeWatch = watch.NoHugePages
	os.Exit(cli.Main(os.Args[1:], os.Getenv, os.Stdout, os.Stderr, version))
}
