// Package state keeps gre-hook's record of what it created, one file per
// underlay under /run/gre-hook, and the lock that serialises runs.
//
// The record is what lets pre-down undo a post-up even after the config was
// edited or deleted, and what remembers a default route gre-hook replaced.
// It lives on tmpfs: after a reboot nothing it describes exists any more.
package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gre-hook/gre-hook/hook/config"
	"github.com/gre-hook/gre-hook/hook/plan"
)

// DefaultDir is where records live in the initial network namespace.
const DefaultDir = "/run/gre-hook"

// Version is the record format written by this gre-hook.
const Version = 1

// Route is a route in a record.
type Route struct {
	Dst    netip.Prefix `json:"dst"`
	Gw     netip.Addr   `json:"gw,omitempty"`
	Dev    string       `json:"dev,omitempty"`
	Table  uint32       `json:"table,omitempty"`
	Metric uint32       `json:"metric,omitempty"`
	// Protocol is kept for routes gre-hook replaced, to put them back as
	// they were.
	Protocol int `json:"protocol,omitempty"`
}

// Plan converts r for the rtnl layer.
func (r Route) Plan() plan.Route {
	return plan.Route{Dst: r.Dst, Gw: r.Gw, Dev: r.Dev, Table: r.Table, Metric: r.Metric}
}

// FromPlan converts a planned route.
func FromPlan(r plan.Route, proto int) Route {
	return Route{Dst: r.Dst, Gw: r.Gw, Dev: r.Dev, Table: r.Table, Metric: r.Metric, Protocol: proto}
}

// Tunnel is what gre-hook created for one tunnel.
type Tunnel struct {
	Name string `json:"name"`
	// Local and Remote are the tunnel's endpoints as the link was given
	// them: the underlay's address for local = "auto", and the address
	// RemoteName resolved to. gre-hook watch moves them in place
	// (hook.Engine.Retarget). Zero in records of older versions.
	Local  netip.Addr `json:"local,omitempty"`
	Remote netip.Addr `json:"remote,omitempty"`
	// RemoteName is the DNS name the config gives as remote, if any.
	RemoteName string `json:"remote_name,omitempty"`
	// Unresolved: the config has this tunnel, but up could not resolve
	// RemoteName and knew no earlier address, so nothing of it exists.
	// gre-hook watch brings it up (by running up on the underlay) once
	// the name resolves.
	Unresolved bool `json:"unresolved,omitempty"`
	// Routes are the tunnel's [[tunnel.route]]s as the last up installed
	// them: a failover withdraws and puts back exactly these.
	Routes []Route `json:"routes,omitempty"`
	// Defaults are the default routes gre-hook installed via the tunnel:
	// in gre-hook's own table (hook/POLICY-ROUTING.md). A default in the
	// main table (Table 0) is one the previous release installed there
	// (legacy, below).
	Defaults []Route `json:"defaults,omitempty"`
	// MSS lists the address families (4, 6) that have a rule.
	MSS []int `json:"mss,omitempty"`
	// Guard: the tunnel reflects keepalives and has a reflection guard,
	// an IPv4 rule in gre-hook's chain GRE-HOOK-IN.
	Guard bool `json:"guard,omitempty"`
	// Down is the configured down_command, kept so it runs even if the
	// config is gone by the time the underlay goes down.
	Down []string `json:"down_command,omitempty"`

	// Dead: gre-hook watch found the peer silent, and its routes are
	// withdrawn (Withdrawn lists them). Written before the kernel change
	// (hook.Engine.SetLiveness), so a crash is repaired from the record.
	Dead bool `json:"dead,omitempty"`
	// DeadSince is when the peer was found dead.
	DeadSince *time.Time `json:"dead_since,omitempty"`
	// LastReply is the peer's last reply as the watcher knew it at the
	// latest transition (status reads fresher ones from the liveness file).
	LastReply *time.Time `json:"last_reply,omitempty"`
	// Withdrawn are the routes a failover took out of the kernel, to put
	// back when the peer answers: with Dead, they are to be absent; without
	// it (a recovery under way), to be put back, after which the list goes.
	Withdrawn []Route `json:"withdrawn,omitempty"`

	// Legacy: what the release before policy routing kept, for taking such
	// a record down and moving it to the new form (hook/legacy.go). This
	// release never writes new values into them.
	//
	// Pin is the host route to the remote endpoint, if one was added.
	Pin *Route `json:"pin,omitempty"`
	// Replaced are the main table's default routes that were there before.
	Replaced []Route `json:"replaced,omitempty"`
	// Seq ordered the main-table default routes across underlays.
	Seq uint64 `json:"default_seq,omitempty"`
	// Displaced: a default route gre-hook did not set overrode this one's.
	Displaced bool `json:"displaced,omitempty"`
	// Fallbacks were the routes at a dead tunnel's default keys before
	// gre-hook's.
	Fallbacks []Route `json:"fallback_defaults,omitempty"`
	// LegacyWithdrawn were the main-table defaults a dead tunnel let go.
	LegacyWithdrawn []Route `json:"withdrawn_defaults,omitempty"`
}

