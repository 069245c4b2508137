package fake

import (
	"fmt"
	"strings"
	"sync"

	"github.com/gre-hook/gre-hook/hook/mss"
)

// Tables is a fake mss.Backend for one family: the mangle table's
// gre-hook chains (mss.Chains) and the built-in chains that jump to them,
// kept as `iptables -S` text. Restore parses the iptables-restore input
// gre-hook writes and applies it at COMMIT, all or nothing, as
// iptables-restore does.
type Tables struct {
	mu     sync.Mutex
	family int
	tbl    table
	// Restores are the inputs Restore was given, in order.
	Restores []string
	// Reads counts ReadChains calls: each is one iptables process.
	Reads int
	// Listed are the chains ReadChains was asked for, in order.
	Listed []string
	// Removes counts committed restores that deleted a chain.
	Removes int
	f       failer
}

// table is the mangle table's state: user chains by name ("-A NAME ..."
// lines; absent when the chain does not exist) and built-in chains' rule
// specs by name, without "-A NAME ".
type table struct {
	user    map[string][]string
	builtin map[string][]string
}

func (t table) clone() table {
	c := table{user: map[string][]string{}, builtin: map[string][]string{}}
	for k, v := range t.user {
		c.user[k] = append([]string{}, v...)
	}
	for k, v := range t.builtin {
		c.builtin[k] = append([]string(nil), v...)
	}
	return c
}

// builtins are the built-in chains the fake knows, in iptables -S order.
var builtins = []string{"PREROUTING", "POSTROUTING"}

func userChain(name string) (mss.Chain, bool) {
	for _, c := range mss.Chains {
		if c.Name == name {
			return c, true
		}
	}
	return mss.Chain{}, false
}

func isBuiltin(name string) bool {
	for _, b := range builtins {
		if b == name {
			return true
		}
	}
	return false
}

// NewTables returns an empty mangle table for family 4 or 6.
func NewTables(family int) *Tables {
	return &Tables{family: family, tbl: table{}.clone(), f: newFailer()}
}

// FailNth makes the nth call (1-based, counted from now) of op fail with
// ErrInjected. op is Read (ReadChains) or Restore.
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

// ReadChains implements mss.Backend: one read, as one `iptables -S` of
// the table.
func (t *Tables) ReadChains(chains []mss.Chain) ([]mss.ChainState, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.Reads++
	for _, c := range chains {
		t.Listed = append(t.Listed, c.Name)
	}
	if err := t.f.hit("Read"); err != nil {
		return nil, err
	}
	out := make([]mss.ChainState, 0, len(chains))
	for _, c := range chains {
		cs := mss.ChainState{Chain: c}
		if rules, ok := t.tbl.user[c.Name]; ok {
			cs.Exists = true
			cs.Lines = append([]string{"-N " + c.Name}, rules...)
			j := mss.Join(c.JumpSpec())
			for _, p := range t.tbl.builtin[c.From] {
				if p == j {
					cs.Jump = true
				}
			}
		}
		out = append(out, cs)
	}
	return out, nil
}

// Restore implements mss.Backend, as iptables-restore --noflush.
func (t *Tables) Restore(input string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.Restores = append(t.Restores, input)
	if err := t.f.hit("Restore"); err != nil {
		return err
	}
	tbl := t.tbl.clone()
	inTable := false
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
			if line[1:] != "mangle" {
				return bad("fake knows only the mangle table")
			}
			inTable = true
		case !inTable:
			return bad("no table")
		case line == "COMMIT":
			committed = true
		case strings.HasPrefix(line, ":"):
			f := strings.Fields(line[1:])
			if _, ok := userChain(f[0]); len(f) != 3 || !ok || f[1] != "-" {
				return bad("fake knows only gre-hook's user chains")
			}
			// With --noflush, declaring an existing chain flushes it.
			tbl.user[f[0]] = []string{}
		default:
			gone, why := tbl.apply(mss.Split(line))
			if why != "" {
				return bad(why)
			}
			removed = removed || gone
		}
	}
	if !committed {
		return fmt.Errorf("iptables-restore: no COMMIT")
	}
	t.tbl = tbl
	if removed {
		t.Removes++
	}
	return nil
}

