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
	var log []string
	calls := 0
	if _, err := mss.Sync(b, underlay(u), want, func(c ...string) { calls++; log = append(log, c...) }); err != nil {
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
	_, err := mss.Sync(b, underlay("eth1"), [][]string{r}, func(...string) {})
	if err == nil || !strings.Contains(err.Error(), "writing iptables mangle chain GRE-HOOK") {
		t.Errorf("got %v", err)
	}
	if b.Dump() != "" {
		t.Errorf("state after a failed write:\n%s", b.Dump())
	}
}
