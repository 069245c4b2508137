package hook

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/gre-hook/gre-hook/hook/engine"
	"github.com/gre-hook/gre-hook/hook/mss"
	"github.com/gre-hook/gre-hook/hook/state"
)

// The reflection guards: each tunnel that reflects keepalives gets a rule
// in gre-hook's chain GRE-HOOK-IN, jumped to from mangle PREROUTING, that
// drops what comes in through it with one of the router's own addresses
// as source unless it is GRE (reflectConfig: gre.site2 and gre-site3
// reflect, gre-site4 does not).

// guardLog is what the first up of reflectConfig logs for the guards,
// after the MSS rules and in the same write.
const guardLog = `gre-hook: + iptables -t mangle -N GRE-HOOK-IN
gre-hook: + iptables -t mangle -A PREROUTING -m comment --comment gre-hook -j GRE-HOOK-IN
gre-hook: + iptables -t mangle -A GRE-HOOK-IN -i gre.site2 ! -p gre -m addrtype --src-type LOCAL -m comment --comment gre-hook:eth1:gre.site2 -j DROP
gre-hook: + iptables -t mangle -A GRE-HOOK-IN -i gre-site3 ! -p gre -m addrtype --src-type LOCAL -m comment --comment gre-hook:eth1:gre-site3 -j DROP
`

// reflectRestore is the one iptables-restore of the first up of
// reflectConfig: both chains, each with its jump.
const reflectRestore = `*mangle
:GRE-HOOK - [0:0]
:GRE-HOOK-IN - [0:0]
-F GRE-HOOK
-A GRE-HOOK -o gre.site2 -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment gre-hook:eth1:gre.site2 -j TCPMSS --clamp-mss-to-pmtu
-A GRE-HOOK -o gre-site3 -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment gre-hook:eth1:gre-site3 -j TCPMSS --clamp-mss-to-pmtu
-A GRE-HOOK -o gre-site4 -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment gre-hook:eth1:gre-site4 -j TCPMSS --clamp-mss-to-pmtu
-A POSTROUTING -m comment --comment gre-hook -j GRE-HOOK
-F GRE-HOOK-IN
-A GRE-HOOK-IN -i gre.site2 ! -p gre -m addrtype --src-type LOCAL -m comment --comment gre-hook:eth1:gre.site2 -j DROP
-A GRE-HOOK-IN -i gre-site3 ! -p gre -m addrtype --src-type LOCAL -m comment --comment gre-hook:eth1:gre-site3 -j DROP
-A PREROUTING -m comment --comment gre-hook -j GRE-HOOK-IN
COMMIT
`

// reflectTables is the fake iptables after an up of reflectConfig.
const reflectTables = `iptables -A PREROUTING -m comment --comment gre-hook -j GRE-HOOK-IN
iptables -A POSTROUTING -m comment --comment gre-hook -j GRE-HOOK
iptables -N GRE-HOOK
iptables -A GRE-HOOK -o gre.site2 -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment gre-hook:eth1:gre.site2 -j TCPMSS --clamp-mss-to-pmtu
iptables -A GRE-HOOK -o gre-site3 -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment gre-hook:eth1:gre-site3 -j TCPMSS --clamp-mss-to-pmtu
iptables -A GRE-HOOK -o gre-site4 -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment gre-hook:eth1:gre-site4 -j TCPMSS --clamp-mss-to-pmtu
iptables -N GRE-HOOK-IN
iptables -A GRE-HOOK-IN -i gre.site2 ! -p gre -m addrtype --src-type LOCAL -m comment --comment gre-hook:eth1:gre.site2 -j DROP
iptables -A GRE-HOOK-IN -i gre-site3 ! -p gre -m addrtype --src-type LOCAL -m comment --comment gre-hook:eth1:gre-site3 -j DROP
`

