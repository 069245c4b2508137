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

	"github.com/gre-hook/gre-hook/hook/gre"
)

// Default locations, used when no --config, GRE_HOOK_CONFIG or
// IF_GRE_HOOK_CONFIG names another file.
const (
	DefaultFile = "/etc/gre-hook/gre-hook.toml"
	DefaultDir  = "/etc/gre-hook/conf.d"
)

// DefaultRouteTable is the routing table that holds the default routes
// of default_route tunnels, gre-hook's own, without a [policy] table
// (DefaultPolicy).
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
	// The GRE attributes; Local is the zero Addr when the underlay's
	// address is to be used.
	gre.Params
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
	// Policy is the router's policy routing: the [policy] table of the
	// files, else DefaultPolicy. PolicyFrom is where it was first set
	// (file:line:col), "" for the defaults.
	Policy     Policy
	PolicyFrom string
	Files      []string
	// at says where each tunnel's keys are, for warnings; it is nil in a
	// Config that was not read from files.
	at []tunnelAt
}

// For returns the tunnels bound to the underlay iface, in config order.
func (c *Config) For(iface string) []Tunnel {
	n := 0
	for i := range c.Tunnels {
		if c.Tunnels[i].Underlay == iface {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	out := make([]Tunnel, 0, n)
	for i := range c.Tunnels {
		if c.Tunnels[i].Underlay == iface {
			out = append(out, c.Tunnels[i])
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
	return valid(ReadAll(explicit, insecure))
}

// ReadAll is Read for check: it returns the valid tunnels together with
// every error found, so that the warnings about those tunnels can be
// given too. cfg is nil only when no file could be read.
func ReadAll(explicit string, insecure bool) (*Config, Errors) {
	if insecure {
		return read(explicit, openAsIs)
	}
	return read(explicit, trust{}.open)
}

// valid turns what parseAll found into Read's result: no Config when
// there are errors.
func valid(cfg *Config, errs Errors) (*Config, error) {
	if len(errs) > 0 {
		return nil, errs
	}
	return cfg, nil
}

// What a config path may name.
type pathKind int

const (
	fileOrDir pathKind = iota // an explicit --config path
	fileOnly                  // the default file, or a file in a directory
	dirOnly                   // the default directory
)

// read is Read with the given way of opening files and directories.
func read(explicit string, open func(string) (*os.File, error)) (*Config, Errors) {
	var files []string
	var data [][]byte
	// add reads path: a file, or a directory whose *.toml files it reads
	// in name order. With optional, a missing path is no error.
	var add func(path string, kind pathKind, optional bool) Errors
	add = func(path string, kind pathKind, optional bool) Errors {
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
		case !fi.IsDir() && !fi.Mode().IsRegular():
			return Errors{fmt.Errorf("reading config: %s is not a regular file (%s)", path, fileType(fi.Mode()))}
		case !fi.IsDir():
			b, err := readSized(f, path, fi.Size())
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
func readErr(err error) Errors {
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
	return valid(parseAll(read, data, errs))
}

// parseAll parses each file's data, and checks the tunnels of all files
// against each other. errs holds problems found before. The Config holds
// the tunnels that are valid, even when there are errors, so that check
// can give its warnings too.
func parseAll(files []string, data [][]byte, errs Errors) (*Config, Errors) {
	cfg := &Config{Files: files}
	var all []parsed
	var pols []filePolicy
	for i, f := range files {
		ps, pol, ferrs := parseFile(f, data[i])
		errs = append(errs, ferrs...)
		all = append(all, ps...)
		pols = append(pols, pol)
	}
	pol, from, set, perrs := mergePolicy(pols)
	cfg.Policy, cfg.PolicyFrom = pol, from
	errs = append(errs, perrs...)
	errs = append(errs, checkRouteTables(all, pol, set)...)
	errs = append(errs, crossCheck(all)...)
	for _, p := range all {
		if p.ok {
			cfg.Tunnels = append(cfg.Tunnels, p.Tunnel)
			cfg.at = append(cfg.at, p.at)
		}
	}
	return cfg, errs
}

// parsed is one tunnel of a file, with ok false when it has errors (its
// fields are then those that were valid), and where its keys are.
type parsed struct {
	Tunnel
	ok bool
	at tunnelAt
}

// tunnelAt finds the keys of tunnel index in its file's text.
type tunnelAt struct {
	loc   *locator
	index int
}

// pos is where key (of route ri, or -1) was written.
func (a tunnelAt) pos(ri int, key string) position {
	if a.loc == nil {
		return position{Line: 1, Col: 1}
	}
	return a.loc.find(a.index, ri, key)
}

// rawTunnel is a tunnel as written, with pointers where absence matters.
type rawTunnel struct {
	Name             string
	Underlay         string
	Mode             string
	Local            string
	Remote           string
	TTL              *int64
	TOS              *int64
	PMTUDisc         *bool
	Key              *int64
	IKey             *int64
	OKey             *int64
	MTU              *int64
	Multicast        *bool
	Address          []string
	Peer             []string
	Route            []rawRoute
	DefaultRoute     bool
	MSS              interface{}
	UpCommand        []string
	DownCommand      []string
	Keepalive        *rawKeepalive
	KeepaliveReflect bool
	ResolveInterval  *int64
}

type rawKeepalive struct {
	Interval *int64
	Retries  *int64
}

type rawRoute struct {
	To     string
	Via    string
	Metric int64
	Table  int64
}

// Problem is one error or warning found in a file, with where it is.
type Problem struct {
	File      string
	Line, Col int
	Msg       string
	Warning   bool
}

func (p *Problem) Error() string {
	if p.Warning {
		return fmt.Sprintf("%s:%d:%d: warning: %s", p.File, p.Line, p.Col, p.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", p.File, p.Line, p.Col, p.Msg)
}

// Parse decodes and validates one file's tunnels. It does not check
// conflicts between tunnels; Load does.
func Parse(file string, data []byte) ([]Tunnel, Errors) {
	ps, fp, errs := parseFile(file, data)
	pol, _, set, _ := mergePolicy([]filePolicy{fp})
	errs = append(errs, checkRouteTables(ps, pol, set)...)
	var out []Tunnel
	for _, p := range ps {
		if p.ok {
			out = append(out, p.Tunnel)
		}
	}
	return out, errs
}

// parseFile decodes and validates one file's tunnels, every one of them,
// and its [policy] table, and reports every problem: keys of the wrong
// type and unknown keys do not stop the rest being checked.
func parseFile(file string, data []byte) ([]parsed, filePolicy, Errors) {
	if bytes.IndexByte(data, 0) >= 0 {
		return nil, nil, Errors{fmt.Errorf("%s: not a text file (contains NUL bytes)", file)}
	}
	var doc map[string]interface{}
	if _, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		return nil, nil, Errors{decodeError(file, err)}
	}
	var pol filePolicy
	loc := newLocator(string(data))
	var errs Errors
	top := func(k string) position {
		if p, ok := loc.top[k]; ok {
			return p
		}
		return position{Line: 1, Col: 1}
	}
	var tunnels []map[string]interface{}
	for _, k := range sortedKeys(doc, top) {
		p := top(k)
		if k == "policy" {
			var perrs Errors
			pol, perrs = parsePolicy(file, loc, doc[k])
			errs = append(errs, perrs...)
			continue
		}
		if k != "tunnel" {
			errs = append(errs, &Problem{File: file, Line: p.Line, Col: p.Col, Msg: fmt.Sprintf("unknown key %q (the file holds [[tunnel]] tables and a [policy] table)", k)})
			continue
		}
		ts, ok := tables(doc[k])
		if !ok {
			if _, isTable := doc[k].(map[string]interface{}); isTable {
				errs = append(errs, &Problem{File: file, Line: p.Line, Col: p.Col, Msg: "tunnel: must be [[tunnel]] tables (double brackets), not a single table"})
			} else {
				errs = append(errs, &Problem{File: file, Line: p.Line, Col: p.Col, Msg: fmt.Sprintf("tunnel: must be [[tunnel]] tables, not %s", describe(doc[k]))})
			}
			continue
		}
		tunnels = ts
	}
	var out []parsed
	for i, m := range tunnels {
		v := &validator{file: file, loc: loc, index: i, bad: map[string]bool{}}
		if name, ok := m["name"].(string); ok {
			v.name = name
		}
		t := v.tunnel(v.rawTunnelOf(m))
		sortProblems(v.errs)
		errs = append(errs, v.errs...)
		out = append(out, parsed{Tunnel: t, ok: len(v.errs) == 0, at: tunnelAt{loc: loc, index: i}})
	}
	return out, pol, errs
}

// sortProblems puts one tunnel's problems in the order of the lines
// they are about.
func sortProblems(errs Errors) {
	sort.SliceStable(errs, func(i, j int) bool {
		a, aok := errs[i].(*Problem)
		b, bok := errs[j].(*Problem)
		if !aok || !bok {
			return false
		}
		return a.Line < b.Line || a.Line == b.Line && a.Col < b.Col
	})
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

// fileType names the kind of a file that is neither regular nor a
// directory.
func fileType(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	}
	return "not a file gre-hook reads"
}

// maxConfigSize bounds a config file: a thousand tunnels take a few
// hundred kB, and a file far larger is a mistake, not one to read whole.
const maxConfigSize = 16 << 20

// readSized reads f whole into a buffer of its size, as stat gave it, and
// one byte more to see the end at once; it grows only if the file did.
func readSized(f io.Reader, name string, size int64) ([]byte, error) {
	tooLarge := fmt.Errorf("%s: larger than a config can be (%d MiB)", name, maxConfigSize>>20)
	if size > maxConfigSize {
		return nil, tooLarge
	}
	b := make([]byte, 0, size+1)
	for {
		if len(b) > maxConfigSize {
			return nil, tooLarge
		}
		n, err := f.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return nil, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
}
