package fake

import (
	"fmt"
	"strings"
	"sync"

	"github.com/gre-hook/gre-hook/hook/mss"
)

// Tables is a fake mss.Backend for one family: the mangle table's
// GRE-HOOK chain and POSTROUTING, kept as `iptables -S` text. Restore
// parses the iptables-restore input gre-hook writes and applies it at
// COMMIT, all or nothing, as iptables-restore does.
type Tables struct {
	mu     sync.Mutex
	family int
	exists bool
	chain  []string // "-A GRE-HOOK ..." lines
	post   []string // POSTROUTING rule specs, without "-A POSTROUTING "
	// Restores are the inputs Restore was given, in order.
	Restores []string
	// Removes counts committed restores that deleted the chain.
	Removes int
	f       failer
}

// NewTables returns an empty mangle table for family 4 or 6.
func NewTables(family int) *Tables {
	return &Tables{family: family, f: newFailer()}
}

// FailNth makes the nth call (1-based, counted from now) of op fail with
// ErrInjected. op is a method of mss.Backend: List, JumpExists, Restore or
// Remove.
func (t *Tables) FailNth(op string, nth int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.f.arm(op, nth)
}

// Disarm cancels every pending injected failure.
func (t *Tables) Disarm() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.f.fail = map[string]int{}
}

// Family implements mss.Backend.
func (t *Tables) Family() int { return t.family }

// List implements mss.Backend.
func (t *Tables) List(table, chain string) ([]string, bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.f.hit("List"); err != nil {
		return nil, false, err
	}
	if table != "mangle" || chain != mss.Chain || !t.exists {
		return nil, false, nil
	}
	return append([]string{"-N " + mss.Chain}, t.chain...), true, nil
}

// JumpExists implements mss.Backend.
func (t *Tables) JumpExists() (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.f.hit("JumpExists"); err != nil {
		return false, err
	}
	return t.jumps() > 0, nil
}

func (t *Tables) jumps() int {
	n := 0
	j := mss.Join(mss.JumpSpec)
	for _, p := range t.post {
		if p == j {
			n++
		}
	}
	return n
}

// Restore implements mss.Backend, as iptables-restore --noflush.
func (t *Tables) Restore(input string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.Restores = append(t.Restores, input)
	if err := t.f.hit("Restore"); err != nil {
		return err
	}
	exists, chain, post := t.exists, append([]string(nil), t.chain...), append([]string(nil), t.post...)
	table := ""
	committed, removed := false, false
	for i, line := range strings.Split(strings.TrimSuffix(input, "\n"), "\n") {
		bad := func(why string) error {
			return fmt.Errorf("iptables-restore: line %d failed: %s: %q", i+1, why, line)
		}
		if committed {
			return bad("data after COMMIT")
		}
		switch {
		case strings.HasPrefix(line, "*"):
			table = line[1:]
			if table != "mangle" {
				return bad("fake knows only the mangle table")
			}
		case table == "":
			return bad("no table")
		case line == "COMMIT":
			committed = true
		case strings.HasPrefix(line, ":"):
			f := strings.Fields(line[1:])
			if len(f) != 3 || f[0] != mss.Chain || f[1] != "-" {
				return bad("fake knows only the user chain " + mss.Chain)
			}
			// With --noflush, declaring an existing chain flushes it.
			exists, chain = true, nil
		default:
			args := mss.Split(line)
			if len(args) < 2 {
				return bad("bad rule")
			}
			switch {
			case args[0] == "-F" && args[1] == mss.Chain && len(args) == 2:
				if !exists {
					return bad("no chain")
				}
				chain = nil
			case args[0] == "-A" && args[1] == mss.Chain:
				if !exists {
					return bad("no chain")
				}
				if err := checkRule(args[2:]); err != nil {
					return bad(err.Error())
				}
				chain = append(chain, "-A "+mss.Chain+" "+mss.Join(args[2:]))
			case args[0] == "-D" && args[1] == "POSTROUTING":
				spec := mss.Join(args[2:])
				found := false
				for k, p := range post {
					if p == spec {
						post = append(post[:k:k], post[k+1:]...)
						found = true
						break
					}
				}
				if !found {
					return bad("no such rule in POSTROUTING")
				}
			case args[0] == "-X" && args[1] == mss.Chain && len(args) == 2:
				if !exists {
					return bad("no chain")
				}
				if len(chain) > 0 {
					return bad("chain is not empty")
				}
				for _, p := range post {
					if strings.HasSuffix(p, "-j "+mss.Chain) {
						return bad("Too many links: the chain is still referenced")
					}
				}
				exists = false
				removed = true
			case args[0] == "-A" && args[1] == "POSTROUTING":
				spec := mss.Join(args[2:])
				if strings.HasSuffix(spec, "-j "+mss.Chain) && !exists {
					return bad("jump to a chain that does not exist")
				}
				post = append(post, spec)
			default:
				return bad("unexpected command")
			}
		}
	}
	if !committed {
		return fmt.Errorf("iptables-restore: no COMMIT")
	}
	t.exists, t.chain, t.post = exists, chain, post
	if removed {
		t.Removes++
	}
	return nil
}

// checkRule accepts the TCPMSS rules gre-hook writes and nothing else.
func checkRule(args []string) error {
	s := mss.Join(args)
	if !strings.HasPrefix(s, "-o ") || !strings.Contains(s, " -j TCPMSS") || !strings.Contains(s, "--comment ") {
		return fmt.Errorf("not a TCPMSS rule of gre-hook's")
	}
	return nil
}

// AddForeign adds a rule to POSTROUTING that is not gre-hook's.
func (t *Tables) AddForeign(spec string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.post = append(t.post, spec)
}

// SetChain replaces the chain's rules, creating it, to simulate another
// underlay's rules or drift. Each rule is the text after "-A GRE-HOOK ".
func (t *Tables) SetChain(rules ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.exists = true
	t.chain = nil
	for _, r := range rules {
		t.chain = append(t.chain, "-A "+mss.Chain+" "+r)
	}
}

// Dump prints the table as `iptables -t mangle -S` would, for the chain
// and POSTROUTING, prefixed with the binary's name.
func (t *Tables) Dump() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	bin := "iptables"
	if t.family == 6 {
		bin = "ip6tables"
	}
	var b strings.Builder
	for _, p := range t.post {
		fmt.Fprintf(&b, "%s -A POSTROUTING %s\n", bin, p)
	}
	if t.exists {
		fmt.Fprintf(&b, "%s -N %s\n", bin, mss.Chain)
	}
	for _, r := range t.chain {
		fmt.Fprintf(&b, "%s %s\n", bin, r)
	}
	return b.String()
}

// System is a fake kernel with its sysctls and one mangle table per
// family.
type System struct {
	Net    *Net
	Sysctl *Sysctl
	V4     *Tables
	V6     *Tables
}

// New returns an empty fake system.
func New() *System {
	n := NewNet()
	return &System{Net: n, Sysctl: NewSysctl(n), V4: NewTables(4), V6: NewTables(6)}
}

// Tables returns the backend of a family, for hook.System.Tables.
func (s *System) Tables(family int) (mss.Backend, error) {
	if family == 6 {
		return s.V6, nil
	}
	return s.V4, nil
}

// Dump prints the whole state: kernel, its links' sysctls, then iptables,
// then ip6tables.
func (s *System) Dump() string {
	return s.Net.Dump() + s.Sysctl.Dump() + s.V4.Dump() + s.V6.Dump()
}