// guardDownLog is what down logs of the guards.
const guardDownLog = `gre-hook: + iptables -t mangle -D GRE-HOOK-IN -i gre.site2 ! -p gre -m addrtype --src-type LOCAL -m comment --comment gre-hook:eth1:gre.site2 -j DROP
gre-hook: + iptables -t mangle -D GRE-HOOK-IN -i gre-site3 ! -p gre -m addrtype --src-type LOCAL -m comment --comment gre-hook:eth1:gre-site3 -j DROP
gre-hook: + iptables -t mangle -D PREROUTING -m comment --comment gre-hook -j GRE-HOOK-IN
gre-hook: + iptables -t mangle -X GRE-HOOK-IN
`

// iptablesLines returns the lines of a log or dump that are about
// iptables, without the MSS rules' chain when guards is set.
func iptablesLines(s string, guards bool) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if !strings.Contains(l, "iptables ") {
			continue
		}
		if guards && !strings.Contains(l, "GRE-HOOK-IN") {
			continue
		}
		b.WriteString(l)
	}
	return b.String()
}

// guardsOf is the tunnels the record lists with a guard.
func guardsOf(t *testing.T, e *env) []string {
	t.Helper()
	rec, err := e.sys.Store.Load("eth1")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tn := range rec.Tunnels {
		if tn.Guard {
			out = append(out, tn.Name)
		}
	}
	return out
}

// TestGuardUpUpDownDown: up writes the guards of the reflecting tunnels,
// and only theirs, in the one iptables-restore of the run, and records
// them; a second up changes nothing and writes nothing; down removes them
// with the chain and its jump; a second down has nothing to do.
func TestGuardUpUpDownDown(t *testing.T) {
	e := newEnv(t)
	e.write(reflectConfig)
	out := e.mustRun(PhaseUp)
	diff(t, "guard commands of the first up", iptablesLines(out, true), guardLog)
	if len(e.fk.V4.Restores) != 1 {
		t.Fatalf("up wrote iptables %d times, want once", len(e.fk.V4.Restores))
	}
	diff(t, "the one iptables-restore", e.fk.V4.Restores[0], reflectRestore)
	diff(t, "iptables after up", iptablesLines(e.dump(), false), reflectTables)
	if got := guardsOf(t, e); !reflect.DeepEqual(got, []string{"gre.site2", "gre-site3"}) {
		t.Errorf("record lists guards for %q", got)
	}
	if len(e.fk.V6.Listed) != 0 {
		t.Errorf("up read ip6tables chains %q: the guards are IPv4 only", e.fk.V6.Listed)
	}

	state := e.dump()
	if out := e.mustRun(PhaseUp); out != "" {
		t.Errorf("second up logged:\n%s", out)
	}
	if len(e.fk.V4.Restores) != 1 {
		t.Errorf("second up wrote iptables")
	}
	diff(t, "state after the second up", e.dump(), state)

	out = e.mustRun(PhaseDown)
	diff(t, "guard commands of down", iptablesLines(out, true), guardDownLog)
	diff(t, "state after down", e.dump(), baseline)
	if len(e.fk.V4.Restores) != 2 {
		t.Errorf("down wrote iptables %d times, want once", len(e.fk.V4.Restores)-1)
	}
	if out := e.mustRun(PhaseDown); out != "" {
		t.Errorf("second down logged:\n%s", out)
	}
	diff(t, "state after the second down", e.dump(), baseline)
}

// TestGuardCostsNothingWithoutReflection: a run on an underlay with no
// reflecting tunnel, now or in its record, does not read GRE-HOOK-IN: it
// costs no iptables process.
func TestGuardCostsNothingWithoutReflection(t *testing.T) {
	e := newEnv(t)
	e.write(site1)
	e.mustRun(PhaseUp)
	e.mustRun(PhaseUp)
	if _, err := statusOf(t, Request{Config: e.cfg, AllowInsecure: true}, e.sys, &strings.Builder{}); err != nil {
		t.Fatal(err)
	}
	e.mustRun(PhaseDown)
	for _, c := range e.fk.V4.Listed {
		if c != mss.Out.Name {
			t.Errorf("up, up, status and down of a config with no reflection read %q", e.fk.V4.Listed)
			break
		}
	}
}

