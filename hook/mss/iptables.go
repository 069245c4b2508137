package mss

import (
	"bytes"
	"fmt"
	"os/exec"
	"strconv"
	"strings"

	"github.com/coreos/go-iptables/iptables"
)

// System is the Backend over the real iptables or ip6tables. A read is
// one `iptables -S` of the whole mangle table, whatever the chains; the
// batched write is one iptables-restore. go-iptables serves only the
// fallback for a table that iptables cannot print whole.
type System struct {
	family  int
	name    string
	path    string
	restore string
	wait    int
	// run runs a command and returns its standard output; a test counts
	// the processes through it.
	run func(name string, args ...string) (string, error)
	// newEach makes the reader of the fallback. go-iptables runs
	// `iptables --version` to make one, so it is made only when needed.
	newEach func() (chainReader, error)
	// each is false until a whole-table read fails; then the rest of the
	// run reads chain by chain, as it would fail again.
	each    bool
	eachR   chainReader
	eachErr error
}

// chainReader is what the fallback uses of go-iptables.
type chainReader interface {
	ChainExists(table, chain string) (bool, error)
	List(table, chain string) ([]string, error)
	Exists(table, chain string, rulespec ...string) (bool, error)
}

// Open finds the iptables binaries for family (4 or 6), so that a missing
// one is an error before anything changes. wait bounds how long each call
// waits for the xtables lock, in seconds. It starts no process.
func Open(family, wait int) (*System, error) {
	name := "iptables"
	if family == 6 {
		name = "ip6tables"
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return nil, fmt.Errorf("%s is not installed (install the iptables package): %w", name, err)
	}
	restore, err := exec.LookPath(name + "-restore")
	if err != nil {
		return nil, fmt.Errorf("%s-restore is not installed (install the iptables package): %w", name, err)
	}
	s := &System{family: family, name: name, path: path, restore: restore, wait: wait, run: output}
	s.newEach = func() (chainReader, error) {
		proto := iptables.ProtocolIPv4
		if family == 6 {
			proto = iptables.ProtocolIPv6
		}
		// NewWithProtocol would wait for the xtables lock forever.
		ipt, err := iptables.New(iptables.IPFamily(proto), iptables.Path(path), iptables.Timeout(wait))
		if err != nil {
			return nil, fmt.Errorf("starting %s: %w", name, err)
		}
		return ipt, nil
	}
	return s, nil
}

// Family implements Backend.
func (s *System) Family() int { return s.family }

// ReadChains implements Backend.
func (s *System) ReadChains(chains []Chain) ([]ChainState, error) {
	if !s.each {
		dump, err := s.run(s.path, "-w", strconv.Itoa(s.wait), "-t", "mangle", "-S")
		if err == nil {
			return parseTable(dump, chains), nil
		}
		// Reading chain by chain would only wait for the lock again.
		if strings.Contains(err.Error(), "xtables lock") {
			return nil, err
		}
		// iptables-nft refuses to print a table that holds rules only nft
		// can show ("table `mangle' is incompatible, use 'nft' tool"),
		// yet still prints gre-hook's chains one at a time.
		s.each = true
	}
	return s.readEach(chains)
}

// readEach reads chains one by one through go-iptables: two or three
// processes a chain, and one to make the reader.
func (s *System) readEach(chains []Chain) ([]ChainState, error) {
	if s.eachR == nil && s.eachErr == nil {
		s.eachR, s.eachErr = s.newEach()
	}
	if s.eachErr != nil {
		return nil, s.eachErr
	}
	r := s.eachR
	out := make([]ChainState, 0, len(chains))
	for _, c := range chains {
		where := ""
		if len(chains) > 1 {
			where = c.Name + ": "
		}
		cs := ChainState{Chain: c}
		// iptables-nft 1.8.9 answers -S for a missing chain with "chain ...
		// is incompatible, use 'nft' tool", which go-iptables does not
		// take for "not found"; ask whether the chain exists first.
		exists, err := r.ChainExists("mangle", c.Name)
		if err != nil {
			return nil, fmt.Errorf("%s%w", where, err)
		}
		if exists {
			if cs.Lines, err = r.List("mangle", c.Name); err != nil {
				return nil, fmt.Errorf("%s%w", where, err)
			}
			cs.Exists = true
			if cs.Jump, err = r.Exists("mangle", c.From, c.JumpSpec()...); err != nil {
				return nil, fmt.Errorf("checking the jump from %s: %w", c.From, err)
			}
		}
		out = append(out, cs)
	}
	return out, nil
}

// parseTable picks chains out of `iptables -S` of a whole table: each
// one's -N line and rules, as `iptables -S CHAIN` prints them, and whether
// its built-in chain holds its jump exactly (by arguments, as -C would
// match it: a jump with other matches too is someone else's).
func parseTable(dump string, chains []Chain) []ChainState {
	out := make([]ChainState, len(chains))
	decl := make([]string, len(chains))
	for i, c := range chains {
		out[i].Chain = c
	}
	for _, line := range strings.Split(dump, "\n") {
		args := Split(line)
		if len(args) < 2 {
			continue
		}
		for i, c := range chains {
			switch {
			case args[0] == "-N" && len(args) == 2 && args[1] == c.Name:
				decl[i] = line
			case args[0] == "-A" && args[1] == c.Name:
				out[i].Lines = append(out[i].Lines, line)
			case args[0] == "-A" && args[1] == c.From && Join(args[2:]) == Join(c.JumpSpec()):
				out[i].Jump = true
			}
		}
	}
	for i := range out {
		if decl[i] == "" {
			// iptables refuses rules in, and jumps to, a chain that does
			// not exist.
			out[i].Lines, out[i].Jump = nil, false
			continue
		}
		out[i].Exists = true
		out[i].Lines = append([]string{decl[i]}, out[i].Lines...)
	}
	return out
}

// output runs a command and returns its standard output; its error
// carries the standard error.
func output(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return "", fmt.Errorf("%w: %s", err, msg)
		}
		return "", err
	}
	return stdout.String(), nil
}

// Restore implements Backend.
func (s *System) Restore(input string) error {
	cmd := exec.Command(s.restore, "--noflush", "--wait", strconv.Itoa(s.wait))
	cmd.Stdin = strings.NewReader(input)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			return err
		}
		return fmt.Errorf("%w: %s", err, msg)
	}
	return nil
}
