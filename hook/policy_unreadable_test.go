package hook

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A down on eth1 while eth2's record is unreadable must not take
// away the rules eth2's default_route tunnel still needs.
func TestDownKeepsRulesOfUnreadableRecord(t *testing.T) {
	e := twoUpEth2Corrupt(t)
	out := e.mustOn("eth1", PhaseDown)
	if e.rules() != ourRules {
		t.Errorf("rules after down eth1 with eth2's record unreadable:\n%q\nwant\n%q\nlog:\n%s", e.rules(), ourRules, out)
	}
	if !strings.Contains(e.dump(), bDefault) {
		t.Errorf("gre-b's default gone:\n%s", e.dump())
	}
	if via := e.via("8.8.8.8", 0); via != "gre-b" {
		t.Errorf("8.8.8.8 goes via %q, want gre-b", via)
	}
}

// The same through up, when eth1's tunnel stops being default_route.
func TestUpKeepsRulesOfUnreadableRecord(t *testing.T) {
	e := twoUpEth2Corrupt(t)
	e.write(strings.Replace(twoDefaults, "default_route = true\nmss = \"off\"\n\n[[tunnel]]", "mss = \"off\"\n\n[[tunnel]]", 1))
	out := e.mustOn("eth1", PhaseUp)
	if e.rules() != ourRules {
		t.Errorf("rules after up eth1 with eth2's record unreadable:\n%q\nlog:\n%s", e.rules(), out)
	}
}

// twoUpEth2Corrupt brings both underlays' default_route tunnels up, then
// makes eth2's record unreadable.
func twoUpEth2Corrupt(t *testing.T) *env {
	e := newTwoUnderlays(t)
	e.mustOn("eth1", PhaseUp)
	e.mustOn("eth2", PhaseUp)
	path := filepath.Join(e.sys.Store.Dir, "eth2.json")
	if err := os.WriteFile(path, []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}
