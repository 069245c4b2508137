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

// Sync makes the rules of Chain for which mine(comment) holds equal to
// want, keeping every other rule as it is. It returns the rules it found for
// mine, so that a failed run can put them back with another Sync.
func Sync(b Backend, mine func(comment string) bool, want [][]string, log Logger) (prev [][]string, err error) {
	bin := "iptables"
	if b.Family() == 6 {
		bin = "ip6tables"
	}
	// The commands a write stands for, printed together just before it.
	var cmds []string
	lines, exists, err := b.List("mangle", Chain)
	if err != nil {
		return nil, fmt.Errorf("reading %s mangle chain %s: %w", bin, Chain, err)
	}
	var others []string
	for _, l := range lines {
		args, ok := ruleArgs(l)
		if !ok {
			continue
		}
		if mine(commentOf(args)) {
			prev = append(prev, args)
		} else {
			others = append(others, l)
		}
	}
	jump := false
	if exists {
		if jump, err = b.JumpExists(); err != nil {
			return nil, fmt.Errorf("reading %s mangle POSTROUTING: %w", bin, err)
		}
	}

	if len(others) == 0 && len(want) == 0 {
		if !exists && !jump {
			return prev, nil
		}
		for _, r := range prev {
			cmds = append(cmds, fmt.Sprintf("%s -t mangle -D %s %s", bin, Chain, Join(r)))
		}
		// The jump, the rules and the chain go in one atomic write, like
		// every other change: one process, and all or nothing.
		var in strings.Builder
		in.WriteString("*mangle\n")
		if jump {
			cmds = append(cmds, fmt.Sprintf("%s -t mangle -D POSTROUTING %s", bin, Join(JumpSpec)))
			fmt.Fprintf(&in, "-D POSTROUTING %s\n", Join(JumpSpec))
		}
		cmds = append(cmds, fmt.Sprintf("%s -t mangle -X %s", bin, Chain))
		fmt.Fprintf(&in, "-F %s\n-X %s\nCOMMIT\n", Chain, Chain)
		log(cmds...)
		if err := b.Restore(in.String()); err != nil {
			return prev, fmt.Errorf("removing %s mangle chain %s: %w", bin, Chain, err)
		}
		return prev, nil
	}

	if exists && jump && equal(prev, want) {
		return prev, nil
	}
	if !exists {
		cmds = append(cmds, fmt.Sprintf("%s -t mangle -N %s", bin, Chain))
	}
	if !jump {
		cmds = append(cmds, fmt.Sprintf("%s -t mangle -A POSTROUTING %s", bin, Join(JumpSpec)))
	}
	wantSet, prevSet := set(want), set(prev)
	for _, r := range prev {
		if !wantSet[Join(r)] {
			cmds = append(cmds, fmt.Sprintf("%s -t mangle -D %s %s", bin, Chain, Join(r)))
		}
	}
	for _, r := range want {
		if !prevSet[Join(r)] {
			cmds = append(cmds, fmt.Sprintf("%s -t mangle -A %s %s", bin, Chain, Join(r)))
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
	log(cmds...)
	if err := b.Restore(in.String()); err != nil {
		return prev, fmt.Errorf("writing %s mangle chain %s: %w", bin, Chain, err)
	}
	return prev, nil
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

// Comments returns the comments of the rules in a chain listing.
func Comments(lines []string) []string {
	var out []string
	for _, l := range lines {
		if args, ok := ruleArgs(l); ok {
			out = append(out, commentOf(args))
		}
	}
	return out
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
