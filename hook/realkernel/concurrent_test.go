//go:build realkernel

package realkernel

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestConcurrentUnderlays is in a file of its own, named to sort before
// the others: go test starts parallel tests in the order of their files,
// and this one, a chain of runs queued on one lock, is the tier's longest;
// started first, it no longer ends the tier alone.

// TestConcurrentUnderlays brings 8 underlays, each with its tunnels, up
// and down in parallel as ifupdown does (one gre-hook per underlay, all at
// once, from the environment ifupdown sets), round after round. After each
// up the kernel must hold exactly the configured links, routes, MSS rules
// and reflection guards (the first tunnel of each underlay reflects
// keepalives), none twice and none lost; after each down nothing of
// gre-hook's.
//
// GRE_HOOK_STRESS_ROUNDS (default 2) and GRE_HOOK_STRESS_TUNNELS (tunnels
// per underlay, default 3) size it. Under software emulation every process
// start is slow, and the sixteen runs of a round serialise on gre-hook's
// lock; the test logs how long a round took. CI runs 2 rounds; a long
// stress run is GRE_HOOK_STRESS_ROUNDS=50.
func TestConcurrentUnderlays(t *testing.T) {
	t.Parallel()
	const underlays = 8
	rounds := envInt(t, "GRE_HOOK_STRESS_ROUNDS", 2)
	perUnderlay := envInt(t, "GRE_HOOK_STRESS_TUNNELS", 3)
	if perUnderlay > 9 {
		t.Fatal("GRE_HOOK_STRESS_TUNNELS is at most 9")
	}
	ns := newCleanNS(t)
	var cfg strings.Builder
	wantLinks := map[string]string{} // name -> alias
	var wantRoutes, wantRules []string
	for i := 1; i <= underlays; i++ {
		eth := fmt.Sprintf("eth%d", i)
		ns.dummy(eth, fmt.Sprintf("198.18.%d.1/24", i), 1500)
		for j := 0; j < perUnderlay; j++ {
			name := fmt.Sprintf("s%dt%d", i, j)
			reflect := ""
			if j == 0 {
				reflect = "keepalive_reflect = true\n"
				wantRules = append(wantRules, fmt.Sprintf("-A GRE-HOOK-IN -i %s ! -p gre -m addrtype --src-type LOCAL -m comment --comment gre-hook:%s:%s -j DROP", name, eth, name))
			}
			fmt.Fprintf(&cfg, "[[tunnel]]\nname = %q\nunderlay = %q\nremote = \"203.0.113.%d\"\naddress = [\"10.%d.%d.1/30\"]\n%s[[tunnel.route]]\nto = \"172.16.%d.0/24\"\n\n",
				name, eth, i*10+j, i, j*4, reflect, i*10+j)
			wantLinks[name] = "gre-hook:" + eth
			wantRoutes = append(wantRoutes, fmt.Sprintf("172.16.%d.0/24 via 10.%d.%d.2 dev %s proto 176 metric 0 table main", i*10+j, i, j*4, name))
			wantRules = append(wantRules, fmt.Sprintf("-A GRE-HOOK -o %s -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment gre-hook:%s:%s -j TCPMSS --clamp-mss-to-pmtu", name, eth, name))
		}
	}
	wantRules = append(wantRules, "-A POSTROUTING -m comment --comment gre-hook -j GRE-HOOK", "-N GRE-HOOK",
		"-A PREROUTING -m comment --comment gre-hook -j GRE-HOOK-IN", "-N GRE-HOOK-IN")
	sort.Strings(wantRoutes)
	sort.Strings(wantRules)
	path := writeConfig(t, cfg.String())

	// All eight at once, as ifupdown calls the hook for each interface.
	all := func(phase string) {
		t.Helper()
		runs := make([]*bg, underlays)
		for i := range runs {
			runs[i] = ns.start([]string{
				fmt.Sprintf("IFACE=eth%d", i+1), "LOGICAL=eth" + strconv.Itoa(i+1), "ADDRFAM=inet", "METHOD=static",
				"MODE=" + map[string]string{"post-up": "start", "pre-down": "stop"}[phase], "PHASE=" + phase,
				"IF_GRE_HOOK_CONFIG=" + path,
				// Eight runs queue on one lock, each a few seconds under
				// emulation: the default 30 s wait is not meant for that.
				"GRE_HOOK_LOCK_WAIT=600",
			})
		}
		for i, b := range runs {
			if r := b.wait(); r.code != 0 {
				t.Fatalf("%s of eth%d exited %d:\n%s", phase, i+1, r.code, r.stderr)
			}
		}
	}
	checkUp := func(round int) {
		t.Helper()
		gotLinks := map[string]string{}
		for name, l := range ns.links() {
			if strings.HasPrefix(l.Ifalias, "gre-hook") || l.Linkinfo.InfoKind == "gre" && name != "gre0" {
				gotLinks[name] = l.Ifalias
				if !l.has("UP") {
					t.Errorf("round %d: link %s is not up", round, name)
				}
			}
		}
		assertEq(t, fmt.Sprintf("round %d: links", round), gotLinks, wantLinks)
		routes := ns.ourRoutes()
		sort.Strings(routes)
		assertEq(t, fmt.Sprintf("round %d: routes (%d)", round, len(routes)), strings.Join(routes, "\n"), strings.Join(wantRoutes, "\n"))
		var rules []string
		for _, r := range ns.mangle("iptables") {
			if strings.Contains(r, "GRE-HOOK") || strings.Contains(r, "gre-hook") {
				rules = append(rules, strings.ReplaceAll(r, `"`, ""))
			}
		}
		sort.Strings(rules)
		assertEq(t, fmt.Sprintf("round %d: rules (%d)", round, len(rules)), strings.Join(rules, "\n"), strings.Join(wantRules, "\n"))
		assertEq(t, fmt.Sprintf("round %d: records", round), len(ns.records()), underlays)
		if t.Failed() {
			t.FailNow()
		}
	}
	start := time.Now()
	for round := 1; round <= rounds; round++ {
		all("post-up")
		checkUp(round)
		if round == 1 || round == rounds {
			ns.must(ns.gh([]string{"IF_GRE_HOOK_CONFIG=" + path}, "status"))
		}
		all("pre-down")
		ns.assertNothingLeft(fmt.Sprintf("round %d down", round))
		if round%10 == 0 {
			t.Logf("%d rounds done in %s", round, time.Since(start).Round(time.Second))
		}
	}
	t.Logf("%d rounds of %d underlays x %d tunnel(s) up and down in parallel: %s (%s a round)",
		rounds, underlays, perUnderlay, time.Since(start).Round(time.Millisecond), (time.Since(start) / time.Duration(rounds)).Round(time.Millisecond))
}