// Legacy reports whether t still holds something of the previous
// release's form: a default route in the main table, or a pin.
func (t *Tunnel) Legacy() bool {
	return t.Pin != nil || len(t.LegacyDefaults()) > 0
}

// LegacyDefaults are t's default routes in the main table (the previous
// release's form).
func (t *Tunnel) LegacyDefaults() []Route {
	var out []Route
	for _, d := range t.Defaults {
		if d.Table == 0 {
			out = append(out, d)
		}
	}
	return out
}

// OwnedDefaults are t's default routes in gre-hook's table.
func (t *Tunnel) OwnedDefaults() []Route {
	var out []Route
	for _, d := range t.Defaults {
		if d.Table != 0 {
			out = append(out, d)
		}
	}
	return out
}

// Record is everything gre-hook created for one underlay.
type Record struct {
	Version  int    `json:"version"`
	Underlay string `json:"underlay"`
	// Source is the config the tunnels came from: "default" for
	// /etc/gre-hook, else an absolute path. A run that reads another
	// config leaves this underlay's tunnels alone. Empty in records of
	// older versions: any config may then take them.
	Source string `json:"source,omitempty"`
	// Insecure: written by a run that skipped the config checks
	// (GRE_HOOK_INSECURE_CONFIG). A checked run warns about such a record
	// and does not run the commands it lists.
	Insecure bool `json:"insecure,omitempty"`
	// Policy is the policy routing the run that wrote the record applied,
	// to every underlay at once: the table of the tunnels' default routes,
	// the priorities of the rules, the fwmark of the links. Nil in records
	// written before it could be configured, which had plan.DefaultPolicy
	// (Applied).
	Policy  *plan.Policy `json:"policy,omitempty"`
	Tunnels []Tunnel     `json:"tunnels"`
}

// Applied is the policy routing in force when r was written.
func (r *Record) Applied() plan.Policy {
	if r == nil || r.Policy == nil {
		return plan.DefaultPolicy
	}
	return *r.Policy
}

// DefaultSource is Record.Source for the default config locations.
const DefaultSource = "default"

// Find returns the named tunnel's entry, or nil.
func (r *Record) Find(name string) *Tunnel {
	if r == nil {
		return nil
	}
	for i := range r.Tunnels {
		if r.Tunnels[i].Name == name {
			return &r.Tunnels[i]
		}
	}
	return nil
}

// Families returns the address families with MSS rules.
func (r *Record) Families() map[int]bool {
	out := map[int]bool{}
	if r == nil {
		return out
	}
	for _, t := range r.Tunnels {
		for _, f := range t.MSS {
			out[f] = true
		}
	}
	return out
}

// Guarded reports whether a tunnel of r has a reflection guard.
func (r *Record) Guarded() bool {
	if r == nil {
		return false
	}
	for _, t := range r.Tunnels {
		if t.Guard {
			return true
		}
	}
	return false
}

// Store reads and writes records in one directory.
type Store struct {
	Dir string
	// Secure: a record is read only if root owns it and nobody else can
	// write it, as the config is. Off for GRE_HOOK_INSECURE_CONFIG.
	Secure bool
}

