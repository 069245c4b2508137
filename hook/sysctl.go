package hook

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
// set, and which a strict reverse-path filter also drops.
var reflectSysctls = []struct{ name, value string }{
	{"accept_local", "1"},
	{"rp_filter", "0"},
}

func confKey(iface, name string) string { return "net/ipv4/conf/" + iface + "/" + name }

// reflect sets up the interface of every tunnel in want that reflects
// keepalives, and warns when a global setting, which gre-hook never
// changes, defeats it. The kernel gives a new link conf.default's values,
// so this runs on every up and changes what differs.
func (r *runner) reflect(want []plan.Tunnel) error {
	sc := r.sys.Sysctl
	if sc == nil {
		return nil
	}
	var names []string
	for i := range want {
		t := &want[i]
		if !t.Reflect {
			continue
		}
		names = append(names, t.Link.Name)
		for _, s := range reflectSysctls {
			key, value := confKey(t.Link.Name, s.name), s.value
			have, err := sc.Get(key)
			if err != nil && r.req.DryRun && errors.Is(err, fs.ErrNotExist) {
				// The link is not there yet: it will start with conf.default's value.
				have, err = sc.Get(confKey("default", s.name))
			}
			if err != nil {
				return fmt.Errorf("tunnel %q: reading %s: %w", t.Link.Name, dotted(key), err)
			}
			if have == value {
				continue
			}
			if err := r.do(sysctlCmd(key, value), func() error { return sc.Set(key, value) },
				sysctlCmd(key, have), func() error { return sc.Set(key, have) }); err != nil {
				return fmt.Errorf("tunnel %q: %w", t.Link.Name, err)
			}
		}
	}
	if len(names) > 0 {
		for _, w := range reflectionWarnings(sc, names) {
			r.l.warn("%s", w)
		}
	}
	return nil
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
		out = append(out, fmt.Sprintf("net.ipv4.ip_forward is 0: %s cannot reflect the peer's keepalives (the kernel does not forward the reflected packet), so a peer with keepalives counts the tunnel down; gre-hook leaves global settings alone: set net.ipv4.ip_forward=1", which))
	}
	if v, err := sc.Get("net/ipv4/conf/all/rp_filter"); err == nil && v == "1" {
		out = append(out, fmt.Sprintf("net.ipv4.conf.all.rp_filter is 1 (strict), which overrides the tunnel's own 0: %s cannot reflect the peer's keepalives, so a peer with keepalives counts the tunnel down; gre-hook leaves global settings alone: set net.ipv4.conf.all.rp_filter to 0 or 2 (loose)", which))
	}
	return out
}
