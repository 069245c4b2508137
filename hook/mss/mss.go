// Package mss keeps gre-hook's iptables rules, in two chains of the
// mangle table that gre-hook owns:
//
//   - GRE-HOOK (Out), jumped to from POSTROUTING, holds the TCP MSS
//     clamping rules;
//   - GRE-HOOK-IN (In), jumped to from PREROUTING, holds the reflection
//     guards: on a tunnel that reflects keepalives, the drop of inner
//     packets whose source is one of the router's own addresses and that
//     are not GRE.
//
// Each rule carries a comment naming gre-hook, the underlay and the
// tunnel. A run reads the chains it needs once, in one `iptables -S` of
// the whole mangle table, works out the chains it wants, and writes them
// back in one atomic iptables-restore, so the cost does not grow with the
// number of tunnels or chains and a failed write changes nothing. A chain goes, with its jump, when its last rule goes.
package mss

import (
	"fmt"
	"strings"
)

// Chain is one of gre-hook's chains in the mangle table, and the built-in
// chain that jumps to it.
type Chain struct {
	Name string
	From string
}

var (
	// Out holds the MSS rules.
	Out = Chain{Name: "GRE-HOOK", From: "POSTROUTING"}
	// In holds the reflection guards.
	In = Chain{Name: "GRE-HOOK-IN", From: "PREROUTING"}
)

// Chains is every chain of gre-hook's, in the order a write handles them.
var Chains = []Chain{Out, In}

// JumpComment marks the jump from the built-in chain into each chain.
const JumpComment = "gre-hook"

// JumpSpec is c's jump rule's spec, in iptables -S order.
func (c Chain) JumpSpec() []string {
	return []string{"-m", "comment", "--comment", JumpComment, "-j", c.Name}
}

// Backend is the iptables operations used for one address family.
type Backend interface {
	// Family is 4 or 6.
	Family() int
	// ReadChains reads chains of the mangle table, all at once: for each,
	// in the order given, whether it exists, its rules as `iptables -S
	// CHAIN` prints them (the -N line included) and whether its built-in
	// chain jumps to it (only asked when it exists).
	ReadChains(chains []Chain) ([]ChainState, error)
	// Restore feeds input to `iptables-restore --noflush`.
	Restore(input string) error
}

// Logger prints changes before they are made.
type Logger func(cmds ...string)

// ChainState is one of gre-hook's chains, as read.
type ChainState struct {
	Chain
	// Lines are the chain's rules as `iptables -S` prints them.
	Lines []string
	// Exists: the chain exists. Jump: its built-in chain jumps to it.
	Exists, Jump bool
}

// State is gre-hook's chains in one family's mangle table, as read.
type State struct {
	Family int
	// Chains are the chains read, in the order of Chains. Diff leaves
	// alone a chain that was not read.
	Chains []ChainState
}

// Chain returns c as read, and whether it was read.
func (s State) Chain(c Chain) (ChainState, bool) { return find(s.Chains, c) }

// Read reads the chains of b that chains names, in the order of Chains,
// and, for each that exists, the jump to it: one read of the table for
// them all.
func Read(b Backend, chains ...Chain) (State, error) {
	s := State{Family: b.Family()}
	var read []Chain
	for _, c := range Chains {
		if has(chains, c) {
			read = append(read, c)
		}
	}
	if len(read) == 0 {
		return s, nil
	}
	got, err := b.ReadChains(read)
	if err != nil {
		return State{}, fmt.Errorf("reading %s mangle %s: %w", binary(s.Family), chainNames(read), err)
	}
	for _, c := range read {
		cs, ok := find(got, c)
		if !ok {
			return State{}, fmt.Errorf("reading %s mangle %s: no answer for %s", binary(s.Family), chainNames(read), c.Name)
		}
		s.Chains = append(s.Chains, cs)
	}
	return s, nil
}

// find is c's state in cs.
func find(cs []ChainState, c Chain) (ChainState, bool) {
	for _, x := range cs {
		if x.Chain == c {
			return x, true
		}
	}
	return ChainState{Chain: c}, false
}

func has(chains []Chain, c Chain) bool {
	for _, x := range chains {
		if x == c {
			return true
		}
	}
	return false
}

// Rules are rules by chain, each as the arguments after `-A CHAIN`.
type Rules map[Chain][][]string

// Change is the one write that makes the chains hold the rules wanted.
type Change struct {
	Family int
	// Cmds are the iptables commands the write stands for, one a line.
	Cmds []string
	// Input is for `iptables-restore --noflush`; "" when there is
	// nothing to change.
	Input string
	// Chains are the chains the write changes, and Removed those of them
	// it removes.
	Chains, Removed []Chain
	// Prev are the rules mine held before in each chain read, to put back
	// with Sync.
	Prev Rules
	// Missing are the wanted rules the chains lack.
	Missing Rules
}

