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
func (c *countingTables) JumpExists() (bool, error) { c.jump++; return true, nil }
func (c *countingTables) Restore(string) error      { return nil }

func TestReadAheadAnswersTheFirstReadOnly(t *testing.T) {
	c := &countingTables{lines: []string{"-N GRE-HOOK", "-A GRE-HOOK -o t1 -j TCPMSS --clamp-mss-to-pmtu"}}
	r := newReadAhead(c)
	<-r.done
	if c.lists != 1 || c.jump != 1 {
		t.Fatalf("read ahead: %d lists and %d jump checks, want 1 and 1", c.lists, c.jump)
	}
	c.lines = append(c.lines, "-A GRE-HOOK -o t2 -j TCPMSS --clamp-mss-to-pmtu")
	first, ok, err := r.List("mangle", mss.Chain)
	if err != nil || !ok || len(first) != 2 {
		t.Fatalf("first List: %q %v %v, want the 2 lines read ahead", first, ok, err)
	}
	if _, err := r.JumpExists(); err != nil {
		t.Fatal(err)
	}
	if c.lists != 1 || c.jump != 1 {
		t.Errorf("first List and JumpExists ran iptables again (%d lists, %d jump checks)", c.lists, c.jump)
	}
	second, _, _ := r.List("mangle", mss.Chain)
	r.JumpExists()
	if !reflect.DeepEqual(second, c.lines) || c.lists != 2 || c.jump != 2 {
		t.Errorf("second read: %q after %d lists and %d jump checks; want a fresh read of %q", second, c.lists, c.jump, c.lines)
	}
}

func TestReadAheadOfAMissingChain(t *testing.T) {
	c := &countingTables{}
	r := newReadAhead(c)
	if _, ok, _ := r.List("mangle", mss.Chain); ok {
		t.Fatal("List says the missing chain exists")
	}
	if c.jump != 0 {
		t.Errorf("the jump was checked for a missing chain")
	}
	c.lines = []string{"-N GRE-HOOK"}
	if _, ok, _ := r.List("mangle", mss.Chain); !ok {
		t.Error("second List did not read afresh")
	}
	r.JumpExists()
	if c.jump != 1 {
		t.Errorf("JumpExists after the chain appeared: %d checks, want 1", c.jump)
	}
}
