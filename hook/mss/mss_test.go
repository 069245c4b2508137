package mss_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/gre-hook/gre-hook/hook/fake"
	"github.com/gre-hook/gre-hook/hook/mss"
)

func TestSplitJoin(t *testing.T) {
	for _, tc := range []struct {
		args []string
		line string
	}{
		{[]string{"-o", "gre1", "-j", "TCPMSS"}, "-o gre1 -j TCPMSS"},
		{[]string{"--comment", "with space"}, `--comment "with space"`},
		{[]string{"--comment", `say "hi"`}, `--comment "say \"hi\""`},
		{[]string{"--comment", `back\slash`}, `--comment "back\\slash"`},
		{[]string{"--comment", "it's"}, `--comment "it's"`},
		{[]string{"--comment", ""}, `--comment ""`},
		{[]string{"a\tb"}, "\"a\tb\""},
	} {
		if got := mss.Join(tc.args); got != tc.line {
			t.Errorf("Join(%q) = %s, want %s", tc.args, got, tc.line)
		}
		if got := mss.Split(tc.line); !reflect.DeepEqual(got, tc.args) {
			t.Errorf("Split(%s) = %q, want %q", tc.line, got, tc.args)
		}
	}
	if got := mss.Split("  -A   X  y "); !reflect.DeepEqual(got, []string{"-A", "X", "y"}) {
		t.Errorf("Split with extra spaces = %q", got)
	}
}

func rule(out, comment string) []string {
	return []string{"-o", out, "-p", "tcp", "-m", "tcp", "--tcp-flags", "SYN,RST", "SYN", "-m", "comment", "--comment", comment, "-j", "TCPMSS", "--clamp-mss-to-pmtu"}
}

func underlay(u string) func(string) bool {
	return func(c string) bool { return strings.HasPrefix(c, "gre-hook:"+u+":") }
}

func sync(t *testing.T, b *fake.Tables, u string, want ...[]string) string {
	t.Helper()
	return syncRules(t, b, u, mss.Rules{mss.Out: want})
}

// syncRules syncs the chains want has keys for and returns the log.
func syncRules(t *testing.T, b *fake.Tables, u string, want mss.Rules) string {
	t.Helper()
	var chains []mss.Chain
	for _, c := range mss.Chains {
		if _, ok := want[c]; ok {
			chains = append(chains, c)
		}
	}
	var log []string
	calls := 0
	if _, err := mss.Sync(b, chains, underlay(u), want, func(c ...string) { calls++; log = append(log, c...) }); err != nil {
		t.Fatal(err)
	}
	if calls > 1 {
		t.Errorf("Sync logged in %d calls; want the commands of its one write together", calls)
	}
	return strings.Join(log, "\n")
}

