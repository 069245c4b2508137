package engine

import (
	"reflect"
	"testing"

	"github.com/gre-hook/gre-hook/hook/mss"
)

// countingTables answers from fixed rules and counts the reads, each one
// iptables process.
type countingTables struct {
	lines []string
	reads int
}

func (c *countingTables) Family() int { return 4 }
func (c *countingTables) ReadChains(chains []mss.Chain) ([]mss.ChainState, error) {
	c.reads++
	out := make([]mss.ChainState, len(chains))
	for i, ch := range chains {
		out[i] = mss.ChainState{Chain: ch, Lines: c.lines, Exists: c.lines != nil, Jump: c.lines != nil}
	}
	return out, nil
}
func (c *countingTables) Restore(string) error { return nil }

func TestReadAheadAnswersTheFirstReadOnly(t *testing.T) {
	c := &countingTables{lines: []string{"-N GRE-HOOK", "-A GRE-HOOK -o t1 -j TCPMSS --clamp-mss-to-pmtu"}}
	r := NewReadAhead(c, []mss.Chain{mss.Out})
	<-r.done
	if c.reads != 1 {
		t.Fatalf("read ahead: %d reads, want 1", c.reads)
	}
	c.lines = append(c.lines, "-A GRE-HOOK -o t2 -j TCPMSS --clamp-mss-to-pmtu")
	first, err := mss.Read(r, mss.Out)
	if err != nil || len(first.Chains) != 1 || !first.Chains[0].Exists || !first.Chains[0].Jump || len(first.Chains[0].Lines) != 2 {
		t.Fatalf("first Read: %+v %v, want the 2 lines read ahead", first, err)
	}
	if c.reads != 1 {
		t.Errorf("first Read ran iptables again (%d reads)", c.reads)
	}
	second, _ := mss.Read(r, mss.Out)
	if !reflect.DeepEqual(second.Chains[0].Lines, c.lines) || c.reads != 2 {
		t.Errorf("second read: %q after %d reads; want a fresh read of %q", second.Chains[0].Lines, c.reads, c.lines)
	}
}

func TestReadAheadOfAMissingChain(t *testing.T) {
	c := &countingTables{}
	r := NewReadAhead(c, []mss.Chain{mss.Out})
	if s, _ := mss.Read(r, mss.Out); s.Chains[0].Exists || s.Chains[0].Jump {
		t.Fatal("Read says the missing chain exists")
	}
	c.lines = []string{"-N GRE-HOOK"}
	if s, _ := mss.Read(r, mss.Out); !s.Chains[0].Exists {
		t.Error("second Read did not read afresh")
	}
	if c.reads != 2 {
		t.Errorf("%d reads, want 2", c.reads)
	}
}

func TestReadAheadOfBothChains(t *testing.T) {
	c := &countingTables{lines: []string{"-N X"}}
	r := NewReadAhead(c, []mss.Chain{mss.Out, mss.In})
	<-r.done
	if c.reads != 1 {
		t.Fatalf("read ahead of two chains: %d reads, want 1", c.reads)
	}
	s, err := mss.Read(r, mss.Out, mss.In)
	if err != nil || len(s.Chains) != 2 || !s.Chains[1].Exists || !s.Chains[1].Jump {
		t.Fatalf("Read: %+v %v", s, err)
	}
	if c.reads != 1 {
		t.Errorf("reading both chains ran iptables again (%d reads)", c.reads)
	}

	// A backend made for one chain reads both afresh, in one read.
	c = &countingTables{lines: []string{"-N X"}}
	r = NewReadAhead(c, []mss.Chain{mss.Out})
	if s, err := mss.Read(r, mss.Out, mss.In); err != nil || len(s.Chains) != 2 {
		t.Fatalf("Read: %+v %v", s, err)
	}
	if c.reads != 2 {
		t.Errorf("%d reads, want 2", c.reads)
	}
}
