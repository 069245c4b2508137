package hook

import (
	"bytes"
	"encoding/json"
	"math/rand"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gre-hook/gre-hook/hook/rtnl"
)

func TestGCRemovesUnexplained(t *testing.T) {
	e := newEnv(t)
	e.write(many)
	e.mustRun(PhaseUp)
	e.write(site1)
	e.mustGC()
	diff(t, "state after gc", e.dump(), site1State)
	if strings.Contains(e.record(), "gre-v6") || !strings.Contains(e.record(), "gre-site2") {
		t.Errorf("record after gc:\n%s", e.record())
	}
	// Nothing left to do: gc is quiet and up agrees.
	e.log.Reset()
	if err := gc(t, Request{Config: e.cfg, AllowInsecure: true}, e.sys); err != nil || e.log.Len() != 0 {
		t.Errorf("second gc: %v\n%s", err, e.log.String())
	}
	if out := e.mustRun(PhaseUp); out != "" {
		t.Errorf("up after gc logged:\n%s", out)
	}
}

func TestGCWithoutConfigRemovesAll(t *testing.T) {
	for _, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			e.write(c.text)
			e.mustRun(PhaseUp)
			e.write("")
			e.mustGC()
			diff(t, "state after gc", e.dump(), baseline)
		})
	}
}

func TestGCWithoutRecordFindsByMarks(t *testing.T) {
	e := newEnv(t)
	e.write(many)
	e.mustRun(PhaseUp)
	os.RemoveAll(e.sys.Store.Dir)
	e.write("")
	e.mustGC()
	diff(t, "state after gc", e.dump(), baseline)
}

func status(t *testing.T, e *env) (bool, string) {
	t.Helper()
	var out bytes.Buffer
	drift, err := statusOf(t, Request{Config: e.cfg, AllowInsecure: true}, e.sys, &out)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	return drift, out.String()
}

func TestStatus(t *testing.T) {
	for _, tc := range []struct {
		name   string
		config string
		change func(e *env)
		want   string // "" for no drift
	}{
		{"none", many, func(*env) {}, ""},
		{"default route none", defaultRoute, func(*env) {}, ""},
		{"mtu", site1, func(e *env) {
			e.fk.Net.Mutate("gre-site2", func(l *rtnl.Link) { l.MTU = 1400 })
		}, "gre-site2 on eth1: drift\n  - mtu is 1400, want 1476\n"},
		{"route deleted", site1, func(e *env) {
			e.fk.Net.RemoveRoute(netip.MustParsePrefix("192.168.2.0/24"))
		}, "gre-site2 on eth1: drift\n  - route route replace 192.168.2.0/24 via 10.0.0.2 dev gre-site2 proto 176 is missing\n"},
		{"rule deleted", site1, func(e *env) { e.fk.V4.SetChain() }, "gre-site2 on eth1: drift\n  - iptables MSS rule is missing: -o gre-site2 -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment gre-hook:eth1:gre-site2 -j TCPMSS --clamp-mss-to-pmtu\n"},
		{"link gone", site1, func(e *env) { e.fk.Net.DelLink("gre-site2") }, "gre-site2 on eth1: drift\n  - link gre-site2 does not exist\n"},
		{"link down", site1, func(e *env) {
			e.fk.Net.Mutate("gre-site2", func(l *rtnl.Link) { l.Up = false })
		}, "gre-site2 on eth1: drift\n  - link is down\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.write(tc.config)
			e.mustRun(PhaseUp)
			tc.change(e)
			drift, out := status(t, e)
			if tc.want == "" {
				if drift || strings.Contains(out, "drift") {
					t.Errorf("drift reported after a clean up:\n%s", out)
				}
				return
			}
			if !drift {
				t.Errorf("no drift reported:\n%s", out)
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("status:\n%s\nwant it to contain:\n%s", out, tc.want)
			}
			// up repairs it.
			e.mustRun(PhaseUp)
			if drift, out := status(t, e); drift {
				t.Errorf("drift after a repairing up:\n%s", out)
			}
			diff(t, "state after repair", e.dump(), golden(t, tc.config))
		})
	}
}

