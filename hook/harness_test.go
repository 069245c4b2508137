package hook

import (
	"bytes"
	"context"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gre-hook/gre-hook/hook/config"
	"github.com/gre-hook/gre-hook/hook/fake"
	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/state"
)

// env is one fake machine: a kernel with underlay eth1 (198.51.100.1/24,
// default route via 198.51.100.254), iptables, a record directory and a
// config file.
type env struct {
	t        *testing.T
	fk       *fake.System
	sys      *System
	log      bytes.Buffer
	cfg      string
	commands []string
	modules  []string
	// before is the kernel as a test set it up, for tests that compare
	// with it after a full down.
	before string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, fk: fake.New()}
	n := e.fk.Net
	n.AddDevice("eth1", 1500)
	n.AddDeviceAddr("eth1", netip.MustParsePrefix("198.51.100.1/24"))
	n.AddDeviceAddr("eth1", netip.MustParsePrefix("2001:db8:1::1/64"))
	n.AddForeignRoute(plan.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("198.51.100.254"), Dev: "eth1"}, fake.ProtoStatic)
	dir := t.TempDir()
	e.cfg = filepath.Join(dir, "gre-hook.toml")
	e.sys = &System{
		Net:    n,
		Tables: e.fk.Tables,
		LoadModule: func(name string) error {
			e.modules = append(e.modules, name)
			return nil
		},
		Command: func(ctx context.Context, argv, env []string) error {
			e.commands = append(e.commands, strings.Join(argv, " ")+" ["+strings.Join(env[1:], " ")+"]")
			return nil
		},
		Sysctl:   e.fk.Sysctl,
		Store:    state.Store{Dir: filepath.Join(dir, "run")},
		LockWait: 200 * time.Millisecond,
		Log:      &e.log,
	}
	return e
}

// write replaces the config file.
func (e *env) write(text string) {
	e.t.Helper()
	if err := os.WriteFile(e.cfg, []byte(text), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) req(phase Phase) Request {
	return Request{Iface: "eth1", Phase: phase, Config: e.cfg, AllowInsecure: true}
}

// run runs a phase and returns its error and what it logged.
func (e *env) run(phase Phase) (string, error) {
	e.t.Helper()
	e.log.Reset()
	err := run(e.req(phase), e.sys)
	return e.log.String(), err
}

// run carries out req as gre-hook's command line does: the config read
// once, then up, or down (which goes on when the config does not load).
func run(req Request, sys *System) error {
	cfg, err := LoadConfig(req)
	if req.Phase == PhaseDown {
		return NewEngine(sys).Down(bg(), req, cfg, err)
	}
	if err != nil {
		return err
	}
	return NewEngine(sys).Up(bg(), req, cfg)
}

// gc runs GC with the config req names.
func gc(t *testing.T, req Request, sys *System) error {
	t.Helper()
	return NewEngine(sys).GC(bg(), req, mustLoad(t, req))
}

// statusOf runs Status, not as JSON, with the config req names.
func statusOf(t *testing.T, req Request, sys *System, out io.Writer) (bool, error) {
	t.Helper()
	return NewEngine(sys).Status(req, mustLoad(t, req), out, false)
}

func mustLoad(t *testing.T, req Request) *config.Config {
	t.Helper()
	cfg, err := LoadConfig(req)
	if err != nil {
		t.Fatalf("reading the config: %v", err)
	}
	return cfg
}

// mustRun runs a phase that must succeed and returns its log.
func (e *env) mustRun(phase Phase) string {
	e.t.Helper()
	out, err := e.run(phase)
	if err != nil {
		e.t.Fatalf("%s: %v\nlog:\n%s", phase, err, out)
	}
	return out
}

func (e *env) dump() string { return e.fk.Dump() }

func (e *env) dryRun() string {
	e.t.Helper()
	req := e.req(PhaseUp)
	req.DryRun = true
	e.log.Reset()
	if err := run(req, e.sys); err != nil {
		e.t.Fatalf("dry run: %v\n%s", err, e.log.String())
	}
	return e.log.String()
}

// baseline is the fake machine's state before gre-hook does anything.
const baseline = `addr eth1 198.51.100.1/24
addr eth1 2001:db8:1::1/64
link eth1 mtu 1500 multicast on up
link lo mtu 65536 multicast off up
route 0.0.0.0/0 via 198.51.100.254 dev eth1 proto 4
route 198.51.100.0/24 dev eth1 proto 2
route 2001:db8:1::/64 dev eth1 metric 256 proto 2
`

func diff(t *testing.T, what, got, want string) {
	t.Helper()
	if got == want {
		return
	}
	t.Errorf("%s differs\n--- got\n%s--- want\n%s--- only in got:\n%s--- only in want:\n%s", what, got, want, minus(got, want), minus(want, got))
}

// minus returns the lines of a not in b.
func minus(a, b string) string {
	in := map[string]bool{}
	for _, l := range strings.Split(b, "\n") {
		in[l] = true
	}
	var out []string
	for _, l := range strings.Split(a, "\n") {
		if !in[l] && l != "" {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return ""
	}
	return strings.Join(out, "\n") + "\n"
}

// record returns the underlay's record file, or "" when there is none.
func (e *env) record() string {
	e.t.Helper()
	data, err := os.ReadFile(filepath.Join(e.sys.Store.Dir, "eth1.json"))
	if os.IsNotExist(err) {
		return ""
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return string(data)
}

// golden returns the state a fresh machine reaches with one up of text.
func golden(t *testing.T, text string) string {
	t.Helper()
	e := newEnv(t)
	e.write(text)
	e.mustRun(PhaseUp)
	return e.dump()
}

func bg() context.Context { return context.Background() }

// jsonStatusOf runs Status as JSON, with the config req names.
func jsonStatusOf(t *testing.T, req Request, sys *System, out io.Writer) (bool, error) {
	t.Helper()
	return NewEngine(sys).Status(req, mustLoad(t, req), out, true)
}

// engineTo is the Engine over sys logging to w (sys's own log if nil).
func engineTo(sys *System, w io.Writer) *Engine {
	s := *sys
	if w != nil {
		s.Log = w
	}
	return NewEngine(&s)
}

// watchedOf and dynamicOf are the two lists of the Engine's Watching.
func watchedOf(sys *System, cfgPath string) ([]WatchedTunnel, error) {
	w, err := NewEngine(sys).Watching(cfgPath)
	return w.Keepalives, err
}

func dynamicOf(sys *System, cfgPath string) ([]DynamicTunnel, error) {
	w, err := NewEngine(sys).Watching(cfgPath)
	return w.Endpoints, err
}

// mustGC runs gc with the env's config and fails the test on an error,
// with what gc logged.
func (e *env) mustGC() {
	e.t.Helper()
	e.log.Reset()
	if err := gc(e.t, Request{Config: e.cfg, AllowInsecure: true}, e.sys); err != nil {
		e.t.Fatalf("gc: %v\n%s", err, e.log.String())
	}
}