// read reads a record file. With Secure it opens the file once, without
// following a symlink, and checks the descriptor it then reads from.
func (s Store) read(path string) ([]byte, error) {
	if !s.Secure {
		return os.ReadFile(path)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, errors.New("it is a symlink; records are plain files that gre-hook writes itself")
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.Mode().IsRegular():
		return nil, errors.New("it is not a regular file")
	case !ok:
		return nil, errors.New("its owner cannot be told")
	case st.Uid != 0:
		return nil, fmt.Errorf("it is owned by uid %d, not root, and gre-hook acts on it as root", st.Uid)
	case fi.Mode().Perm()&0o022 != 0:
		return nil, fmt.Errorf("it is writable by group or others (mode %04o), and gre-hook acts on it as root", fi.Mode().Perm())
	}
	return io.ReadAll(f)
}

// DirFor returns the state directory for the current thread's network
// namespace. Records describe kernel objects of one namespace, so a run
// inside another namespace (ip netns exec) keeps its own records and lock.
//
// The directory is named by the namespace's cookie, which the kernel never
// hands out twice in one boot. The inode of /proc/self/ns/net will not do:
// the kernel reuses it as soon as the namespace is gone, and a new
// namespace would inherit the dead one's records, replaced default routes
// and all. Kernels before 5.14 have no cookie; there the inode it is.
//
// When the namespace cannot be told it is taken for the host's, and base
// is the answer; NetnsDir says so too.
func DirFor(base string) string {
	dir, _ := NetnsDir(base)
	return dir
}

// netnsCookie returns the cookie of the current thread's network namespace.
func netnsCookie() (uint64, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	return unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
}

func (s Store) path(underlay string) string {
	return filepath.Join(s.Dir, underlay+".json")
}

// Exists reports whether a record for underlay exists, cheaply.
func (s Store) Exists(underlay string) bool {
	_, err := os.Lstat(s.path(underlay))
	return err == nil
}

// Load reads the record for underlay; a missing record is (nil, nil).
func (s Store) Load(underlay string) (*Record, error) {
	if msg := config.KernelIfName(underlay); msg != "" {
		return nil, fmt.Errorf("interface name %s", msg)
	}
	data, err := s.read(s.path(underlay))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, &UnreadableError{Path: s.path(underlay), Underlay: underlay, Err: err}
	}
	r, err := Parse(data)
	if err != nil {
		return nil, &UnreadableError{Path: s.path(underlay), Underlay: underlay, Err: err}
	}
	if r.Underlay != underlay {
		return nil, &UnreadableError{Path: s.path(underlay), Underlay: underlay, Err: fmt.Errorf("it is for underlay %q", r.Underlay)}
	}
	return r, nil
}

// UnreadableError is a record that exists but cannot be used. Only the
// record knows which default route to put back, so nothing may be
// deleted on the strength of its absence: callers refuse, and say how to
// get out.
type UnreadableError struct {
	Path     string
	Underlay string
	Err      error
}

func (e *UnreadableError) Error() string {
	return fmt.Sprintf("record %s cannot be read: %v; gre-hook changes nothing on %s without it, because only the record says which default route to put back. "+
		"Repair it, or move it aside (mv %s %s.bad) and run `gre-hook --iface %s --phase down`, which then finds the tunnels by their kernel marks",
		e.Path, e.Err, e.Underlay, e.Path, e.Path, e.Underlay)
}

func (e *UnreadableError) Unwrap() error { return e.Err }

