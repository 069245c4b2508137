package mss

import (
	"bytes"
	"fmt"
	"os/exec"
	"strconv"
	"strings"

	"github.com/coreos/go-iptables/iptables"
)

// System is the Backend over the real iptables or ip6tables. Reads go
// through go-iptables; the batched write goes through the matching
// iptables-restore, which go-iptables does not wrap.
type System struct {
	family  int
	name    string
	restore string
	wait    int
	// ipt is made on first use: go-iptables runs `iptables --version` to
	// make it, and a run may well read the rules in the background.
	ipt    *iptables.IPTables
	iptErr error
}

// Open finds the iptables binaries for family (4 or 6), so that a missing
// one is an error before anything changes. wait bounds how long each call
// waits for the xtables lock, in seconds.
func Open(family, wait int) (*System, error) {
	name := "iptables"
	if family == 6 {
		name = "ip6tables"
	}
	if _, err := exec.LookPath(name); err != nil {
		return nil, fmt.Errorf("%s is not installed (install the iptables package): %w", name, err)
	}
	restore, err := exec.LookPath(name + "-restore")
	if err != nil {
		return nil, fmt.Errorf("%s-restore is not installed (install the iptables package): %w", name, err)
	}
	return &System{family: family, name: name, restore: restore, wait: wait}, nil
}

func (s *System) iptables() (*iptables.IPTables, error) {
	if s.ipt == nil && s.iptErr == nil {
		proto := iptables.ProtocolIPv4
		if s.family == 6 {
			proto = iptables.ProtocolIPv6
		}
		// NewWithProtocol would wait for the xtables lock forever.
		s.ipt, s.iptErr = iptables.New(iptables.IPFamily(proto), iptables.Timeout(s.wait))
		if s.iptErr != nil {
			s.iptErr = fmt.Errorf("starting %s: %w", s.name, s.iptErr)
		}
	}
	return s.ipt, s.iptErr
}

// Family implements Backend.
func (s *System) Family() int { return s.family }

// List implements Backend.
func (s *System) List(table, chain string) ([]string, bool, error) {
	// iptables-nft 1.8.9 answers -S for a missing chain with "chain ... is
	// incompatible, use 'nft' tool", which go-iptables does not take for
	// "not found"; ask whether the chain exists first.
	ipt, err := s.iptables()
	if err != nil {
		return nil, false, err
	}
	exists, err := ipt.ChainExists(table, chain)
	if err != nil || !exists {
		return nil, false, err
	}
	lines, err := ipt.List(table, chain)
	if err != nil {
		return nil, false, err
	}
	return lines, true, nil
}

// JumpExists implements Backend.
func (s *System) JumpExists(c Chain) (bool, error) {
	ipt, err := s.iptables()
	if err != nil {
		return false, err
	}
	return ipt.Exists("mangle", c.From, c.JumpSpec()...)
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
