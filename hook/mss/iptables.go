package mss

import (
	"bytes"
	"fmt"
	"os/exec"
	"strconv"
	"strings"

	"github.com/coreos/go-iptables/iptables"
)

// System is the Backend over the real iptables or ip6tables. Reads and
// chain removal go through go-iptables; the batched write goes through the
// matching iptables-restore, which go-iptables does not wrap.
type System struct {
	family  int
	ipt     *iptables.IPTables
	restore string
	wait    int
}

// Open finds the iptables binaries for family (4 or 6). wait bounds how
// long each call waits for the xtables lock, in seconds.
func Open(family, wait int) (*System, error) {
	proto, name := iptables.ProtocolIPv4, "iptables"
	if family == 6 {
		proto, name = iptables.ProtocolIPv6, "ip6tables"
	}
	if _, err := exec.LookPath(name); err != nil {
		return nil, fmt.Errorf("%s is not installed (install the iptables package): %w", name, err)
	}
	restore, err := exec.LookPath(name + "-restore")
	if err != nil {
		return nil, fmt.Errorf("%s-restore is not installed (install the iptables package): %w", name, err)
	}
	// NewWithProtocol would wait for the xtables lock forever.
	ipt, err := iptables.New(iptables.IPFamily(proto), iptables.Timeout(wait))
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	return &System{family: family, ipt: ipt, restore: restore, wait: wait}, nil
}

// Family implements Backend.
func (s *System) Family() int { return s.family }

// List implements Backend.
func (s *System) List(table, chain string) ([]string, bool, error) {
	// iptables-nft 1.8.9 answers -S for a missing chain with "chain ... is
	// incompatible, use 'nft' tool", which go-iptables does not take for
	// "not found"; ask whether the chain exists first.
	exists, err := s.ipt.ChainExists(table, chain)
	if err != nil || !exists {
		return nil, false, err
	}
	lines, err := s.ipt.List(table, chain)
	if err != nil {
		return nil, false, err
	}
	return lines, true, nil
}

// JumpExists implements Backend.
func (s *System) JumpExists() (bool, error) {
	return s.ipt.Exists("mangle", "POSTROUTING", JumpSpec...)
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
