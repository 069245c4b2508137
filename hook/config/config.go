// Package config reads and validates gre-hook's TOML configuration.
//
// Everything a run needs is checked here, before anything touches the
// kernel: a bad file is reported with file, line and column and the run
// changes nothing.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

// Default locations, used when no --config, GRE_HOOK_CONFIG or
// IF_GRE_HOOK_CONFIG names another file.
const (
	DefaultFile = "/etc/gre-hook/gre-hook.toml"
	DefaultDir  = "/etc/gre-hook/conf.d"
)

// DefaultRouteTable is the routing table that holds the default routes
// of default_route tunnels, gre-hook's own: a [[tunnel.route]] may not
// name it (plan.DefaultPolicy).
const DefaultRouteTable = 18247

// Mode is the kind of GRE link.
type Mode string

const (
	ModeGRE       Mode = "gre"
	ModeGRETap    Mode = "gretap"
	ModeIP6GRE    Mode = "ip6gre"
	ModeIP6GRETap Mode = "ip6gretap"
)

// Outer6 reports whether the mode's outer (underlay) header is IPv6.
func (m Mode) Outer6() bool { return m == ModeIP6GRE || m == ModeIP6GRETap }

// Tap reports whether the mode carries Ethernet frames.
func (m Mode) Tap() bool { return m == ModeGRETap || m == ModeIP6GRETap }

// MSSMode says how TCP MSS is clamped on a tunnel.
type MSSMode string

const (
	MSSPMTU  MSSMode = "pmtu"
	MSSFixed MSSMode = "fixed"
	MSSOff   MSSMode = "off"
)

// Route is one prefix routed through a tunnel.
type Route struct {
	To     netip.Prefix
	Via    netip.Addr
	Metric uint32
	Table  uint32 // 0 is main; 254 is normalised to 0
}

// Tunnel is one validated tunnel, with every default filled in except those
// that depend on the live system (automatic local address, derived MTU).
type Tunnel struct {
	Name     string
	Underlay string
	Mode     Mode
	// Local is the zero Addr when the underlay's address is to be used.
	Local    netip.Addr
	Remote   netip.Addr
	TTL      uint8
	TOS      uint8
	PMTUDisc bool
	IKey     uint32
	OKey     uint32
	// MTU is 0 when it is to be derived from the underlay's MTU.
	MTU          int
	Multicast    bool
	Addresses    []netip.Prefix
	Peers        []netip.Addr
	Routes       []Route
	DefaultRoute bool
	MSS          MSSMode
	MSSValue     int
	UpCommand    []string
	DownCommand  []string
	// Keepalive is nil when gre-hook watch sends no keepalives on the
	// tunnel.
	Keepalive *Keepalive
	// KeepaliveReflect makes the kernel answer the peer's keepalives
	// even when we send none (Keepalive implies it).
	KeepaliveReflect bool
	// RemoteName is the DNS name remote was given as, or "". Remote is
	// then the zero Addr until the name is resolved (package resolve).
	RemoteName string
	// ResolveInterval is how often, in seconds, gre-hook watch resolves
	// RemoteName again.
	ResolveInterval int

	// Where the tunnel was defined, for messages.
	File string
	Line int
	Col  int
}

// Keepalive is how often gre-hook watch sends a GRE keepalive on a
// tunnel, and how many may go unanswered before the peer counts as dead.
type Keepalive struct {
	Interval int // seconds, 1-3600
	Retries  int // 1-255
}

// Reflects reports whether the tunnel's interface must be set up to answer
// the peer's keepalives.
func (t *Tunnel) Reflects() bool { return t.Keepalive != nil || t.KeepaliveReflect }

// Peer returns the tunnel peer of the given family (4 or 6).
func (t *Tunnel) Peer(family int) (netip.Addr, bool) {
	for _, p := range t.Peers {
		if (family == 4) == p.Is4() {
			return p, true
		}
	}
	return netip.Addr{}, false
}

// Carries6 reports whether IPv6 traffic enters the tunnel, which decides
// whether ip6tables clamping is needed.
func (t *Tunnel) Carries6() bool {
	for _, a := range t.Addresses {
		if a.Addr().Is6() {
			return true
		}
	}
	for _, r := range t.Routes {
		if r.To.Addr().Is6() {
			return true
		}
	}
	return false
}

