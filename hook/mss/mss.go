// Package mss keeps gre-hook's TCP MSS clamping rules.
//
// The rules live in one chain that gre-hook owns in the mangle table,
// jumped to from POSTROUTING. Each rule carries a comment naming gre-hook,
// the underlay and the tunnel. A run reads the chain once, works out the
// chain it wants, and writes it back in one atomic iptables-restore, so the
// cost does not grow with the number of tunnels and a failed write changes
// nothing.
package mss

import (
	"fmt"
	"strings"
)

// Chain is the chain gre-hook owns in the mangle table.
const Chain = "GRE-HOOK"

// JumpComment marks the jump from POSTROUTING into Chain.
const JumpComment = "gre-hook"

// JumpSpec is the jump rule's spec, in iptables -S order.
var JumpSpec = []string{"-m", "comment", "--comment", JumpComment, "-j", Chain}

// Backend is the iptables operations used for one address family.
type Backend interface {
	// Family is 4 or 6.
	Family() int
	// List returns chain's rules as `iptables -S` prints them (the -N line
	// included); exists is false when the chain does not exist.
	List(table, chain string) (lines []string, exists bool, err error)
	// JumpExists reports whether POSTROUTING jumps to Chain.
	JumpExists() (bool, error)
	// Restore feeds input to `iptables-restore --noflush`.
	Restore(input string) error
}

// Logger prints changes before they are made.
type Logger func(cmds ...string)

// State is gre-hook's chain in one family's mangle table, as read.
type State struct {
	Family int
	// Lines are the chain's rules as `iptables -S` prints them.
	Lines []string
	// Exists: the chain exists. Jump: POSTROUTING jumps to it.
	Exists, Jump bool
}

// Read reads b's chain and, if the chain exists, the jump to it.
func Read(b Backend) (State, error) {
	s := State{Family: b.Family()}
	bin := binary(s.Family)
	var err error
	s.Lines, s.Exists, err = b.List("mangle", Chain)
	if err != nil {
		return State{}, fmt.Errorf("reading %s mangle chain %s: %w", bin, Chain, err)
	}
	if s.Exists {
		if s.Jump, err = b.JumpExists(); err != nil {
			return State{}, fmt.Errorf("reading %s mangle POSTROUTING: %w", bin, err)
		}
	}
	return s, nil
}

// Change is the one write that makes a chain hold the rules wanted.
type Change struct {
	Family int
	// Cmds are the iptables commands the write stands for, one a line.
	Cmds []string
	// Input is for `iptables-restore --noflush`; "" when there is
	// nothing to change.
	Input string
	// Remove: the write removes the chain.
	Remove bool
	// Prev are the rules mine held before, to put back with Sync.
	Prev [][]string
	// Missing are the wanted rules the chain lacks.
	Missing [][]string
}

// Diff works out the write that makes the rules of s for which
// mine(comment) holds equal to want, keeping every other rule as it is.
// It reads and changes nothing.
func Diff(s State, mine func(comment string) bool, want [][]string) Change {
	bin := binary(s.Family)
	c := Change{Family: s.Family}
	var others []string
	for _, l := range s.Lines {
		args, ok := ruleArgs(l)
		if !ok {
			continue
		}
		if mine(commentOf(args)) {
			c.Prev = append(c.Prev, args)
		} else {
			others = append(others, l)
		}
	}
	jump := s.Exists && s.Jump

	if len(others) == 0 && len(want) == 0 {
		if !s.Exists && !jump {
			return c
		}
		for _, r := range c.Prev {
			c.Cmds = append(c.Cmds, fmt.Sprintf("%s -t mangle -D %s %s", bin, Chain, Join(r)))
		}
		// The jump, the rules and the chain go in one atomic write, like
		// every other change: one process, and all or nothing.
		var in strings.Builder
		in.WriteString("*mangle\n")
		if jump {
			c.Cmds = append(c.Cmds, fmt.Sprintf("%s -t mangle -D POSTROUTING %s", bin, Join(JumpSpec)))
			fmt.Fprintf(&in, "-D POSTROUTING %s\n", Join(JumpSpec))
		}
		c.Cmds = append(c.Cmds, fmt.Sprintf("%s -t mangle -X %s", bin, Chain))
		fmt.Fprintf(&in, "-F %s\n-X %s\nCOMMIT\n", Chain, Chain)
		c.Input, c.Remove = in.String(), true
		return c
	}

	if s.Exists && jump && equal(c.Prev, want) {
		return c
	}
	if !s.Exists {
		c.Cmds = append(c.Cmds, fmt.Sprintf("%s -t mangle -N %s", bin, Chain))
	}
	if !jump {
		c.Cmds = append(c.Cmds, fmt.Sprintf("%s -t mangle -A POSTROUTING %s", bin, Join(JumpSpec)))
	}
	wantSet, prevSet := set(want), set(c.Prev)
	for _, r := range c.Prev {
		if !wantSet[Join(r)] {
			c.Cmds = append(c.Cmds, fmt.Sprintf("%s -t mangle -D %s %s", bin, Chain, Join(r)))
		}
	}
	for _, r := range want {
		if !prevSet[Join(r)] {
			c.Cmds = append(c.Cmds, fmt.Sprintf("%s -t mangle -A %s %s", bin, Chain, Join(r)))
			c.Missing = append(c.Missing, r)
		}
	}

	var in strings.Builder
	in.WriteString("*mangle\n")
	// With --noflush, declaring an existing user chain flushes it; the
	// explicit -F makes that so on every iptables version and backend.
	fmt.Fprintf(&in, ":%s - [0:0]\n-F %s\n", Chain, Chain)
	for _, l := range others {
		in.WriteString(l + "\n")
	}
	for _, r := range want {
		fmt.Fprintf(&in, "-A %s %s\n", Chain, Join(r))
	}
	if !jump {
		fmt.Fprintf(&in, "-A POSTROUTING %s\n", Join(JumpSpec))
	}
	in.WriteString("COMMIT\n")
	c.Input = in.String()
	return c
}

