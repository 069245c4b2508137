package mss

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// debian12Dump is `iptables -w 10 -t mangle -S` from Debian 12's
// iptables-nft 1.8.9, of a table with both of gre-hook's chains, another
// tool's chain, rules of the admin's, quoted comments, a comment that
// reads like a rule of GRE-HOOK, and a jump to GRE-HOOK with a match of
// its own, which is not gre-hook's jump.
const debian12Dump = `-P PREROUTING ACCEPT
-P INPUT ACCEPT
-P FORWARD ACCEPT
-P OUTPUT ACCEPT
-P POSTROUTING ACCEPT
-N DOCKER-MANGLE
-N GRE-HOOK
-N GRE-HOOK-IN
-A PREROUTING -i eth0 -j MARK --set-xmark 0x1/0xffffffff
-A PREROUTING -m comment --comment gre-hook -j GRE-HOOK-IN
-A FORWARD -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu
-A POSTROUTING -o eth1 -m comment --comment gre-hook -j GRE-HOOK
-A POSTROUTING -m comment --comment "say \"hi\" it\'s" -j DOCKER-MANGLE
-A DOCKER-MANGLE -s 10.0.0.0/8 -m comment --comment "-A GRE-HOOK -j x" -j RETURN
-A GRE-HOOK -o gre1 -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment "gre-hook:eth1:gre1" -j TCPMSS --clamp-mss-to-pmtu
-A GRE-HOOK -o gre2 -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment "gre-hook:eth1:gre2 x" -j TCPMSS --clamp-mss-to-pmtu
-A GRE-HOOK -o wg0 -m comment --comment "admin: \"keep\" me" -j ACCEPT
-A GRE-HOOK-IN -i gre1 ! -p gre -m addrtype --src-type LOCAL -m comment --comment "gre-hook:eth1:gre1" -j DROP
`

// The same iptables' `-S GRE-HOOK` and `-S GRE-HOOK-IN` of that table,
// which the per-chain read gave and everything after the read expects.
var (
	debian12Out = []string{
		"-N GRE-HOOK",
		`-A GRE-HOOK -o gre1 -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment "gre-hook:eth1:gre1" -j TCPMSS --clamp-mss-to-pmtu`,
		`-A GRE-HOOK -o gre2 -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment "gre-hook:eth1:gre2 x" -j TCPMSS --clamp-mss-to-pmtu`,
		`-A GRE-HOOK -o wg0 -m comment --comment "admin: \"keep\" me" -j ACCEPT`,
	}
	debian12In = []string{
		"-N GRE-HOOK-IN",
		`-A GRE-HOOK-IN -i gre1 ! -p gre -m addrtype --src-type LOCAL -m comment --comment "gre-hook:eth1:gre1" -j DROP`,
	}
)