// TestGuardConfigEdit: a tunnel that stops reflecting loses its guard and
// the others keep theirs; when the last one goes, GRE-HOOK-IN and its jump
// go and GRE-HOOK stays; a tunnel that starts reflecting gets one.
func TestGuardConfigEdit(t *testing.T) {
	e := newEnv(t)
	e.write(reflectConfig)
	e.mustRun(PhaseUp)

	e.write(strings.Replace(reflectConfig, "keepalive_reflect = true\n", "", 1))
	out := e.mustRun(PhaseUp)
	diff(t, "log when gre-site3 stops reflecting", out,
		"gre-hook: + iptables -t mangle -D GRE-HOOK-IN -i gre-site3 ! -p gre -m addrtype --src-type LOCAL -m comment --comment gre-hook:eth1:gre-site3 -j DROP\n")
	if n := len(e.fk.V4.Restores); n != 2 || strings.Contains(e.fk.V4.Restores[1], "GRE-HOOK ") {
		t.Errorf("the edit wrote %d times, the last:\n%s\nwant one more write, of GRE-HOOK-IN alone", n-1, e.fk.V4.Restores[n-1])
	}
	if got := guardsOf(t, e); !reflect.DeepEqual(got, []string{"gre.site2"}) {
		t.Errorf("record lists guards for %q", got)
	}

	e.write(strings.Replace(strings.Replace(reflectConfig, "keepalive_reflect = true\n", "", 1), "keepalive = { interval = 5 }\n", "", 1))
	out = e.mustRun(PhaseUp)
	diff(t, "log when the last reflecting tunnel stops", out, `gre-hook: + iptables -t mangle -D GRE-HOOK-IN -i gre.site2 ! -p gre -m addrtype --src-type LOCAL -m comment --comment gre-hook:eth1:gre.site2 -j DROP
gre-hook: + iptables -t mangle -D PREROUTING -m comment --comment gre-hook -j GRE-HOOK-IN
gre-hook: + iptables -t mangle -X GRE-HOOK-IN
`)
	if d := iptablesLines(e.dump(), false); strings.Contains(d, "GRE-HOOK-IN") || !strings.Contains(d, "-N GRE-HOOK\n") {
		t.Errorf("iptables after the last guard went:\n%s", d)
	}
	if got := guardsOf(t, e); got != nil {
		t.Errorf("record lists guards for %q", got)
	}
	// Nothing of the guards is read any more.
	e.fk.V4.Listed = nil
	e.mustRun(PhaseUp)
	if !reflect.DeepEqual(e.fk.V4.Listed, []string{mss.Out.Name}) {
		t.Errorf("an up with no reflection left read %q", e.fk.V4.Listed)
	}

	e.write(reflectConfig)
	out = e.mustRun(PhaseUp)
	diff(t, "log when they reflect again", iptablesLines(out, true), guardLog)
	diff(t, "iptables then", iptablesLines(e.dump(), false), reflectTables)
}

// TestGuardKeepsOthers: rules in PREROUTING and GRE-HOOK-IN that are not
// this underlay's stay through up and down, and GRE-HOOK-IN stays while
// it holds any.
func TestGuardKeepsOthers(t *testing.T) {
	e := newEnv(t)
	e.fk.V4.AddForeignTo("PREROUTING", "-i eth1 -j ACCEPT")
	e.write(reflectConfig)
	e.mustRun(PhaseUp)
	other := "-i gre-x ! -p gre -m addrtype --src-type LOCAL -m comment --comment gre-hook:eth9:gre-x -j DROP"
	e.fk.V4.SetChainOf(mss.In, append(guardSpecs(e), other)...)
	if out := e.mustRun(PhaseUp); out != "" {
		t.Errorf("up with another underlay's guard logged:\n%s", out)
	}
	e.mustRun(PhaseDown)
	want := "iptables -A PREROUTING -i eth1 -j ACCEPT\niptables -A PREROUTING -m comment --comment gre-hook -j GRE-HOOK-IN\niptables -N GRE-HOOK-IN\niptables -A GRE-HOOK-IN " + other + "\n"
	diff(t, "iptables after down", iptablesLines(e.dump(), false), want)
}

