package hook

import (
	"strings"
	"testing"
)

// reflectConfig has three tunnels on eth1: gre.site2 sends keepalives (a
// '.' in its name, as a VLAN-style name has), gre-site3 only reflects
// them, and gre-site4 does neither.
const reflectConfig = `
[[tunnel]]
name = "gre.site2"
underlay = "eth1"
remote = "203.0.113.1"
address = ["10.0.0.1/30"]
keepalive = { interval = 5 }

[[tunnel]]
name = "gre-site3"
underlay = "eth1"
remote = "203.0.113.3"
address = ["10.0.3.1/30"]
keepalive_reflect = true

[[tunnel]]
name = "gre-site4"
underlay = "eth1"
remote = "203.0.113.4"
address = ["10.0.4.1/30"]
`

// reflectSets is what the first up of reflectConfig logs for the
// sysctls, in order: a '.' in a name is written '/' for sysctl(8).
const reflectSets = `gre-hook: + sysctl -w net.ipv4.conf.gre/site2.accept_local=1
gre-hook: + sysctl -w net.ipv4.conf.gre/site2.rp_filter=2
gre-hook: + sysctl -w net.ipv4.conf.gre-site3.accept_local=1
gre-hook: + sysctl -w net.ipv4.conf.gre-site3.rp_filter=2
`

// reflectState is the fake kernel's view of the sysctls after an up.
const reflectState = `sysctl net/ipv4/conf/gre-site3/accept_local = 1
sysctl net/ipv4/conf/gre-site3/rp_filter = 2
sysctl net/ipv4/conf/gre.site2/accept_local = 1
sysctl net/ipv4/conf/gre.site2/rp_filter = 2
`

// sysctlLines returns the lines of a log or dump that are about sysctls.
func sysctlLines(s string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if strings.Contains(l, "sysctl") {
			b.WriteString(l)
		}
	}
	return b.String()
}

// TestReflectionSysctls: up sets accept_local and rp_filter on the
// interfaces of the tunnels that reflect keepalives, and only theirs,
// printing each as the sysctl command; a second up changes nothing; a
// value reset behind gre-hook's back, or a link made anew with
// conf.default's values, is set again; the globals stay as they were.
func TestReflectionSysctls(t *testing.T) {
	e := newEnv(t)
	e.write(reflectConfig)
	out := e.mustRun(PhaseUp)
	diff(t, "sysctl commands of the first up", sysctlLines(out), reflectSets)
	diff(t, "sysctls after up", sysctlLines(e.dump()), reflectState)
	// The sysctls come after the link exists and in the same log as the
	// other changes.
	if i, j := strings.Index(out, "ip tunnel add gre.site2"), strings.Index(out, "sysctl -w net.ipv4.conf.gre/site2"); i < 0 || j < i {
		t.Errorf("the sysctls are not set after the link is made:\n%s", out)
	}

	if out := e.mustRun(PhaseUp); out != "" {
		t.Errorf("second up changed something:\n%s", out)
	}

	// Someone puts the tunnel's rp_filter back.
	if err := e.fk.Sysctl.Set("net/ipv4/conf/gre-site3/rp_filter", "1"); err != nil {
		t.Fatal(err)
	}
	out = e.mustRun(PhaseUp)
	diff(t, "up after rp_filter was reset", out, "gre-hook: + sysctl -w net.ipv4.conf.gre-site3.rp_filter=2\n")

	// A down and up makes the links anew, with conf.default's values.
	e.mustRun(PhaseDown)
	if d := sysctlLines(e.dump()); d != "" {
		t.Errorf("sysctls left after down:\n%s", d)
	}
	out = e.mustRun(PhaseUp)
	diff(t, "sysctl commands of an up after down", sysctlLines(out), reflectSets)
	diff(t, "sysctls after up after down", sysctlLines(e.dump()), reflectState)

	for _, s := range e.fk.Sysctl.Sets {
		if strings.Contains(s, "/all/") || strings.Contains(s, "/default/") || strings.HasPrefix(s, "net/ipv4/ip_forward") {
			t.Errorf("gre-hook changed a global setting: %s", s)
		}
	}
}

// TestReflectionDryRun: a dry run prints the sysctls a new link will need
// (it starts with conf.default's values) and sets nothing.
func TestReflectionDryRun(t *testing.T) {
	e := newEnv(t)
	e.write(reflectConfig)
	want := strings.ReplaceAll(reflectSets, "gre-hook: + ", "")
	diff(t, "dry run's sysctl commands", sysctlLines(e.dryRun()), want)
	if len(e.fk.Sysctl.Sets) != 0 {
		t.Errorf("a dry run set sysctls: %v", e.fk.Sysctl.Sets)
	}

	// conf.default already has accept_local: only rp_filter is planned.
	e.fk.Sysctl.SetGlobal("net/ipv4/conf/default/accept_local", "1")
	diff(t, "dry run's sysctl commands with conf.default.accept_local=1", sysctlLines(e.dryRun()),
		"sysctl -w net.ipv4.conf.gre/site2.rp_filter=2\nsysctl -w net.ipv4.conf.gre-site3.rp_filter=2\n")
}

