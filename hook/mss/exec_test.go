package mss

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeIptables is an iptables that logs each start and answers as
// iptables-nft 1.8.9 does for a table holding GRE-HOOK with its jump; with
// $REFUSE set it will not print the table whole, as for nft-only rules.
const fakeIptables = `#!/bin/sh
echo "$*" >>"$LOG"
case "$*" in
--version) echo "iptables v1.8.9 (nf_tables)" ;;
"-w 10 -t mangle -S")
	if [ -n "$REFUSE" ]; then echo "iptables v1.8.9 (nf_tables): table \` + "`" + `mangle' is incompatible, use 'nft' tool." >&2; exit 1; fi
	printf '%s\n' "-P POSTROUTING ACCEPT" "-N GRE-HOOK" "-A POSTROUTING -m comment --comment gre-hook -j GRE-HOOK" "-A GRE-HOOK -o gre1 -j ACCEPT" ;;
"-t mangle -S GRE-HOOK 1 --wait 10") ;;
"-t mangle -S GRE-HOOK --wait 10") printf '%s\n' "-N GRE-HOOK" "-A GRE-HOOK -o gre1 -j ACCEPT" ;;
"-t mangle -C POSTROUTING -m comment --comment gre-hook -j GRE-HOOK --wait 10") ;;
*) echo "unexpected: $*" >&2; exit 2 ;;
esac
`

// TestOpenAndReadProcesses counts the real processes: Open starts none, a
// read one; when the table cannot be printed whole, the read falls back
// to go-iptables chain by chain, which is today's four.
func TestOpenAndReadProcesses(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"iptables", "iptables-restore"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(fakeIptables), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	log := filepath.Join(dir, "log")
	t.Setenv("PATH", dir)
	t.Setenv("LOG", log)
	starts := func() []string {
		b, _ := os.ReadFile(log)
		os.Remove(log)
		return strings.Fields(strings.ReplaceAll(strings.TrimSpace(string(b)), " ", "_"))
	}
	want := ChainState{Chain: Out, Lines: []string{"-N GRE-HOOK", "-A GRE-HOOK -o gre1 -j ACCEPT"}, Exists: true, Jump: true}

	for _, refuse := range []string{"", "yes"} {
		t.Setenv("REFUSE", refuse)
		s, err := Open(4, 10)
		if err != nil {
			t.Fatal(err)
		}
		if got := starts(); len(got) != 0 {
			t.Errorf("Open started %q", got)
		}
		st, err := Read(s, Out)
		if err != nil || len(st.Chains) != 1 || strings.Join(st.Chains[0].Lines, "\n") != strings.Join(want.Lines, "\n") || !st.Chains[0].Exists || !st.Chains[0].Jump {
			t.Fatalf("REFUSE=%q: Read: %+v %v", refuse, st, err)
		}
		got := starts()
		wantStarts := []string{"-w_10_-t_mangle_-S"}
		if refuse != "" {
			wantStarts = append(wantStarts, "--version", "-t_mangle_-S_GRE-HOOK_1_--wait_10", "-t_mangle_-S_GRE-HOOK_--wait_10",
				"-t_mangle_-C_POSTROUTING_-m_comment_--comment_gre-hook_-j_GRE-HOOK_--wait_10")
		}
		if strings.Join(got, " ") != strings.Join(wantStarts, " ") {
			t.Errorf("REFUSE=%q: processes:\n%q\nwant:\n%q", refuse, got, wantStarts)
		}
	}
}