// Parse decodes and checks a record. It reads records of newer gre-hook
// versions too: a newer version only adds fields, and unknown fields are
// ignored, so a downgrade does not strand the tunnels a newer one made.
func Parse(data []byte) (*Record, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var r Record
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("corrupt: %w", err)
	}
	if dec.More() {
		return nil, errors.New("corrupt: trailing data")
	}
	if r.Version < 1 {
		return nil, fmt.Errorf("corrupt: format version %d", r.Version)
	}
	if r.Source != "" && r.Source != DefaultSource && !filepath.IsAbs(r.Source) {
		return nil, fmt.Errorf("source %q is neither %q nor an absolute path", r.Source, DefaultSource)
	}
	if msg := config.KernelIfName(r.Underlay); msg != "" {
		return nil, fmt.Errorf("underlay: %s", msg)
	}
	if p := r.Policy; p != nil && (p.Table == 0 || p.Table >= 253 && p.Table <= 255 || p.Priority < 1 || p.Priority > 32764 || p.Mark == 0) {
		return nil, fmt.Errorf("policy %s is not one gre-hook applies", p)
	}
	seen := map[string]bool{}
	for _, t := range r.Tunnels {
		if msg := config.KernelIfName(t.Name); msg != "" {
			return nil, fmt.Errorf("tunnel name: %s", msg)
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("tunnel %q listed twice", t.Name)
		}
		seen[t.Name] = true
		routes := append(append(append(append(append([]Route{}, t.Defaults...), t.Routes...), t.Replaced...), t.Withdrawn...), t.Fallbacks...)
		routes = append(routes, t.LegacyWithdrawn...)
		if t.Pin != nil {
			routes = append(routes, *t.Pin)
		}
		for _, rt := range routes {
			if !rt.Dst.IsValid() {
				return nil, fmt.Errorf("tunnel %q: route without a destination", t.Name)
			}
			if rt.Gw.IsValid() && rt.Gw.Is4() != rt.Dst.Addr().Is4() {
				return nil, fmt.Errorf("tunnel %q: route %s via %s mixes address families", t.Name, rt.Dst, rt.Gw)
			}
			if rt.Dev != "" && config.KernelIfName(rt.Dev) != "" {
				return nil, fmt.Errorf("tunnel %q: route %s: bad device name", t.Name, rt.Dst)
			}
			if rt.Protocol < 0 || rt.Protocol > 255 {
				return nil, fmt.Errorf("tunnel %q: route %s: table, metric or protocol out of range", t.Name, rt.Dst)
			}
		}
		if msg := config.ValidCommand(t.Down); msg != "" {
			return nil, fmt.Errorf("tunnel %q: down_command: %s", t.Name, msg)
		}
		if msg := config.ValidCommand(t.Down); msg != "" {
			return nil, fmt.Errorf("tunnel %q: down_command: %s", t.Name, msg)
		}
		for _, f := range t.MSS {
			if f != 4 && f != 6 {
				return nil, fmt.Errorf("tunnel %q: mss family %d is not 4 or 6", t.Name, f)
			}
		}
	}
	return &r, nil
}

// Save writes r atomically; a record with no tunnels is removed instead.
func (s Store) Save(r *Record) error {
	if r == nil {
		return nil
	}
	if len(r.Tunnels) == 0 {
		return s.Remove(r.Underlay)
	}
	r.Version = Version
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("writing record: %w", err)
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("writing record: %w", err)
	}
	tmp, err := os.CreateTemp(s.Dir, ".record-*")
	if err != nil {
		return fmt.Errorf("writing record: %w", err)
	}
	_, werr := tmp.Write(append(data, '\n'))
	cerr := tmp.Close()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), s.path(r.Underlay))
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing record: %w", werr)
	}
	return nil
}

// Remove deletes the record for underlay, if any.
func (s Store) Remove(underlay string) error {
	err := os.Remove(s.path(underlay))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing record: %w", err)
	}
	return nil
}

// All returns every record in the directory, by underlay. Records that
// cannot be read are in broken, by underlay; err is set when the
// directory itself cannot be read, and then nothing is known.
func (s Store) All() (recs map[string]*Record, broken map[string]error, err error) {
	out := map[string]*Record{}
	broken = map[string]error{}
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return out, broken, nil
		}
		return out, broken, fmt.Errorf("reading records: %w", err)
	}
	names := []string{}
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".json") {
			names = append(names, strings.TrimSuffix(e.Name(), ".json"))
		}
	}
	sort.Strings(names)
	for _, n := range names {
		r, err := s.Load(n)
		if err != nil {
			broken[n] = err
			continue
		}
		if r != nil {
			out[n] = r
		}
	}
	return out, broken, nil
}

// ErrLocked is returned when another run holds the lock past the wait.
var ErrLocked = errors.New("another gre-hook run holds the lock")

// Lock takes the run lock in dir, waiting at most wait. ifupdown brings
// interfaces up in parallel, and the iptables read-modify-write of our
// chain must not interleave.
func Lock(dir string, wait time.Duration) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating state directory: %w", err)
	}
	path := filepath.Join(dir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock: %w", err)
	}
	deadline := time.Now().Add(wait)
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("taking lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("%w %s after waiting %s; if no gre-hook is running, check `fuser %s`", ErrLocked, path, wait, path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
