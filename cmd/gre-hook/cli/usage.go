package cli

// upUsage is the help of up and down, which are one command: the phase.
const upUsage = `Usage: gre-hook up|down [--iface IFACE] [--config PATH] [--dry-run] [--switch-config] [-v]
       gre-hook --iface IFACE --phase up|down [--config PATH] [--dry-run] [--switch-config] [-v]
       gre-hook                              (as an ifupdown hook: IFACE and PHASE from the environment)

Bring the tunnels on underlay IFACE up, or take them down. Without
--iface, IFACE comes from the environment, as in a post-up or pre-down
line of /etc/network/interfaces.

Options:
  --iface IFACE    the underlay interface
  --phase up|down  the phase, when it is not written as the command
  --config PATH    config file, or directory of *.toml files
                   (default /etc/gre-hook/gre-hook.toml and /etc/gre-hook/conf.d/*.toml)
  --dry-run        print the changes as ip and iptables commands; change nothing
  --switch-config  with up only: take over an underlay whose tunnels came from
                   another config
  -v, --verbose    also say when there is nothing to do
  -h, --help       this help

Needs root, except with --dry-run. See gre-hook(8).
`

// commandUsage is each command's --help; "" is the global one.
var commandUsage = map[string]string{
	"":     Usage,
	"up":   upUsage,
	"down": upUsage,
	"check": `Usage: gre-hook check [--config PATH] [--strict] [-v]

Validate the configuration and change nothing. Every error of every file
comes out in one run, one a line, as FILE:LINE:COLUMN: followed by the
tunnel, the key and the reason, and so do conflicts between tunnels (in
one file or across files), naming the other place. Then come warnings,
marked "warning:", about what looks wrong on this host: a local that is
not one of its addresses, a route that shadows a connected one.

Options:
  --config PATH  config file, or directory of *.toml files
                 (default /etc/gre-hook/gre-hook.toml and /etc/gre-hook/conf.d/*.toml)
  --strict       fail on warnings too
  -v, --verbose  say how many tunnels and files were read when all is well
  -h, --help     this help

Exit status: 0 valid, 2 an error (or a warning with --strict), or no
config file found. Needs no root. See gre-hook(8).
`,
	"gc": `Usage: gre-hook gc [--config PATH] [--dry-run] [-v]

Remove tunnels, routes and rules of gre-hook's that no configuration and
completed bring-up explain. Refuses to run with a broken configuration.

Options:
  --config PATH  config file, or directory of *.toml files
  --dry-run      print what would be removed; change nothing
  -v, --verbose  also say when there is nothing to do
  -h, --help     this help

Needs root, except with --dry-run. See gre-hook(8).
`,
	"status": `Usage: gre-hook status [--iface IFACE] [--json] [--config PATH]

Compare the kernel with the configuration, for every underlay or for
IFACE, and say what differs and how to put it right.

Options:
  --iface IFACE  only the tunnels on this underlay
  --json         the report as JSON
  --config PATH  config file, or directory of *.toml files
  -h, --help     this help

Exit status: 0 as configured, 1 failed, 2 bad usage or config, 3 drift.
Needs root. See gre-hook(8).
`,
	"watch": `Usage: gre-hook watch [--config PATH] [-v]

Run in the foreground: send keepalives on the tunnels that are up,
withdraw a dead peer's routes, and follow remotes given as names and
local = "auto". SIGHUP re-reads the config.

Options:
  --config PATH  config file, or directory of *.toml files
  -v, --verbose  log every keepalive state change and re-resolution
  -h, --help     this help

Needs root. See gre-hook(8) and the gre-hook-watch service.
`,
}