func TestSync(t *testing.T) {
	b := fake.NewTables(4)
	r1 := rule("gre1", "gre-hook:eth1:gre1")

	log := sync(t, b, "eth1", r1)
	wantLog := `iptables -t mangle -N GRE-HOOK
iptables -t mangle -A POSTROUTING -m comment --comment gre-hook -j GRE-HOOK
iptables -t mangle -A GRE-HOOK -o gre1 -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment gre-hook:eth1:gre1 -j TCPMSS --clamp-mss-to-pmtu`
	if log != wantLog {
		t.Errorf("first sync logged:\n%s\nwant:\n%s", log, wantLog)
	}
	wantIn := `*mangle
:GRE-HOOK - [0:0]
-F GRE-HOOK
-A GRE-HOOK -o gre1 -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment gre-hook:eth1:gre1 -j TCPMSS --clamp-mss-to-pmtu
-A POSTROUTING -m comment --comment gre-hook -j GRE-HOOK
COMMIT
`
	if len(b.Restores) != 1 || b.Restores[0] != wantIn {
		t.Errorf("restore input:\n%q\nwant:\n%q", b.Restores, wantIn)
	}
	state1 := `iptables -A POSTROUTING -m comment --comment gre-hook -j GRE-HOOK
iptables -N GRE-HOOK
iptables -A GRE-HOOK -o gre1 -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment gre-hook:eth1:gre1 -j TCPMSS --clamp-mss-to-pmtu
`
	if got := b.Dump(); got != state1 {
		t.Errorf("state:\n%s\nwant:\n%s", got, state1)
	}

	// Again: nothing written, nothing logged.
	if log := sync(t, b, "eth1", r1); log != "" || len(b.Restores) != 1 {
		t.Errorf("second sync logged %q and restored %d times", log, len(b.Restores))
	}

	// Another underlay's rules are kept.
	r2 := rule("gre2", "gre-hook:eth2:gre2 x")
	sync(t, b, "eth2", r2)
	if log := sync(t, b, "eth1"); log != "iptables -t mangle -D GRE-HOOK "+mss.Join(r1) {
		t.Errorf("removing eth1's rule logged:\n%s", log)
	}
	want := `iptables -A POSTROUTING -m comment --comment gre-hook -j GRE-HOOK
iptables -N GRE-HOOK
iptables -A GRE-HOOK -o gre2 -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment "gre-hook:eth2:gre2 x" -j TCPMSS --clamp-mss-to-pmtu
`
	if got := b.Dump(); got != want {
		t.Errorf("state:\n%s\nwant:\n%s", got, want)
	}
	if b.Removes != 0 {
		t.Error("chain removed while another underlay has rules")
	}

	// The last rule goes: the chain and the jump go.
	log = sync(t, b, "eth2")
	wantLog = `iptables -t mangle -D GRE-HOOK -o gre2 -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment "gre-hook:eth2:gre2 x" -j TCPMSS --clamp-mss-to-pmtu
iptables -t mangle -D POSTROUTING -m comment --comment gre-hook -j GRE-HOOK
iptables -t mangle -X GRE-HOOK`
	if log != wantLog {
		t.Errorf("last removal logged:\n%s\nwant:\n%s", log, wantLog)
	}
	if b.Removes != 1 || b.Dump() != "" {
		t.Errorf("after the last rule: %d removes, state:\n%s", b.Removes, b.Dump())
	}
	// And nothing more to do.
	if log := sync(t, b, "eth2"); log != "" || b.Removes != 1 {
		t.Errorf("sync of nothing logged %q", log)
	}
}

func TestSyncRepairsJump(t *testing.T) {
	b := fake.NewTables(6)
	r := rule("gre1", "gre-hook:eth1:gre1")
	b.SetChain(mss.Join(r))
	b.AddForeign("-o eth0 -j ACCEPT")
	log := sync(t, b, "eth1", r)
	if log != "ip6tables -t mangle -A POSTROUTING -m comment --comment gre-hook -j GRE-HOOK" {
		t.Errorf("logged:\n%s", log)
	}
	want := `ip6tables -A POSTROUTING -o eth0 -j ACCEPT
ip6tables -A POSTROUTING -m comment --comment gre-hook -j GRE-HOOK
ip6tables -N GRE-HOOK
ip6tables -A GRE-HOOK ` + mss.Join(r) + "\n"
	if b.Dump() != want {
		t.Errorf("state:\n%s\nwant:\n%s", b.Dump(), want)
	}
}

func TestSyncFailedWriteChangesNothing(t *testing.T) {
	b := fake.NewTables(4)
	r := rule("gre1", "gre-hook:eth1:gre1")
	b.FailNth("Restore", 1)
	_, err := mss.Sync(b, []mss.Chain{mss.Out}, underlay("eth1"), mss.Rules{mss.Out: {r}}, func(...string) {})
	if err == nil || !strings.Contains(err.Error(), "writing iptables mangle chain GRE-HOOK") {
		t.Errorf("got %v", err)
	}
	if b.Dump() != "" {
		t.Errorf("state after a failed write:\n%s", b.Dump())
	}
}

func guard(in, comment string) []string {
	return []string{"-i", in, "!", "-p", "gre", "-m", "addrtype", "--src-type", "LOCAL", "-m", "comment", "--comment", comment, "-j", "DROP"}
}

