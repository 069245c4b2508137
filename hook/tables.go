package hook

import (
	"strings"

	"github.com/gre-hook/gre-hook/hook/mss"
)

// dryTables reads through to the real backend but writes nothing. A dry
// run that cannot read the rules (no root, or an iptables that cannot see
// the mangle table) plans as if there were none, and says so.
type dryTables struct {
	mss.Backend
	l *logger
}

func (d dryTables) List(table, chain string) ([]string, bool, error) {
	lines, exists, err := d.Backend.List(table, chain)
	if err != nil {
		d.l.warn("cannot read the current rules (%s); planning as if there were none", strings.TrimSpace(err.Error()))
		return nil, false, nil
	}
	return lines, exists, nil
}

func (d dryTables) JumpExists() (bool, error) {
	ok, err := d.Backend.JumpExists()
	if err != nil {
		return false, nil
	}
	return ok, nil
}

func (dryTables) Restore(string) error { return nil }