// TestReflectionWarnings: with a reflecting tunnel, up warns about
// forwarding off, naming the sysctl and the tunnels; conf.all.rp_filter,
// strict or loose, is fine (the tunnel's own loose value is the larger);
// nothing global is changed; with no reflecting tunnel there is nothing
// to say.
func TestReflectionWarnings(t *testing.T) {
	const (
		forward = "gre-hook: warning: net.ipv4.ip_forward is 0: tunnels gre.site2, gre-site3 cannot reflect the peer's keepalives (the kernel does not forward the reflected packet), so a peer with keepalives counts the tunnel down; gre-hook leaves global settings alone: set net.ipv4.ip_forward=1\n"
	)
	warnings := func(out string) string {
		var b strings.Builder
		for _, l := range strings.SplitAfter(out, "\n") {
			if strings.HasPrefix(l, "gre-hook: warning:") {
				b.WriteString(l)
			}
		}
		return b.String()
	}
	for _, tc := range []struct {
		name             string
		ipForward, rpAll string
		config           string
		want             string
	}{
		{"forwarding on, rp_filter off", "1", "0", reflectConfig, ""},
		{"forwarding off", "0", "0", reflectConfig, forward},
		{"strict rp_filter: the tunnel's loose one outweighs it", "1", "1", reflectConfig, ""},
		{"loose rp_filter", "1", "2", reflectConfig, ""},
		{"both", "0", "1", reflectConfig, forward},
		{"no reflecting tunnel", "0", "1", strings.ReplaceAll(strings.ReplaceAll(reflectConfig, "keepalive = { interval = 5 }", ""), "keepalive_reflect = true", ""), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.write(tc.config)
			sc := e.fk.Sysctl
			sc.SetGlobal("net/ipv4/ip_forward", tc.ipForward)
			sc.SetGlobal("net/ipv4/conf/all/rp_filter", tc.rpAll)
			diff(t, "warnings of up", warnings(e.mustRun(PhaseUp)), tc.want)
			// Every up says it again, even one with nothing to change.
			diff(t, "warnings of a second up", warnings(e.mustRun(PhaseUp)), tc.want)
			if sc.Global("net/ipv4/ip_forward") != tc.ipForward || sc.Global("net/ipv4/conf/all/rp_filter") != tc.rpAll {
				t.Errorf("up changed a global: ip_forward %s, all.rp_filter %s", sc.Global("net/ipv4/ip_forward"), sc.Global("net/ipv4/conf/all/rp_filter"))
			}
		})
	}
}

// TestReflectionRollback: when a later step of up fails, the sysctls it
// changed on a link that stays are put back with the rest.
func TestReflectionRollback(t *testing.T) {
	e := newEnv(t)
	e.write(site1)
	e.mustRun(PhaseUp)
	before := e.dump()
	// The tunnel now reflects, and clamps the MSS to a fixed value; the
	// MSS write fails after the sysctls are set.
	e.write(strings.Replace(site1, `mss = "pmtu"`, "mss = 1400\nkeepalive_reflect = true", 1))
	e.fk.V4.FailNth("Restore", 1)
	out, err := e.run(PhaseUp)
	if err == nil {
		t.Fatalf("up succeeded despite the injected failure:\n%s", out)
	}
	if !strings.Contains(out, "sysctl -w net.ipv4.conf.gre-site2.accept_local=1") {
		t.Fatalf("the failed up did not get as far as the sysctls:\n%s", out)
	}
	if !strings.Contains(out, "sysctl -w net.ipv4.conf.gre-site2.accept_local=0") || !strings.Contains(out, "sysctl -w net.ipv4.conf.gre-site2.rp_filter=1") {
		t.Errorf("the rollback does not print the sysctls it puts back:\n%s", out)
	}
	diff(t, "state after the rolled-back up", e.dump(), before)
}

// TestReflectionSysctlFails: a sysctl that cannot be set fails the up,
// which rolls back, and says which setting.
func TestReflectionSysctlFails(t *testing.T) {
	e := newEnv(t)
	e.write(reflectConfig)
	e.fk.Sysctl.FailNth("Set", 2)
	out, err := e.run(PhaseUp)
	if err == nil || !strings.Contains(err.Error(), `tunnel "gre.site2": sysctl -w net.ipv4.conf.gre/site2.rp_filter=2: Set: injected failure`) {
		t.Fatalf("got %v, want the failed sysctl named\n%s", err, out)
	}
	diff(t, "state after the failed up", e.dump(), baseline)
}

// TestReflectionEditInPlace: an edit a live reflecting tunnel takes in
// place (ttl) keeps its link, and so its sysctls: up neither sets them
// again nor, when a later step fails, rolls them back to conf.default's
// values, which would stop the reflection on a tunnel that is up.
func TestReflectionEditInPlace(t *testing.T) {
	e := newEnv(t)
	e.write(reflectConfig)
	e.mustRun(PhaseUp)
	before := e.dump()
	edited := strings.Replace(reflectConfig, "keepalive_reflect = true", "keepalive_reflect = true\nttl = 64", 1)
	e.write(edited)
	if s := sysctlLines(e.dryRun()); s != "" {
		t.Errorf("a dry run of an in-place edit would set the sysctls again:\n%s", s)
	}
	// The same edit with an MSS change, whose write fails after the
	// in-place change.
	e.write(strings.Replace(edited, "ttl = 64", "ttl = 64\nmss = 1300", 1))
	e.fk.V4.FailNth("Restore", 1)
	out, err := e.run(PhaseUp)
	if err == nil {
		t.Fatalf("up succeeded despite the injected failure:\n%s", out)
	}
	if !strings.Contains(out, "ttl 64") {
		t.Fatalf("the failed up did not get as far as the in-place change:\n%s", out)
	}
	if s := sysctlLines(out); s != "" {
		t.Errorf("the failed up set or rolled back the sysctls of a link it kept:\n%s", s)
	}
	diff(t, "state after the rolled-back up", e.dump(), before)
}
