// Command gre-hook brings GRE tunnels up and down with their underlay
// interface, as an ifupdown hook or by hand. See gre-hook(8).
package main

import (
	"os"

	"github.com/gre-hook/gre-hook/hook"
	"github.com/gre-hook/gre-hook/hook/watch"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if len(os.Args) > 1 && os.Args[1] == string(hook.CmdWatch) {
		if inv, err := hook.Parse(os.Args[1:], os.Getenv, os.Stderr); err == nil && inv.Command == hook.CmdWatch {
			os.Exit(watch.Main(inv, os.Stderr))
		}
	}
	os.Exit(hook.Main(os.Args[1:], os.Getenv, os.Stdout, os.Stderr, version))
}