// apply runs one rule command of an iptables-restore input on tbl: why
// is the error iptables-restore would give, gone whether it removed a
// chain.
func (tbl *table) apply(args []string) (gone bool, why string) {
	if len(args) < 2 {
		return false, "bad rule"
	}
	op, name := args[0], args[1]
	rules, exists := tbl.user[name]
	c, user := userChain(name)
	switch {
	case user && op == "-F" && len(args) == 2:
		if !exists {
			return false, "no chain"
		}
		tbl.user[name] = []string{}
	case user && op == "-A":
		if !exists {
			return false, "no chain"
		}
		if err := checkRule(c, args[2:]); err != nil {
			return false, err.Error()
		}
		tbl.user[name] = append(rules, "-A "+name+" "+mss.Join(args[2:]))
	case user && op == "-X" && len(args) == 2:
		if !exists {
			return false, "no chain"
		}
		if len(rules) > 0 {
			return false, "chain is not empty"
		}
		for _, b := range builtins {
			for _, p := range tbl.builtin[b] {
				if strings.HasSuffix(p, "-j "+name) {
					return false, "Too many links: the chain is still referenced"
				}
			}
		}
		delete(tbl.user, name)
		return true, ""
	case isBuiltin(name) && op == "-D":
		spec := mss.Join(args[2:])
		for k, p := range tbl.builtin[name] {
			if p == spec {
				tbl.builtin[name] = append(tbl.builtin[name][:k:k], tbl.builtin[name][k+1:]...)
				return false, ""
			}
		}
		return false, "no such rule in " + name
	case isBuiltin(name) && op == "-A":
		spec := mss.Join(args[2:])
		if n := len(args); n >= 2 && args[n-2] == "-j" {
			if _, ok := userChain(args[n-1]); ok {
				if _, ok := tbl.user[args[n-1]]; !ok {
					return false, "jump to a chain that does not exist"
				}
			}
		}
		tbl.builtin[name] = append(tbl.builtin[name], spec)
	default:
		return false, "unexpected command"
	}
	return false, ""
}

// checkRule accepts, of the rules gre-hook writes into c, only the kind
// that belongs there: TCPMSS rules in mss.Out, reflection guards in
// mss.In. A rule without gre-hook's comment is someone else's, written
// back as read.
func checkRule(c mss.Chain, args []string) error {
	s := mss.Join(args)
	if !strings.Contains(s, "--comment gre-hook:") {
		return nil
	}
	switch c {
	case mss.Out:
		if !strings.HasPrefix(s, "-o ") || !strings.Contains(s, " -j TCPMSS") {
			return fmt.Errorf("not a TCPMSS rule of gre-hook's")
		}
	case mss.In:
		if !strings.HasPrefix(s, "-i ") || !strings.Contains(s, " ! -p gre -m addrtype --src-type LOCAL ") || !strings.HasSuffix(s, " -j DROP") {
			return fmt.Errorf("not a reflection guard of gre-hook's")
		}
	}
	return nil
}

// AddForeign adds a rule to POSTROUTING that is not gre-hook's.
func (t *Tables) AddForeign(spec string) { t.AddForeignTo("POSTROUTING", spec) }

// AddForeignTo adds a rule that is not gre-hook's to a built-in chain.
func (t *Tables) AddForeignTo(builtin, spec string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.tbl.builtin[builtin] = append(t.tbl.builtin[builtin], spec)
}

// SetChain replaces mss.Out's rules, creating it, to simulate another
// underlay's rules or drift. Each rule is the text after "-A GRE-HOOK ".
func (t *Tables) SetChain(rules ...string) { t.SetChainOf(mss.Out, rules...) }

// SetChainOf replaces c's rules, creating it. Each rule is the text after
// "-A CHAIN ".
func (t *Tables) SetChainOf(c mss.Chain, rules ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := []string{}
	for _, r := range rules {
		lines = append(lines, "-A "+c.Name+" "+r)
	}
	t.tbl.user[c.Name] = lines
}

// Dump prints the table as `iptables -t mangle -S` would, for the
// built-in chains that jump to gre-hook's chains and those chains,
// prefixed with the binary's name.
func (t *Tables) Dump() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	bin := "iptables"
	if t.family == 6 {
		bin = "ip6tables"
	}
	var b strings.Builder
	for _, name := range builtins {
		for _, p := range t.tbl.builtin[name] {
			fmt.Fprintf(&b, "%s -A %s %s\n", bin, name, p)
		}
	}
	for _, c := range mss.Chains {
		rules, ok := t.tbl.user[c.Name]
		if !ok {
			continue
		}
		fmt.Fprintf(&b, "%s -N %s\n", bin, c.Name)
		for _, r := range rules {
			fmt.Fprintf(&b, "%s %s\n", bin, r)
		}
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