// guardSpecs is GRE-HOOK-IN's rules now, as the text after "-A GRE-HOOK-IN ".
func guardSpecs(e *env) []string {
	cs, _ := e.fk.V4.ReadChains([]mss.Chain{mss.In})
	var out []string
	for _, l := range cs[0].Lines {
		if strings.HasPrefix(l, "-A ") {
			out = append(out, strings.TrimPrefix(l, "-A "+mss.In.Name+" "))
		}
	}
	return out
}

// TestGuardDrift: status reports a missing guard and a missing jump as
// drift of the tunnels they protect, with the commands that fix them, and
// up runs those.
func TestGuardDrift(t *testing.T) {
	const site3 = "-i gre-site3 ! -p gre -m addrtype --src-type LOCAL -m comment --comment gre-hook:eth1:gre-site3 -j DROP"
	for _, tc := range []struct {
		name   string
		change func(e *env)
		status string
		fix    string
	}{
		{"guard deleted", func(e *env) { e.fk.V4.SetChainOf(mss.In, guardSpecs(e)[0]) },
			"gre-site3 on eth1: drift\n  - iptables reflection guard is missing: " + site3 + "\n",
			"gre-hook: + iptables -t mangle -A GRE-HOOK-IN " + site3 + "\n"},
		{"jump deleted", func(e *env) {
			if err := e.fk.V4.Restore("*mangle\n-D PREROUTING -m comment --comment gre-hook -j GRE-HOOK-IN\nCOMMIT\n"); err != nil {
				e.t.Fatal(err)
			}
		},
			"gre-site3 on eth1: drift\n  - iptables mangle PREROUTING does not jump to GRE-HOOK-IN\n",
			"gre-hook: + iptables -t mangle -A PREROUTING -m comment --comment gre-hook -j GRE-HOOK-IN\n"},
		{"chain deleted", func(e *env) {
			if err := e.fk.V4.Restore("*mangle\n-D PREROUTING -m comment --comment gre-hook -j GRE-HOOK-IN\n-F GRE-HOOK-IN\n-X GRE-HOOK-IN\nCOMMIT\n"); err != nil {
				e.t.Fatal(err)
			}
		},
			"gre-site3 on eth1: drift\n  - iptables reflection guard is missing: " + site3 + "\n",
			iptablesLines(guardLog, true)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.write(reflectConfig)
			e.mustRun(PhaseUp)
			want := e.dump()
			tc.change(e)
			drift, out := status(t, e)
			if !drift || !strings.Contains(out, tc.status) {
				t.Errorf("status (drift %v):\n%s\nwant it to contain:\n%s", drift, out, tc.status)
			}
			fix := strings.ReplaceAll(tc.fix, "gre-hook: + ", "  ")
			if !strings.Contains(out, "eth1: up would run:\n"+fix) {
				t.Errorf("status does not print the fix:\n%s\nwant:\n%s", out, fix)
			}
			diff(t, "the repairing up", e.mustRun(PhaseUp), tc.fix)
			diff(t, "state after the repair", e.dump(), want)
			if drift, out := status(t, e); drift {
				t.Errorf("drift after the repair:\n%s", out)
			}
		})
	}
}