// Diff works out the write that makes the rules of each chain of s for
// which mine(comment) holds equal to want's for that chain, keeping every
// other rule as it is. Rules wanted in a chain s does not hold are not
// written: the caller reads every chain it wants rules in. It reads and
// changes nothing.
func Diff(s State, mine func(comment string) bool, want Rules) Change {
	c := Change{Family: s.Family, Prev: Rules{}, Missing: Rules{}}
	var decls, body strings.Builder
	for _, cs := range s.Chains {
		w := want[cs.Chain]
		prev, others := split(cs, mine)
		c.Prev[cs.Chain] = prev
		ch, ok := diffChain(binary(s.Family), cs, others, prev, w)
		if !ok {
			continue
		}
		c.Chains = append(c.Chains, cs.Chain)
		if ch.remove {
			c.Removed = append(c.Removed, cs.Chain)
		}
		c.Cmds = append(c.Cmds, ch.cmds...)
		if len(ch.missing) > 0 {
			c.Missing[cs.Chain] = ch.missing
		}
		decls.WriteString(ch.decl)
		body.WriteString(ch.body)
	}
	if len(c.Chains) == 0 {
		return c
	}
	// One atomic write for every chain: one process, and all or nothing.
	// The chains are declared first, as iptables-save writes them.
	c.Input = "*mangle\n" + decls.String() + body.String() + "COMMIT\n"
	return c
}

// split parts cs's rules into mine, as arguments, and the others, as
// their lines.
func split(cs ChainState, mine func(comment string) bool) (prev [][]string, others []string) {
	for _, l := range cs.Lines {
		args, ok := ruleArgs(l, cs.Name)
		if !ok {
			continue
		}
		if mine(commentOf(args)) {
			prev = append(prev, args)
		} else {
			others = append(others, l)
		}
	}
	return prev, others
}

// chainChange is the part of a write that concerns one chain.
type chainChange struct {
	cmds []string
	// decl declares the chain; body is its lines in the write after the
	// declarations.
	decl, body string
	remove     bool
	missing    [][]string
}

// diffChain is the change of one chain, and whether there is any.
func diffChain(bin string, cs ChainState, others []string, prev, want [][]string) (chainChange, bool) {
	var ch chainChange
	name, from, jumpSpec := cs.Name, cs.From, Join(cs.JumpSpec())
	jump := cs.Exists && cs.Jump
	if len(others) == 0 && len(want) == 0 {
		if !cs.Exists {
			return ch, false
		}
		for _, r := range prev {
			ch.cmds = append(ch.cmds, fmt.Sprintf("%s -t mangle -D %s %s", bin, name, Join(r)))
		}
		var in strings.Builder
		if jump {
			ch.cmds = append(ch.cmds, fmt.Sprintf("%s -t mangle -D %s %s", bin, from, jumpSpec))
			fmt.Fprintf(&in, "-D %s %s\n", from, jumpSpec)
		}
		ch.cmds = append(ch.cmds, fmt.Sprintf("%s -t mangle -X %s", bin, name))
		fmt.Fprintf(&in, "-F %s\n-X %s\n", name, name)
		ch.body, ch.remove = in.String(), true
		return ch, true
	}

	if cs.Exists && jump && equal(prev, want) {
		return ch, false
	}
	if !cs.Exists {
		ch.cmds = append(ch.cmds, fmt.Sprintf("%s -t mangle -N %s", bin, name))
	}
	if !jump {
		ch.cmds = append(ch.cmds, fmt.Sprintf("%s -t mangle -A %s %s", bin, from, jumpSpec))
	}
	wantSet, prevSet := set(want), set(prev)
	for _, r := range prev {
		if !wantSet[Join(r)] {
			ch.cmds = append(ch.cmds, fmt.Sprintf("%s -t mangle -D %s %s", bin, name, Join(r)))
		}
	}
	for _, r := range want {
		if !prevSet[Join(r)] {
			ch.cmds = append(ch.cmds, fmt.Sprintf("%s -t mangle -A %s %s", bin, name, Join(r)))
			ch.missing = append(ch.missing, r)
		}
	}

	// With --noflush, declaring an existing user chain flushes it; the
	// explicit -F makes that so on every iptables version and backend.
	ch.decl = fmt.Sprintf(":%s - [0:0]\n", name)
	var in strings.Builder
	fmt.Fprintf(&in, "-F %s\n", name)
	for _, l := range others {
		in.WriteString(l + "\n")
	}
	for _, r := range want {
		fmt.Fprintf(&in, "-A %s %s\n", name, Join(r))
	}
	if !jump {
		fmt.Fprintf(&in, "-A %s %s\n", from, jumpSpec)
	}
	ch.body = in.String()
	return ch, true
}

// Apply writes c to b.
func (c Change) Apply(b Backend) error {
	if c.Input == "" {
		return nil
	}
	if err := b.Restore(c.Input); err != nil {
		verb := "writing"
		if len(c.Removed) == len(c.Chains) {
			verb = "removing"
		}
		return fmt.Errorf("%s %s mangle %s: %w", verb, binary(c.Family), chainNames(c.Chains), err)
	}
	return nil
}

// chainNames says "chain GRE-HOOK", or "chains GRE-HOOK and GRE-HOOK-IN".
func chainNames(cs []Chain) string {
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = c.Name
	}
	if len(names) == 1 {
		return "chain " + names[0]
	}
	return "chains " + strings.Join(names, " and ")
}

// Sync makes the rules of each chain of chains for which mine(comment)
// holds equal to want's for that chain, keeping every other rule as it
// is: Read, Diff, log and Apply. It returns the rules it found for mine,
// so that a failed run can put them back with another Sync.
func Sync(b Backend, chains []Chain, mine func(comment string) bool, want Rules, log Logger) (prev Rules, err error) {
	s, err := Read(b, chains...)
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

// ruleArgs splits an `-A CHAIN ...` line of chain into the rule's
// arguments.
func ruleArgs(line, chain string) ([]string, bool) {
	f := Split(line)
	if len(f) < 2 || f[0] != "-A" || f[1] != chain {
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
