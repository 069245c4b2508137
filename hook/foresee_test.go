package hook

import (
	"errors"
	"strings"
	"testing"

	"github.com/gre-hook/gre-hook/hook/rtnl"
)

// A kernel without GRE, as ModuleAvailable reports it.
func greMissing(name string) error {
	return errors.New("this kernel has no GRE support: module " + name + " is neither loaded nor among /lib/modules/6.1.0's modules")
}

var localElsewhere = strings.Replace(site1, `local = "198.51.100.1"`, `local = "198.51.100.7"`, 1)

// A dry run foresees what would make the real up fail, or work but
// carry nothing, and says so; it still prints the plan.
func TestDryRunForesees(t *testing.T) {
	for _, tc := range []struct {
		name, config string
		change       func(e *env)
		want         string
	}{
		{"underlay down", site1, func(e *env) { e.fk.Net.Mutate("eth1", func(l *rtnl.Link) { l.Up = false }) },
			"gre-hook: warning: underlay eth1 is down, so a real up would fail now (\"bring it up first\"); planning as if it were up\n"},
		{"no GRE module", site1, func(e *env) { e.sys.ModuleAvailable = greMissing },
			"gre-hook: warning: this kernel has no GRE support: module ip_gre is neither loaded nor among /lib/modules/6.1.0's modules; a real up would fail\n"},
		{"local not here", localElsewhere, func(*env) {},
			"gre-hook: warning: tunnel \"gre-site2\": local 198.51.100.7 is not an address of this host; the tunnel carries nothing until it is\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.write(tc.config)
			tc.change(e)
			req := e.req(PhaseUp)
			req.DryRun = true
			e.log.Reset()
			if err := run(req, e.sys); err != nil {
				t.Fatal(err)
			}
			out := e.log.String()
			if !strings.HasPrefix(out, tc.want) || !strings.Contains(out, "ip tunnel add gre-site2") {
				t.Errorf("dry run printed:\n%s\nwant it to start with:\n%s", out, tc.want)
			}
		})
	}
}

// A real up with a local that is not on this host works, as the kernel
// allows it, and warns.
func TestUpWarnsOfAbsentLocal(t *testing.T) {
	e := newEnv(t)
	e.write(localElsewhere)
	out := e.mustRun(PhaseUp)
	if want := "gre-hook: warning: tunnel \"gre-site2\": local 198.51.100.7 is not an address of this host; the tunnel carries nothing until it is\n"; !strings.HasPrefix(out, want) {
		t.Errorf("up printed:\n%s\nwant it to start with:\n%s", out, want)
	}
}

// status with no GRE in the kernel says so rather than print commands
// that cannot work; with a local that is not here, it says that too.
func TestStatusForesees(t *testing.T) {
	e := newEnv(t)
	e.write(site1)
	e.sys.ModuleAvailable = greMissing
	drift, out := status(t, e)
	want := "gre-site2 on eth1: drift\n  - link gre-site2 does not exist\n" +
		"  - iptables MSS rule is missing: -o gre-site2 -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment gre-hook:eth1:gre-site2 -j TCPMSS --clamp-mss-to-pmtu\n" +
		"  - this kernel has no GRE support: module ip_gre is neither loaded nor among /lib/modules/6.1.0's modules; up cannot create the link\n"
	if !drift || out != want || strings.Contains(out, "up would run") {
		t.Errorf("status (drift %v):\n%s\nwant:\n%s", drift, out, want)
	}

	e = newEnv(t)
	e.write(localElsewhere)
	e.mustRun(PhaseUp)
	drift, out = status(t, e)
	want = "gre-site2 on eth1: drift\n  - local 198.51.100.7 is not an address of this host; the tunnel carries nothing until it is\n" +
		"policy routing: table 18247, rules at priorities 32700 and 32701, fwmark 0x4747\n"
	if !drift || out != want {
		t.Errorf("status (drift %v):\n%s\nwant:\n%s", drift, out, want)
	}
}