// TestGuardGC: gc removes the guards that no config and record explain,
// a stray one of an unknown underlay included, and keeps the others.
func TestGuardGC(t *testing.T) {
	e := newEnv(t)
	e.write(reflectConfig)
	e.mustRun(PhaseUp)
	stray := "-i gre-old ! -p gre -m addrtype --src-type LOCAL -m comment --comment gre-hook:eth7:gre-old -j DROP"
	foreign := "-i eth1 -m comment --comment admin -j RETURN"
	e.fk.V4.SetChainOf(mss.In, append(guardSpecs(e), stray, foreign)...)
	// gre-site3 leaves the config.
	e.write(strings.Replace(reflectConfig, `name = "gre-site3"`, `name = "gre-site3x"`, 1))
	e.mustGC()
	out := e.log.String()
	for _, want := range []string{
		"gre-hook: + iptables -t mangle -D GRE-HOOK-IN -i gre-site3 ! -p gre -m addrtype --src-type LOCAL -m comment --comment gre-hook:eth1:gre-site3 -j DROP\n",
		"gre-hook: + iptables -t mangle -D GRE-HOOK-IN " + stray + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("gc did not log %q:\n%s", want, out)
		}
	}
	got := guardSpecs(e)
	if len(got) != 2 || !strings.Contains(got[0], "gre-hook:eth1:gre.site2") || got[1] != foreign {
		t.Errorf("GRE-HOOK-IN after gc: %q", got)
	}
	// The last of gre-hook's guards goes with a gc that has no config;
	// the admin's rule keeps the chain.
	e.write("")
	e.mustGC()
	if got := guardSpecs(e); !reflect.DeepEqual(got, []string{foreign}) {
		t.Errorf("GRE-HOOK-IN after gc with no config: %q", got)
	}
}

// TestGuardDryRun: a dry run prints the guards with the other commands
// and writes nothing.
func TestGuardDryRun(t *testing.T) {
	e := newEnv(t)
	e.write(reflectConfig)
	diff(t, "dry run's guard commands", iptablesLines(e.dryRun(), true), strings.ReplaceAll(guardLog, "gre-hook: + ", ""))
	if len(e.fk.V4.Restores) != 0 {
		t.Errorf("a dry run wrote iptables")
	}
	diff(t, "state after a dry run", e.dump(), baseline)

	// And a dry down of what is up prints their removal.
	e.mustRun(PhaseUp)
	req := e.req(PhaseDown)
	req.DryRun = true
	e.log.Reset()
	if err := run(req, e.sys); err != nil {
		t.Fatal(err)
	}
	diff(t, "dry down's guard commands", iptablesLines(e.log.String(), true), strings.ReplaceAll(guardDownLog, "gre-hook: + ", ""))
	diff(t, "iptables after a dry down", iptablesLines(e.dump(), false), reflectTables)
}

// TestGuardFailedWrite: when the write of the rules fails, the up rolls
// back and leaves neither chain.
func TestGuardFailedWrite(t *testing.T) {
	e := newEnv(t)
	e.write(reflectConfig)
	e.fk.V4.FailNth("Restore", 1)
	out, err := e.run(PhaseUp)
	if err == nil || !strings.Contains(err.Error(), "writing iptables mangle chains GRE-HOOK and GRE-HOOK-IN: ") {
		t.Fatalf("got %v\n%s", err, out)
	}
	diff(t, "state after the failed up", e.dump(), baseline)
}

// TestGuardRunCutShort: the record a run writes before its changes keeps
// listing a guard that the run is to remove, so that a run killed before
// its write leaves a record by which down still finds the guard.
func TestGuardRunCutShort(t *testing.T) {
	e := newEnv(t)
	e.write(reflectConfig)
	e.mustRun(PhaseUp)
	old, err := e.sys.Store.Load("eth1")
	if err != nil {
		t.Fatal(err)
	}
	next := &state.Record{Underlay: "eth1"}
	for _, tn := range old.Tunnels {
		tn.Guard = false
		next.Tunnels = append(next.Tunnels, tn)
	}
	cut := engine.Union(old, next)
	if !cut.Guarded() || old.Find("gre.site2").Guard != true || next.Find("gre.site2").Guard {
		t.Fatalf("union dropped the guard or changed its inputs: %+v", cut.Tunnels)
	}
	if err := e.sys.Store.Save(cut); err != nil {
		t.Fatal(err)
	}
	e.mustRun(PhaseDown)
	diff(t, "state after down", e.dump(), baseline)

	// Without a record at all, down still finds them by their comments.
	e.mustRun(PhaseUp)
	if err := os.Remove(filepath.Join(e.sys.Store.Dir, "eth1.json")); err != nil {
		t.Fatal(err)
	}
	e.mustRun(PhaseDown)
	diff(t, "state after down without a record", e.dump(), baseline)
}
