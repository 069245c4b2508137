package fake

import (
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Sysctl is a fake /proc/sys for hook.System.Sysctl, keyed by path
// ("net/ipv4/conf/gre-site2/accept_local"). It holds the globals it is
// given and net/ipv4/conf/{all,default}/..., and models the part of the
// kernel gre-hook depends on: a link's net/ipv4/conf/LINK/... exists
// only while the link does, and a new link starts with conf/default's
// values (a link deleted and made again starts afresh).
type Sysctl struct {
	mu     sync.Mutex
	net    *Net
	global map[string]string
	links  map[int]map[string]string // by link index
	// Sets are the keys and values written, "key=value", in order.
	Sets []string
	f    failer
}

const confPrefix = "net/ipv4/conf/"

// NewSysctl returns the parameters of a router: forwarding on, no strict
// reverse-path filter in conf.all, and a strict one in conf.default, as
// some distributions ship, so that a tunnel's rp_filter needs setting.
func NewSysctl(n *Net) *Sysctl {
	return &Sysctl{net: n, links: map[int]map[string]string{}, f: newFailer(), global: map[string]string{
		"net/ipv4/ip_forward":                "1",
		"net/ipv4/conf/all/accept_local":     "0",
		"net/ipv4/conf/all/rp_filter":        "0",
		"net/ipv4/conf/default/accept_local": "0",
		"net/ipv4/conf/default/rp_filter":    "1",
	}}
}

// FailNth makes the nth call (1-based, counted from now) of op, Get or
// Set, fail with ErrInjected.
func (s *Sysctl) FailNth(op string, nth int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.f.arm(op, nth)
}

// lookup returns the map that holds key and the name in it, or ENOENT
// as reading /proc/sys would.
func (s *Sysctl) lookup(key string) (map[string]string, string, error) {
	notExist := &fs.PathError{Op: "open", Path: "/proc/sys/" + key, Err: unix.ENOENT}
	if !strings.HasPrefix(key, confPrefix) {
		if _, ok := s.global[key]; !ok {
			return nil, "", notExist
		}
		return s.global, key, nil
	}
	i := strings.LastIndexByte(key, '/')
	dev, param := key[len(confPrefix):i], key[i+1:]
	if dev == "all" || dev == "default" {
		if _, ok := s.global[key]; !ok {
			return nil, "", notExist
		}
		return s.global, key, nil
	}
	s.net.mu.Lock()
	l, ok := s.net.links[dev]
	s.net.mu.Unlock()
	if !ok {
		return nil, "", notExist
	}
	m, ok := s.links[l.Index]
	if !ok {
		m = map[string]string{}
		for k, v := range s.global {
			if strings.HasPrefix(k, confPrefix+"default/") {
				m[strings.TrimPrefix(k, confPrefix+"default/")] = v
			}
		}
		s.links[l.Index] = m
	}
	if _, ok := m[param]; !ok {
		return nil, "", notExist
	}
	return m, param, nil
}

// Get implements hook.Sysctl.
func (s *Sysctl) Get(key string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.f.hit("Get"); err != nil {
		return "", err
	}
	m, k, err := s.lookup(key)
	if err != nil {
		return "", err
	}
	return m[k], nil
}

// Set implements hook.Sysctl.
func (s *Sysctl) Set(key, value string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.f.hit("Set"); err != nil {
		return err
	}
	m, k, err := s.lookup(key)
	if err != nil {
		return err
	}
	m[k] = value
	s.Sets = append(s.Sets, key+"="+value)
	return nil
}

// Dump prints, one a line and sorted, each existing link's parameters
// that differ from what a new link would get.
func (s *Sysctl) Dump() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.net.mu.Lock()
	defer s.net.mu.Unlock()
	var lines []string
	for name, l := range s.net.links {
		for param, v := range s.links[l.Index] {
			if v != s.global[confPrefix+"default/"+param] {
				lines = append(lines, fmt.Sprintf("sysctl %s%s/%s = %s", confPrefix, name, param, v))
			}
		}
	}
	sort.Strings(lines)
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}

// Global returns a parameter outside any link's, for tests to check that
// gre-hook left it alone.
func (s *Sysctl) Global(key string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.global[key]
}

// SetGlobal sets a parameter outside any link's, as the admin would.
func (s *Sysctl) SetGlobal(key, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.global[key] = value
}