// TestSyncBothChains: the MSS rules and the reflection guards go in one
// write, one chain each, each with its own jump; a chain whose rules do
// not change is not written; the last guard takes its chain and jump
// along and leaves the other chain alone.
func TestSyncBothChains(t *testing.T) {
	b := fake.NewTables(4)
	r1, g1 := rule("gre1", "gre-hook:eth1:gre1"), guard("gre1", "gre-hook:eth1:gre1")

	log := syncRules(t, b, "eth1", mss.Rules{mss.Out: {r1}, mss.In: {g1}})
	wantLog := `iptables -t mangle -N GRE-HOOK
iptables -t mangle -A POSTROUTING -m comment --comment gre-hook -j GRE-HOOK
iptables -t mangle -A GRE-HOOK -o gre1 -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment gre-hook:eth1:gre1 -j TCPMSS --clamp-mss-to-pmtu
iptables -t mangle -N GRE-HOOK-IN
iptables -t mangle -A PREROUTING -m comment --comment gre-hook -j GRE-HOOK-IN
iptables -t mangle -A GRE-HOOK-IN -i gre1 ! -p gre -m addrtype --src-type LOCAL -m comment --comment gre-hook:eth1:gre1 -j DROP`
	diffText(t, "first sync's log", log, wantLog)
	wantIn := `*mangle
:GRE-HOOK - [0:0]
:GRE-HOOK-IN - [0:0]
-F GRE-HOOK
-A GRE-HOOK -o gre1 -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment gre-hook:eth1:gre1 -j TCPMSS --clamp-mss-to-pmtu
-A POSTROUTING -m comment --comment gre-hook -j GRE-HOOK
-F GRE-HOOK-IN
-A GRE-HOOK-IN -i gre1 ! -p gre -m addrtype --src-type LOCAL -m comment --comment gre-hook:eth1:gre1 -j DROP
-A PREROUTING -m comment --comment gre-hook -j GRE-HOOK-IN
COMMIT
`
	if len(b.Restores) != 1 {
		t.Fatalf("%d writes, want 1: %q", len(b.Restores), b.Restores)
	}
	diffText(t, "the one write", b.Restores[0], wantIn)
	state := `iptables -A PREROUTING -m comment --comment gre-hook -j GRE-HOOK-IN
iptables -A POSTROUTING -m comment --comment gre-hook -j GRE-HOOK
iptables -N GRE-HOOK
iptables -A GRE-HOOK -o gre1 -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment gre-hook:eth1:gre1 -j TCPMSS --clamp-mss-to-pmtu
iptables -N GRE-HOOK-IN
iptables -A GRE-HOOK-IN -i gre1 ! -p gre -m addrtype --src-type LOCAL -m comment --comment gre-hook:eth1:gre1 -j DROP
`
	diffText(t, "state", b.Dump(), state)

	// Again: nothing.
	if log := syncRules(t, b, "eth1", mss.Rules{mss.Out: {r1}, mss.In: {g1}}); log != "" || len(b.Restores) != 1 {
		t.Errorf("second sync logged %q and wrote %d times", log, len(b.Restores))
	}

	// Another underlay's guard joins; only GRE-HOOK-IN is written.
	g2 := guard("gre.2", "gre-hook:eth2:gre.2")
	syncRules(t, b, "eth2", mss.Rules{mss.Out: nil, mss.In: {g2}})
	diffText(t, "the write of a guard alone", b.Restores[1], `*mangle
:GRE-HOOK-IN - [0:0]
-F GRE-HOOK-IN
-A GRE-HOOK-IN -i gre1 ! -p gre -m addrtype --src-type LOCAL -m comment --comment gre-hook:eth1:gre1 -j DROP
-A GRE-HOOK-IN -i gre.2 ! -p gre -m addrtype --src-type LOCAL -m comment --comment gre-hook:eth2:gre.2 -j DROP
COMMIT
`)

	// eth1 stops reflecting: its guard goes, eth2's stays, GRE-HOOK is
	// not written.
	log = syncRules(t, b, "eth1", mss.Rules{mss.Out: {r1}, mss.In: nil})
	diffText(t, "log of eth1's guard going", log, "iptables -t mangle -D GRE-HOOK-IN "+mss.Join(g1))
	if strings.Contains(b.Restores[2], "GRE-HOOK ") || strings.Contains(b.Restores[2], "GRE-HOOK\n") {
		t.Errorf("a write of GRE-HOOK-IN alone touched GRE-HOOK:\n%s", b.Restores[2])
	}

	// The last guard goes: GRE-HOOK-IN and its jump go, in the same
	// write as a change of GRE-HOOK.
	r2 := rule("gre.2", "gre-hook:eth2:gre.2")
	log = syncRules(t, b, "eth2", mss.Rules{mss.Out: {r2}, mss.In: nil})
	diffText(t, "log of the last guard going", log, `iptables -t mangle -A GRE-HOOK -o gre.2 -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment gre-hook:eth2:gre.2 -j TCPMSS --clamp-mss-to-pmtu
iptables -t mangle -D GRE-HOOK-IN -i gre.2 ! -p gre -m addrtype --src-type LOCAL -m comment --comment gre-hook:eth2:gre.2 -j DROP
iptables -t mangle -D PREROUTING -m comment --comment gre-hook -j GRE-HOOK-IN
iptables -t mangle -X GRE-HOOK-IN`)
	diffText(t, "the write that removes GRE-HOOK-IN", b.Restores[3], `*mangle
:GRE-HOOK - [0:0]
-F GRE-HOOK
-A GRE-HOOK -o gre1 -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment gre-hook:eth1:gre1 -j TCPMSS --clamp-mss-to-pmtu
-A GRE-HOOK -o gre.2 -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment gre-hook:eth2:gre.2 -j TCPMSS --clamp-mss-to-pmtu
-D PREROUTING -m comment --comment gre-hook -j GRE-HOOK-IN
-F GRE-HOOK-IN
-X GRE-HOOK-IN
COMMIT
`)
	if len(b.Restores) != 4 || b.Removes != 1 {
		t.Errorf("%d writes and %d removals, want 4 and 1", len(b.Restores), b.Removes)
	}

	// Everything goes: both chains and jumps in one write.
	syncRules(t, b, "eth1", mss.Rules{mss.Out: nil, mss.In: nil})
	syncRules(t, b, "eth2", mss.Rules{mss.Out: nil, mss.In: nil})
	if b.Dump() != "" {
		t.Errorf("left:\n%s", b.Dump())
	}
}

