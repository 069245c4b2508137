package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/gre-hook/gre-hook/hook/plan"
)

// Sysctl reads and writes kernel parameters. A key is the parameter's
// path under /proc/sys, with '/' between its parts
// ("net/ipv4/conf/gre-site2/accept_local"): an interface name may hold a
// '.', which the dotted form cannot tell from a separator.
type Sysctl interface {
	Get(key string) (string, error)
	Set(key, value string) error
}

// ProcSys is the kernel's Sysctl, over /proc/sys.
type ProcSys struct{}

func (ProcSys) Get(key string) (string, error) {
	b, err := os.ReadFile("/proc/sys/" + key)
	return strings.TrimSpace(string(b)), err
}

func (ProcSys) Set(key, value string) error {
	f, err := os.OpenFile("/proc/sys/"+key, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(value); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// sysctlCmd renders setting key as sysctl(8) takes it: dotted, with each
// '.' inside a part (an interface name's) written as '/'.
func sysctlCmd(key, value string) string {
	return "sysctl -w " + dotted(key) + "=" + value
}

// dotted turns a /proc/sys key into sysctl(8)'s name for it, which swaps
// '.' and '/'.
func dotted(key string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '/':
			return '.'
		case '.':
			return '/'
		}
		return r
	}, key)
}

// reflectSysctls are what a tunnel's interface needs to bounce the peer's
// keepalives: the inner packet comes in with one of our own addresses as
// its source, which the kernel drops as a martian unless accept_local is
// set, and which a strict reverse-path filter also drops (the route to a
// local address is not through the tunnel). A loose filter (2) passes it,
// since the kernel takes a local source for reachable when accept_local
// is set, and still drops sources with no route at all, which 0 would
// let in. The kernel applies the larger of conf.all's value and the
// interface's, so 2 here also outweighs a strict conf.all.
var reflectSysctls = []struct{ name, value string }{
	{"accept_local", "1"},
	{"rp_filter", "2"},
}

func confKey(iface, name string) string { return "net/ipv4/conf/" + iface + "/" + name }

// ReadSysctls reads, into the snapshot, what diffSysctls compares: the
// reflection settings of every tunnel in want that reflects keepalives,
// and conf.default's, which a link gets when it is made. A link that is
// not there yet has no values to read.
func ReadSysctls(sc Sysctl, want []plan.Tunnel, s *Snapshot) error {
	if sc == nil {
		return nil
	}
	for i := range want {
		t := &want[i]
		if !t.Reflect {
			continue
		}
		if s.sysctls == nil {
			s.sysctls = map[string]string{}
		}
		for _, set := range reflectSysctls {
			for _, iface := range []string{"default", t.Link.Name} {
				key := confKey(iface, set.name)
				if _, done := s.sysctls[key]; done {
					continue
				}
				v, err := sc.Get(key)
				switch {
				case err == nil:
					s.sysctls[key] = v
				case iface == t.Link.Name && errors.Is(err, fs.ErrNotExist):
				default:
					return fmt.Errorf("tunnel %q: reading %s: %w", t.Link.Name, dotted(key), err)
				}
			}
		}
	}
	return nil
}

// diffSysctls is the steps that set up the interface of every tunnel in
// want that reflects keepalives. A link the diff makes, or makes again,
// starts with conf.default's values; one it changes in place keeps its
// own.
func diffSysctls(want []plan.Tunnel, s *Snapshot) []Step {
	var out []Step
	for i := range want {
		t := &want[i]
		if !t.Reflect || s.sysctls == nil {
			continue
		}
		name := t.Link.Name
		have, exists := s.Links[name]
		fresh := !exists
		if exists {
			_, why := remakes(have, t.Link)
			fresh = why != ""
		}
		for _, set := range reflectSysctls {
			key, value := confKey(name, set.name), set.value
			cur, known := s.sysctls[key]
			if fresh || !known {
				cur, known = s.sysctls[confKey("default", set.name)]
			}
			if known && cur == value {
				continue
			}
			st := Step{Tunnel: name, Cmds: []string{sysctlCmd(key, value)},
				Why:    because(name, "%s is %s, want %s", dotted(key), cur, value),
				change: func(x *Executor) error { return x.Sys.Sysctl.Set(key, value) }}
			if known {
				st.undoCmd = sysctlCmd(key, cur)
				st.undo = func(x *Executor) error { return x.Sys.Sysctl.Set(key, cur) }
			}
			out = append(out, st)
		}
	}
	return out
}

// warnReflection warns when a global setting, which gre-hook never
// changes, stops the tunnels in want from reflecting keepalives.
func warnReflection(sc Sysctl, want []plan.Tunnel, l *Logger) {
	if sc == nil {
		return
	}
	var names []string
	for _, t := range want {
		if t.Reflect {
			names = append(names, t.Link.Name)
		}
	}
	if len(names) == 0 {
		return
	}
	for _, w := range reflectionWarnings(sc, names) {
		l.Warn("%s", w)
	}
}

// reflectionWarnings names the global settings that stop the tunnels
// from reflecting keepalives. A setting that cannot be read is not
// guessed at.
func reflectionWarnings(sc Sysctl, tunnels []string) []string {
	which := "tunnel " + tunnels[0]
	if len(tunnels) > 1 {
		which = "tunnels " + strings.Join(tunnels, ", ")
	}
	var out []string
	if v, err := sc.Get("net/ipv4/ip_forward"); err == nil && v == "0" {
		out = append(out, fmt.Sprintf("net.ipv4.ip_forward is 0: %s cannot reflect the peer's keepalives (the kernel does not forward the reflected packet), "+
			"so a peer with keepalives counts the tunnel down; gre-hook leaves global settings alone: set net.ipv4.ip_forward=1", which))
	}
	// conf.all.rp_filter needs no warning: the tunnel's own 2 (loose) is
	// the larger, whatever conf.all says.
	return out
}