func TestStatusUnconfiguredLink(t *testing.T) {
	e := newEnv(t)
	e.write(many)
	e.mustRun(PhaseUp)
	e.write(site1)
	drift, out := status(t, e)
	if !drift || !strings.Contains(out, "gre-v6 on eth1: drift\n  - gre-hook made this link but no config has it (gre-hook gc removes it)\n") {
		t.Errorf("status with a link no config has (drift=%v):\n%s", drift, out)
	}
}

// TestRandomTransitions applies configs and downs in a random order and
// checks after each step that the machine is in the golden state of the
// last config applied, or back at the baseline after a down.
func TestRandomTransitions(t *testing.T) {
	seed := time.Now().UnixNano()
	if s := os.Getenv("GRE_HOOK_TEST_SEED"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		seed = n
	}
	t.Logf("seed %d (rerun with GRE_HOOK_TEST_SEED)", seed)
	rnd := rand.New(rand.NewSource(seed))
	steps := append([]struct{ name, text string }{}, configs...)
	steps = append(steps, struct{ name, text string }{"empty", ""})
	want := map[string]string{"empty": baseline}
	for _, c := range configs {
		want[c.name] = golden(t, c.text)
	}
	e := newEnv(t)
	e.write("")
	current := "empty"
	for i := 0; i < 60; i++ {
		if rnd.Intn(4) == 0 {
			e.mustRun(PhaseDown)
			current = "empty"
			diff(t, "state after down (step "+itoa(i)+")", e.dump(), baseline)
			if e.record() != "" {
				t.Fatalf("step %d: record left after down", i)
			}
			continue
		}
		c := steps[rnd.Intn(len(steps))]
		e.write(c.text)
		e.mustRun(PhaseUp)
		current = c.name
		if got := e.dump(); got != want[current] {
			diff(t, "state after up of "+current+" (step "+itoa(i)+")", got, want[current])
			t.FailNow()
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestStatusPrintsFix: on drift, status prints the commands up would run,
// in text and JSON, and they are what up then prints as it runs them.
func TestStatusPrintsFix(t *testing.T) {
	e := newEnv(t)
	e.write(site1)
	e.mustRun(PhaseUp)
	e.fk.Net.Mutate("gre-site2", func(l *rtnl.Link) { l.MTU = 1400 })
	e.fk.V4.SetChain()
	_, out := status(t, e)
	rule := "iptables -t mangle -A GRE-HOOK -o gre-site2 -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment gre-hook:eth1:gre-site2 -j TCPMSS --clamp-mss-to-pmtu"
	want := "gre-site2 on eth1: drift\n  - mtu is 1400, want 1476\n  - iptables MSS rule is missing: " + strings.TrimPrefix(rule, "iptables -t mangle -A GRE-HOOK ") +
		"\npolicy routing: table 18247, rules at priorities 32700 and 32701, fwmark 0x4747\neth1: up would run:\n  ip link set gre-site2 mtu 1476\n  " + rule + "\n"
	if out != want {
		t.Errorf("status:\n%s\nwant:\n%s", out, want)
	}
	var buf bytes.Buffer
	if _, err := jsonStatusOf(t, Request{Config: e.cfg, AllowInsecure: true}, e.sys, &buf); err != nil {
		t.Fatal(err)
	}
	var es []TunnelStatus
	if err := json.Unmarshal(buf.Bytes(), &es); err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || strings.Join(es[0].Fix, "\n") != "ip link set gre-site2 mtu 1476\n"+rule {
		t.Errorf("status --json: %+v", es)
	}
	if got := e.mustRun(PhaseUp); got != "gre-hook: + ip link set gre-site2 mtu 1476\ngre-hook: + "+rule+"\n" {
		t.Errorf("up printed:\n%s", got)
	}
}