// Apply writes c to b.
func (c Change) Apply(b Backend) error {
	if c.Input == "" {
		return nil
	}
	if err := b.Restore(c.Input); err != nil {
		if c.Remove {
			return fmt.Errorf("removing %s mangle chain %s: %w", binary(c.Family), Chain, err)
		}
		return fmt.Errorf("writing %s mangle chain %s: %w", binary(c.Family), Chain, err)
	}
	return nil
}

// Sync makes the rules of Chain for which mine(comment) holds equal to
// want, keeping every other rule as it is: Read, Diff, log and Apply. It
// returns the rules it found for mine, so that a failed run can put them
// back with another Sync.
func Sync(b Backend, mine func(comment string) bool, want [][]string, log Logger) (prev [][]string, err error) {
	s, err := Read(b)
	if err != nil {
		return nil, err
	}
	c := Diff(s, mine, want)
	if c.Input == "" {
		return c.Prev, nil
	}
	log(c.Cmds...)
	return c.Prev, c.Apply(b)
}

func binary(family int) string {
	if family == 6 {
		return "ip6tables"
	}
	return "iptables"
}

// ruleArgs splits an `-A CHAIN ...` line into the rule's arguments.
func ruleArgs(line string) ([]string, bool) {
	f := Split(line)
	if len(f) < 2 || f[0] != "-A" || f[1] != Chain {
		return nil, false
	}
	return f[2:], true
}

func commentOf(args []string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--comment" {
			return args[i+1]
		}
	}
	return ""
}

func equal(a, b [][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if Join(a[i]) != Join(b[i]) {
			return false
		}
	}
	return true
}

// set is rules as a set of their rendered forms: with a thousand tunnels,
// comparing lists pairwise costs more than the kernel's work does.
func set(rules [][]string) map[string]bool {
	m := make(map[string]bool, len(rules))
	for _, r := range rules {
		m[Join(r)] = true
	}
	return m
}

// Join renders args for a log line or iptables-restore input, quoting the
// ones that need it the way iptables itself does.
func Join(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\"'\\") {
			a = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(a) + `"`
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

// Split undoes Join: it splits an iptables -S line into arguments,
// honouring double quotes and backslash escapes. It works on bytes, not
// runes: every byte it treats specially is ASCII, and ranging over runes
// would turn bytes that are not UTF-8 (a foreign rule's comment may hold
// any) into U+FFFD.
func Split(line string) []string {
	var out []string
	var cur strings.Builder
	in, quoted, esc := false, false, false
	for i := 0; i < len(line); i++ {
		r := line[i]
		switch {
		case esc:
			cur.WriteByte(r)
			esc = false
		case r == '\\' && quoted:
			esc = true
		case r == '"':
			quoted = !quoted
			in = true
		case (r == ' ' || r == '\t') && !quoted:
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(r)
			in = true
		}
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}
