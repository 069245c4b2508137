package engine

import (
	"strings"

	"github.com/gre-hook/gre-hook/hook/mss"
	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/state"
)

// AllChains is every chain of gre-hook's by family: the reflection guards
// are IPv4 only, like accept_local and the keepalives.
var AllChains = map[int][]mss.Chain{4: {mss.Out, mss.In}, 6: {mss.Out}}

// RuleChains is, by family, the chains of gre-hook's that a run on an
// underlay reads and writes: those of the plan and those of the record
// (mss.Out where they have MSS rules, mss.In where they have a tunnel that
// reflects keepalives). An underlay with neither costs no iptables
// process.
func RuleChains(want []plan.Tunnel, rec *state.Record) map[int][]mss.Chain {
	out := RecordChains(rec)
	for _, t := range want {
		for _, m := range t.MSS {
			out[m.Family] = addChain(out[m.Family], mss.Out)
		}
		if t.Reflect {
			out[4] = addChain(out[4], mss.In)
		}
	}
	return out
}

// RecordChains is, by family, the chains in which rec says there are
// rules.
func RecordChains(rec *state.Record) map[int][]mss.Chain {
	out := map[int][]mss.Chain{}
	for f := range rec.Families() {
		out[f] = addChain(out[f], mss.Out)
	}
	if rec.Guarded() {
		out[4] = addChain(out[4], mss.In)
	}
	return out
}

func addChain(cs []mss.Chain, c mss.Chain) []mss.Chain {
	for _, x := range cs {
		if x == c {
			return cs
		}
	}
	return append(cs, c)
}

// chainsOf is the chains s holds.
func chainsOf(s mss.State) []mss.Chain {
	out := make([]mss.Chain, len(s.Chains))
	for i, cs := range s.Chains {
		out[i] = cs.Chain
	}
	return out
}

// DryTables reads through to the real backend but writes nothing. A dry
// run that cannot read the rules (no root, or an iptables that cannot see
// the mangle table) plans as if there were none, and says so.
type DryTables struct {
	mss.Backend
	Log *Logger
}

func (d DryTables) ReadChains(chains []mss.Chain) ([]mss.ChainState, error) {
	cs, err := d.Backend.ReadChains(chains)
	if err != nil {
		d.Log.Warn("cannot read the current rules (%s); planning as if there were none", strings.TrimSpace(err.Error()))
		cs = make([]mss.ChainState, len(chains))
		for i, c := range chains {
			cs[i].Chain = c
		}
	}
	return cs, nil
}

func (DryTables) Restore(string) error { return nil }

// readChains reads gre-hook's chains that chains names, in each family
// of tables. A dry run that cannot read them plans as if they were empty.
func readChains(tables map[int]mss.Backend, chains map[int][]mss.Chain, dry bool, l *Logger) (map[int]mss.State, error) {
	out := map[int]mss.State{}
	for _, f := range []int{4, 6} {
		b, ok := tables[f]
		if !ok {
			continue
		}
		if dry {
			b = DryTables{b, l}
		}
		s, err := mss.Read(b, chains[f]...)
		if err != nil {
			return nil, err
		}
		out[f] = s
	}
	return out, nil
}