// TestSyncLeavesUnreadChains: a chain not asked for is neither read nor
// written, whatever it holds.
func TestSyncLeavesUnreadChains(t *testing.T) {
	b := fake.NewTables(4)
	g := guard("gre1", "gre-hook:eth1:gre1")
	b.SetChainOf(mss.In, mss.Join(g))
	if log := sync(t, b, "eth1"); log != "" {
		t.Errorf("logged %q", log)
	}
	if _, err := mss.Sync(b, []mss.Chain{mss.Out}, underlay("eth1"), mss.Rules{mss.In: nil}, func(...string) {}); err != nil {
		t.Fatal(err)
	}
	if want := []string{mss.Out.Name, mss.Out.Name}; !reflect.DeepEqual(b.Listed, want) {
		t.Errorf("read %q, want %q: Sync read a chain it was not asked for", b.Listed, want)
	}
	if !strings.Contains(b.Dump(), "-A GRE-HOOK-IN "+mss.Join(g)) {
		t.Errorf("the guard went though GRE-HOOK-IN was not asked for:\n%s", b.Dump())
	}
}

// TestSyncBothChainsFailedWrite: a failed write changes neither chain,
// and says which chains it was writing.
func TestSyncBothChainsFailedWrite(t *testing.T) {
	b := fake.NewTables(4)
	b.FailNth("Restore", 1)
	_, err := mss.Sync(b, mss.Chains, underlay("eth1"),
		mss.Rules{mss.Out: {rule("gre1", "gre-hook:eth1:gre1")}, mss.In: {guard("gre1", "gre-hook:eth1:gre1")}}, func(...string) {})
	if err == nil || !strings.Contains(err.Error(), "writing iptables mangle chains GRE-HOOK and GRE-HOOK-IN: ") {
		t.Errorf("got %v", err)
	}
	if b.Dump() != "" {
		t.Errorf("state after a failed write:\n%s", b.Dump())
	}
}

func diffText(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s:\n%s\nwant:\n%s", what, got, want)
	}
}
