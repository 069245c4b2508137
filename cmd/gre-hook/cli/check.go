package cli

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"

	"github.com/gre-hook/gre-hook/hook/config"
)

// hostAddrs lists this host's interface addresses for check's warnings;
// tests replace it.
var hostAddrs = func() (*config.Host, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	h := &config.Host{}
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil {
			return nil, err
		}
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(n.IP)
			if !ok {
				continue
			}
			ones, _ := n.Mask.Size()
			ip = ip.Unmap()
			if ip.Is4() && ones > 32 {
				ones -= 96
			}
			h.Addrs = append(h.Addrs, config.HostAddr{Iface: ifc.Name, Prefix: netip.PrefixFrom(ip, ones)})
		}
	}
	return h, nil
}

// check is `gre-hook check`: every error of every file, then the
// warnings, each on its own line. Errors fail it, and so do warnings
// with --strict; a check that finds no file to read fails too, since it
// has checked nothing.
func check(inv *Invocation, stdout, stderr io.Writer) int {
	req := inv.Request
	cfg, errs := config.ReadAll(req.Config, req.AllowInsecure)
	for _, err := range errs {
		printErr(stderr, err)
	}
	if cfg == nil {
		return ExitUsage
	}
	if len(cfg.Files) == 0 && len(errs) == 0 {
		fmt.Fprintf(stderr, "gre-hook: check: %s\n", noFiles(req.Config))
		return ExitUsage
	}
	var warns []error
	if h, err := hostAddrs(); err != nil {
		fmt.Fprintf(stderr, "gre-hook: warning: check: cannot list this host's addresses, so locals and routes are not checked against them: %v\n", err)
	} else {
		warns = cfg.Warnings(h)
	}
	for _, w := range warns {
		printErr(stderr, w)
	}
	switch {
	case len(errs) > 0:
		return ExitUsage
	case len(warns) > 0 && inv.Strict:
		fmt.Fprintf(stderr, "gre-hook: check: %d warning(s), which --strict counts as errors\n", len(warns))
		return ExitUsage
	}
	if req.Verbose {
		fmt.Fprintf(stdout, "%d tunnel(s) in %d file(s): ok", len(cfg.Tunnels), len(cfg.Files))
		if len(warns) > 0 {
			fmt.Fprintf(stdout, ", %d warning(s)", len(warns))
		}
		fmt.Fprintln(stdout)
	}
	return ExitOK
}

// noFiles says that the config path (or the defaults, for "") held no
// config file.
func noFiles(path string) string {
	if path == "" {
		return fmt.Sprintf("no config files found (looked for %s and %s/*.toml)", config.DefaultFile, config.DefaultDir)
	}
	return fmt.Sprintf("no config files: directory %s holds no *.toml files", path)
}

// printErr prints err with gre-hook's prefix on every line: a config's
// errors come one a line.
func printErr(w io.Writer, err error) {
	fmt.Fprintf(w, "gre-hook: %s\n", prefixLines(err.Error()))
}

func prefixLines(s string) string { return strings.ReplaceAll(s, "\n", "\ngre-hook: ") }