// Config is the merged configuration.
type Config struct {
	Tunnels []Tunnel
	Files   []string
}

// For returns the tunnels bound to the underlay iface, in config order.
func (c *Config) For(iface string) []Tunnel {
	var out []Tunnel
	for _, t := range c.Tunnels {
		if t.Underlay == iface {
			out = append(out, t)
		}
	}
	return out
}

// Errors is every problem found in a configuration, reported together so
// that one run of `gre-hook check` shows them all.
type Errors []error

func (e Errors) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "\n")
}

// Read reads, merges and validates the configuration: the file or
// directory of *.toml files explicit names, or, when explicit is "", the
// default file and the default directory. Missing default locations are
// not an error; a missing explicit path is. Each file is opened once, and
// unless insecure, its path and what was opened are checked first (see
// secure.go) and the file is parsed from the descriptor that was checked.
func Read(explicit string, insecure bool) (*Config, error) {
	if insecure {
		return read(explicit, openAsIs)
	}
	return read(explicit, trust{}.open)
}

// What a config path may name.
type pathKind int

const (
	fileOrDir pathKind = iota // an explicit --config path
	fileOnly                  // the default file, or a file in a directory
	dirOnly                   // the default directory
)

// read is Read with the given way of opening files and directories.
func read(explicit string, open func(string) (*os.File, error)) (*Config, error) {
	var files []string
	var data [][]byte
	// add reads path: a file, or a directory whose *.toml files it reads
	// in name order. With optional, a missing path is no error.
	var add func(path string, kind pathKind, optional bool) error
	add = func(path string, kind pathKind, optional bool) error {
		f, err := open(path)
		if optional && errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return readErr(err)
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return readErr(err)
		}
		switch {
		case !fi.IsDir() && kind == dirOnly:
			return Errors{fmt.Errorf("reading config: %s is not a directory", path)}
		case !fi.IsDir():
			b, err := io.ReadAll(f)
			if err != nil {
				return readErr(err)
			}
			files, data = append(files, path), append(data, b)
			return nil
		case kind == fileOnly:
			return Errors{fmt.Errorf("reading config: %s is a directory", path)}
		}
		entries, err := f.ReadDir(-1)
		if err != nil {
			return Errors{fmt.Errorf("reading config directory: %w", err)}
		}
		var names []string
		for _, e := range entries {
			if e.IsDir() || !strings.HasSuffix(e.Name(), ".toml") || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			names = append(names, e.Name())
		}
		sort.Strings(names)
		for _, n := range names {
			if err := add(filepath.Join(path, n), fileOnly, false); err != nil {
				return err
			}
		}
		return nil
	}
	if explicit != "" {
		if err := add(explicit, fileOrDir, false); err != nil {
			return nil, err
		}
	} else {
		if err := add(DefaultFile, fileOnly, true); err != nil {
			return nil, err
		}
		if err := add(DefaultDir, dirOnly, true); err != nil {
			return nil, err
		}
	}
	return parseAll(files, data, nil)
}

// readErr reports a failure to open or read a config path; a refusal
// already says all there is to say.
func readErr(err error) error {
	var errs Errors
	if errors.As(err, &errs) {
		return errs
	}
	return Errors{fmt.Errorf("reading config: %w", err)}
}

// Load reads, merges and validates the given files as they are, with no
// ownership or permission checks: for tests and tools that name files.
func Load(files []string) (*Config, error) {
	var read []string
	var data [][]byte
	var errs Errors
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("reading config: %w", err))
			continue
		}
		read, data = append(read, f), append(data, b)
	}
	return parseAll(read, data, errs)
}

// parseAll parses each file's data, and checks the tunnels of all files
// against each other. errs holds problems found before.
func parseAll(files []string, data [][]byte, errs Errors) (*Config, error) {
	cfg := &Config{Files: files}
	for i, f := range files {
		ts, ferrs := Parse(f, data[i])
		errs = append(errs, ferrs...)
		cfg.Tunnels = append(cfg.Tunnels, ts...)
	}
	errs = append(errs, crossCheck(cfg.Tunnels)...)
	if len(errs) > 0 {
		return nil, errs
	}
	return cfg, nil
}

// rawFile is the document as written, with pointers where absence matters.
type rawFile struct {
	Tunnel []rawTunnel `toml:"tunnel"`
}

