package hook

import (
	"reflect"
	"testing"

	"github.com/gre-hook/gre-hook/hook/mss"
)

// countingTables answers from fixed rules and counts the reads.
type countingTables struct {
	lines       []string
	lists, jump int
}

func (c *countingTables) Family() int { return 4 }
func (c *countingTables) List(table, chain string) ([]string, bool, error) {
	c.lists++
	return c.lines, c.lines != nil, nil
}
func (c *countingTables) JumpExists(mss.Chain) (bool, error) { c.jump++; return true, nil }
func (c *countingTables) Restore(string) error               { return nil }

func TestReadAheadAnswersTheFirstReadOnly(t *testing.T) {
	c := &countingTables{lines: []string{"-N GRE-HOOK", "-A GRE-HOOK -o t1 -j TCPMSS --clamp-mss-to-pmtu"}}
	r := newReadAhead(c, []mss.Chain{mss.Out})
	<-r.done
	if c.lists != 1 || c.jump != 1 {
		t.Fatalf("read ahead: %d lists and %d jump checks, want 1 and 1", c.lists, c.jump)
	}
	c.lines = append(c.lines, "-A GRE-HOOK -o t2 -j TCPMSS --clamp-mss-to-pmtu")
	first, ok, err := r.List("mangle", mss.Out.Name)
	if err != nil || !ok || len(first) != 2 {
		t.Fatalf("first List: %q %v %v, want the 2 lines read ahead", first, ok, err)
	}
	if _, err := r.JumpExists(mss.Out); err != nil {
		t.Fatal(err)
	}
	if c.lists != 1 || c.jump != 1 {
		t.Errorf("first List and JumpExists ran iptables again (%d lists, %d jump checks)", c.lists, c.jump)
	}
	second, _, _ := r.List("mangle", mss.Out.Name)
	r.JumpExists(mss.Out)
	if !reflect.DeepEqual(second, c.lines) || c.lists != 2 || c.jump != 2 {
		t.Errorf("second read: %q after %d lists and %d jump checks; want a fresh read of %q", second, c.lists, c.jump, c.lines)
	}
}

func TestReadAheadOfAMissingChain(t *testing.T) {
	c := &countingTables{}
	r := newReadAhead(c, []mss.Chain{mss.Out})
	if _, ok, _ := r.List("mangle", mss.Out.Name); ok {
		t.Fatal("List says the missing chain exists")
	}
	if c.jump != 0 {
		t.Errorf("the jump was checked for a missing chain")
	}
	c.lines = []string{"-N GRE-HOOK"}
	if _, ok, _ := r.List("mangle", mss.Out.Name); !ok {
		t.Error("second List did not read afresh")
	}
	r.JumpExists(mss.Out)
	if c.jump != 1 {
		t.Errorf("JumpExists after the chain appeared: %d checks, want 1", c.jump)
	}
}

func TestReadAheadOfBothChains(t *testing.T) {
	c := &countingTables{lines: []string{"-N X"}}
	r := newReadAhead(c, []mss.Chain{mss.Out, mss.In})
	<-r.done
	if c.lists != 2 || c.jump != 2 {
		t.Fatalf("read ahead of two chains: %d lists and %d jump checks, want 2 and 2", c.lists, c.jump)
	}
	s, err := mss.Read(r, mss.Out, mss.In)
	if err != nil || len(s.Chains) != 2 || !s.Chains[1].Exists || !s.Chains[1].Jump {
		t.Fatalf("Read: %+v %v", s, err)
	}
	if c.lists != 2 || c.jump != 2 {
		t.Errorf("reading both chains ran iptables again (%d lists, %d jump checks)", c.lists, c.jump)
	}

	// A backend made for one chain reads the other afresh.
	c = &countingTables{lines: []string{"-N X"}}
	r = newReadAhead(c, []mss.Chain{mss.Out})
	if _, err := mss.Read(r, mss.Out, mss.In); err != nil {
		t.Fatal(err)
	}
	if c.lists != 2 || c.jump != 2 {
		t.Errorf("%d lists and %d jump checks, want 2 and 2", c.lists, c.jump)
	}
}