func TestParseTable(t *testing.T) {
	got := parseTable(debian12Dump, Chains)
	want := []ChainState{
		// POSTROUTING's jump to GRE-HOOK has -o eth1 too: not ours.
		{Chain: Out, Lines: debian12Out, Exists: true, Jump: false},
		{Chain: In, Lines: debian12In, Exists: true, Jump: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseTable:\n%#v\nwant:\n%#v", got, want)
	}
	// What the rest reads of the lines is as before: our rules, the
	// admin's kept as printed.
	prev, others := split(got[0], func(c string) bool { return strings.HasPrefix(c, "gre-hook:eth1:") })
	if len(prev) != 2 || commentOf(prev[1]) != "gre-hook:eth1:gre2 x" || len(others) != 1 || others[0] != debian12Out[3] {
		t.Errorf("split: %q, %q", prev, others)
	}

	// Our jump, exactly, counts.
	withJump := strings.Replace(debian12Dump, "-A POSTROUTING -o eth1 -m comment", "-A POSTROUTING -m comment", 1)
	if got := parseTable(withJump, []Chain{Out}); !got[0].Jump {
		t.Errorf("gre-hook's own jump not seen: %+v", got)
	}
	// A jump spelt with other spacing or quotes is the same arguments.
	quoted := strings.Replace(debian12Dump, "-A POSTROUTING -o eth1 -m comment --comment gre-hook", `-A  POSTROUTING -m comment --comment "gre-hook"`, 1)
	if got := parseTable(quoted, []Chain{Out}); !got[0].Jump {
		t.Errorf("jump compared by text, not arguments: %+v", got)
	}
}

func TestParseTableMissingChains(t *testing.T) {
	none := "-P PREROUTING ACCEPT\n-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n-P POSTROUTING ACCEPT\n"
	if got, want := parseTable(none, Chains), []ChainState{{Chain: Out}, {Chain: In}}; !reflect.DeepEqual(got, want) {
		t.Errorf("empty table: %#v", got)
	}
	if got := parseTable("", Chains); len(got) != 2 || got[0].Exists || got[1].Exists {
		t.Errorf("no output: %#v", got)
	}
	// Only GRE-HOOK-IN, and another chain whose name starts like ours.
	one := none + "-N GRE-HOOK-INX\n-N GRE-HOOK-IN\n-A PREROUTING -m comment --comment gre-hook -j GRE-HOOK-IN\n" +
		"-A GRE-HOOK-INX -j RETURN\n" + debian12In[1] + "\n"
	got := parseTable(one, []Chain{Out, In})
	want := []ChainState{{Chain: Out}, {Chain: In, Lines: debian12In, Exists: true, Jump: true}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("only GRE-HOOK-IN:\n%#v\nwant:\n%#v", got, want)
	}
	// Only the chains asked for, in the order asked.
	if got := parseTable(debian12Dump, []Chain{In}); len(got) != 1 || got[0].Chain != In || !got[0].Exists {
		t.Errorf("asked for GRE-HOOK-IN: %#v", got)
	}
}

// fakeRun stands for exec: it counts the processes and answers the
// whole-table read with dump, or fails it with err.
type fakeRun struct {
	calls [][]string
	dump  string
	err   error
}

func (f *fakeRun) run(name string, args ...string) (string, error) {
	f.calls = append(f.calls, append([]string{name}, args...))
	return f.dump, f.err
}

// fakeEach is go-iptables over debian12Dump's chains, counting its
// processes; made counts `iptables --version`.
type fakeEach struct {
	made, procs int
	missing     map[string]bool
}

func (f *fakeEach) ChainExists(table, chain string) (bool, error) {
	f.procs++
	return !f.missing[chain], nil
}

func (f *fakeEach) List(table, chain string) ([]string, error) {
	f.procs++
	if chain == In.Name {
		return debian12In, nil
	}
	return debian12Out, nil
}

func (f *fakeEach) Exists(table, chain string, spec ...string) (bool, error) {
	f.procs++
	return chain == In.From, nil
}

func testSystem(r *fakeRun, e *fakeEach) *System {
	return &System{family: 4, name: "iptables", path: "/usr/sbin/iptables", wait: 10, run: r.run,
		newEach: func() (chainReader, error) { e.made++; return e, nil }}
}

// readBoth reads both chains of debian12Dump's table from s.
func readBoth(t *testing.T, s *System) {
	t.Helper()
	got, err := Read(s, Out, In)
	if err != nil {
		t.Fatal(err)
	}
	want := []ChainState{{Chain: Out, Lines: debian12Out, Exists: true}, {Chain: In, Lines: debian12In, Exists: true, Jump: true}}
	if !reflect.DeepEqual(got.Chains, want) {
		t.Errorf("Read:\n%#v\nwant:\n%#v", got.Chains, want)
	}
}

// TestReadIsOneProcess: a read of both chains, or of one, starts one
// iptables, and no `iptables --version`. Before, it started the version
// probe and two or three processes a chain: seven for both existing.
func TestReadIsOneProcess(t *testing.T) {
	r, e := &fakeRun{dump: debian12Dump}, &fakeEach{}
	s := testSystem(r, e)
	readBoth(t, s)
	wantCall := [][]string{{"/usr/sbin/iptables", "-w", "10", "-t", "mangle", "-S"}}
	if !reflect.DeepEqual(r.calls, wantCall) || e.made != 0 || e.procs != 0 {
		t.Errorf("processes: %q, go-iptables made %d times and %d calls; want only %q", r.calls, e.made, e.procs, wantCall)
	}
	if _, err := Read(s, Out); err != nil || len(r.calls) != 2 || e.made != 0 {
		t.Errorf("second read: %v, %d processes, go-iptables made %d times", err, len(r.calls), e.made)
	}
	s6 := testSystem(r, e)
	s6.family, s6.path = 6, "/usr/sbin/ip6tables"
	if _, err := Read(s6, Out); err != nil || len(r.calls) != 3 || r.calls[2][0] != "/usr/sbin/ip6tables" {
		t.Errorf("ip6tables read: %v, %q", err, r.calls)
	}
}

// TestReadFallsBackChainByChain: when iptables-nft will not print the
// table whole, the chains are read one by one through go-iptables, as
// before, for the rest of the run.
func TestReadFallsBackChainByChain(t *testing.T) {
	r := &fakeRun{err: errors.New("exit status 1: iptables v1.8.9 (nf_tables): table `mangle' is incompatible, use 'nft' tool.")}
	e := &fakeEach{}
	s := testSystem(r, e)
	readBoth(t, s)
	if len(r.calls) != 1 || e.made != 1 || e.procs != 6 {
		t.Errorf("%d whole-table reads, go-iptables made %d times, %d calls; want 1, 1, 6", len(r.calls), e.made, e.procs)
	}
	e.missing = map[string]bool{Out.Name: true}
	got, err := Read(s, Out)
	if err != nil || !reflect.DeepEqual(got.Chains, []ChainState{{Chain: Out}}) {
		t.Errorf("missing chain: %#v %v", got.Chains, err)
	}
	if len(r.calls) != 1 || e.made != 1 || e.procs != 7 {
		t.Errorf("second read: %d whole-table reads, go-iptables made %d times, %d calls; want 1, 1, 7", len(r.calls), e.made, e.procs)
	}
}

// TestReadLockBusy: a lock that stays taken is an error, not a second
// wait chain by chain.
func TestReadLockBusy(t *testing.T) {
	r := &fakeRun{err: errors.New("exit status 4: Another app is currently holding the xtables lock. Stopped waiting after 10s.")}
	e := &fakeEach{}
	_, err := Read(testSystem(r, e), Out, In)
	if err == nil || !strings.Contains(err.Error(), "reading iptables mangle chains GRE-HOOK and GRE-HOOK-IN: exit status 4: Another app") {
		t.Errorf("got %v", err)
	}
	if e.made != 0 {
		t.Errorf("fell back to go-iptables after a lock timeout")
	}
}