type rawTunnel struct {
	Name             string        `toml:"name"`
	Underlay         string        `toml:"underlay"`
	Mode             string        `toml:"mode"`
	Local            string        `toml:"local"`
	Remote           string        `toml:"remote"`
	TTL              *int64        `toml:"ttl"`
	TOS              *int64        `toml:"tos"`
	PMTUDisc         *bool         `toml:"pmtudisc"`
	Key              *int64        `toml:"key"`
	IKey             *int64        `toml:"ikey"`
	OKey             *int64        `toml:"okey"`
	MTU              *int64        `toml:"mtu"`
	Multicast        *bool         `toml:"multicast"`
	Address          []string      `toml:"address"`
	Peer             []string      `toml:"peer"`
	Route            []rawRoute    `toml:"route"`
	DefaultRoute     bool          `toml:"default_route"`
	MSS              interface{}   `toml:"mss"`
	UpCommand        []string      `toml:"up_command"`
	DownCommand      []string      `toml:"down_command"`
	Keepalive        *rawKeepalive `toml:"keepalive"`
	KeepaliveReflect bool          `toml:"keepalive_reflect"`
	ResolveInterval  *int64        `toml:"resolve_interval"`
}

type rawKeepalive struct {
	Interval *int64 `toml:"interval"`
	Retries  *int64 `toml:"retries"`
}

type rawRoute struct {
	To     string `toml:"to"`
	Via    string `toml:"via"`
	Metric int64  `toml:"metric"`
	Table  int64  `toml:"table"`
}

// Parse decodes and validates one file's tunnels. It does not check
// conflicts between files; Load does.
func Parse(file string, data []byte) ([]Tunnel, Errors) {
	if bytes.IndexByte(data, 0) >= 0 {
		return nil, Errors{fmt.Errorf("%s: not a text file (contains NUL bytes)", file)}
	}
	var raw rawFile
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&raw)
	if err != nil {
		return nil, Errors{decodeError(file, err)}
	}
	loc := newLocator(string(data))
	var errs Errors
	reported := map[string]bool{}
	for _, k := range md.Undecoded() {
		reported[k.String()] = true
		// Inside an unknown table every key is unknown too; name the table once.
		if len(k) > 1 && reported[k[:len(k)-1].String()] {
			continue
		}
		errs = append(errs, unknownKey(file, loc, k))
	}
	if len(errs) > 0 {
		return nil, errs
	}
	var out []Tunnel
	for i, rt := range raw.Tunnel {
		v := &validator{file: file, loc: loc, index: i, name: rt.Name}
		t := v.tunnel(rt)
		if len(v.errs) > 0 {
			errs = append(errs, v.errs...)
			continue
		}
		out = append(out, t)
	}
	return out, errs
}

func decodeError(file string, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s:%d:%d: %s", file, pe.Position.Line, pe.Position.Col, pe.Message)
	}
	// Type mismatches come as plain errors that carry the line only.
	msg := strings.TrimPrefix(err.Error(), "toml: ")
	var line int
	if n, _ := fmt.Sscanf(msg, "line %d", &line); n == 1 {
		rest := msg[strings.IndexByte(msg, ' ')+1:]
		rest = rest[strings.IndexByte(rest, ' ')+1:]
		return fmt.Errorf("%s:%d:1: %s", file, line, strings.TrimSpace(rest))
	}
	return fmt.Errorf("%s: %s", file, msg)
}

func unknownKey(file string, loc *locator, k toml.Key) error {
	path := []string(k)
	msg := fmt.Sprintf("unknown key %q", k.String())
	var pos position
	found := false
	switch {
	case len(path) == 2 && path[0] == "tunnel":
		pos, found = loc.findAny(false, path[1])
	case len(path) == 3 && path[0] == "tunnel" && path[1] == "route":
		pos, found = loc.findAny(true, path[2])
	case len(path) == 3 && path[0] == "tunnel" && path[1] == "keepalive":
		pos, found = loc.findAny(false, path[1])
	}
	if !found && len(path) > 0 {
		pos, found = loc.top[path[0]]
	}
	if !found {
		pos = position{Line: 1, Col: 1}
	}
	if len(path) > 0 && path[0] != "tunnel" {
		msg += " (the file holds [[tunnel]] tables only)"
	}
	return fmt.Errorf("%s:%d:%d: %s", file, pos.Line, pos.Col, msg)
}
