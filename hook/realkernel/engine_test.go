//go:build realkernel

package realkernel

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestStatusPrintsWhatUpRuns: one diff serves up, --dry-run and status.
// After each drift, status prints exactly the commands that
// `--phase up --dry-run` prints, status --json carries them, up prints
// the same lines as it makes the changes, and the kernel is as up left it
// first.
func TestStatusPrintsWhatUpRuns(t *testing.T) {
	t.Parallel()
	ns := newCleanNS(t)
	ns.dummy("eth1", "198.51.100.1/24", 1500)
	cfg := writeConfig(t, site1)
	ns.up(cfg, "eth1")

	kernel := func() string {
		t.Helper()
		l, ok := ns.link("gre-site2")
		if !ok {
			return "no gre-site2"
		}
		var addrs []string
		for _, a := range l.AddrInfo {
			if a.Scope != "link" {
				addrs = append(addrs, fmt.Sprintf("%s/%d", a.Local, a.Prefixlen))
			}
		}
		return fmt.Sprintf("index %d mtu %d ttl %s up %v addrs %v\nroutes %v\nmangle %v", ns.linkIndex("gre-site2"), l.Mtu, l.data("ttl"), l.has("UP"), addrs,
			ns.ourRoutes(), ns.mangle("iptables"))
	}
	clean := kernel()
	if !strings.Contains(clean, "mtu 1476 ttl 255 up true addrs [10.0.0.1/30]") || !strings.Contains(clean, "192.168.2.0/24 via 10.0.0.2 dev gre-site2") ||
		!strings.Contains(clean, "gre-hook:eth1:gre-site2") {
		t.Fatalf("kernel after up:\n%s", clean)
	}
	var rule string
	for _, r := range ns.mangle("iptables") {
		if strings.HasPrefix(r, "-A GRE-HOOK ") && strings.Contains(r, "gre-site2") {
			// iptables quotes the comment, though it needs no quotes.
			rule = strings.ReplaceAll(r, `"`, "")
		}
	}
	if rule == "" {
		t.Fatalf("no MSS rule for gre-site2: %v", ns.mangle("iptables"))
	}

	lines := func(s string) []string {
		var out []string
		for _, l := range strings.Split(s, "\n") {
			if l != "" {
				out = append(out, l)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		drift func()
		want  string // one of the commands up must run
	}{
		{"changed mtu", func() { ns.ip("link", "set", "gre-site2", "mtu", "1400") }, "ip link set gre-site2 mtu 1476"},
		// Changed back in place: the index stays.
		{"changed ttl", func() { ns.ip("link", "set", "gre-site2", "type", "gre", "ttl", "64") }, "ip link set gre-site2 type gre ttl 255  # in place, was ttl 64"},
		{"deleted route", func() { ns.ip("route", "del", "192.168.2.0/24") }, "ip route replace 192.168.2.0/24 via 10.0.0.2 dev gre-site2 proto 176"},
		{"deleted MSS rule", func() {
			ns.exec("iptables", append([]string{"-t", "mangle", "-D"}, strings.Fields(strings.TrimPrefix(rule, "-A "))...)...)
		}, "iptables -t mangle -A GRE-HOOK " + strings.TrimPrefix(rule, "-A GRE-HOOK ")},
		{"missing address", func() { ns.ip("addr", "del", "10.0.0.1/30", "dev", "gre-site2") }, "ip addr add 10.0.0.1/30 broadcast 10.0.0.3 dev gre-site2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.drift()
			st := ns.gh(nil, "status", "--config", cfg, "--iface", "eth1")
			if st.code != 3 {
				t.Fatalf("status exited %d, want 3\n%s%s", st.code, st.stdout, st.stderr)
			}
			// The commands follow "eth1: up would run:", indented.
			var fix []string
			after := false
			for _, l := range lines(st.stdout) {
				switch {
				case l == "eth1: up would run:":
					after = true
				case after && strings.HasPrefix(l, "  "):
					fix = append(fix, strings.TrimPrefix(l, "  "))
				default:
					after = false
				}
			}
			dry := ns.must(ns.gh(nil, "--config", cfg, "--iface", "eth1", "--phase", "up", "--dry-run"))
			var plan []string
			for _, l := range lines(dry.stdout + dry.stderr) {
				if !strings.HasPrefix(l, "gre-hook:") {
					plan = append(plan, l)
				}
			}
			if len(fix) == 0 || strings.Join(fix, "\n") != strings.Join(plan, "\n") {
				t.Fatalf("status prints:\n%s\n--dry-run prints:\n%s", st.stdout, strings.Join(plan, "\n"))
			}
			t.Logf("status and --dry-run print %q", fix)
			found := false
			for _, c := range fix {
				found = found || c == tc.want
			}
			if !found {
				t.Errorf("the commands %q lack %q", fix, tc.want)
			}

			js := ns.gh(nil, "status", "--config", cfg, "--iface", "eth1", "--json")
			var es []struct {
				Tunnel   string   `json:"tunnel"`
				State    string   `json:"state"`
				Problems []string `json:"problems"`
				Fix      []string `json:"fix"`
			}
			if err := json.Unmarshal([]byte(js.stdout), &es); err != nil || js.code != 3 {
				t.Fatalf("status --json: exit %d, %v\n%s", js.code, err, js.stdout)
			}
			if len(es) != 1 || es[0].State != "drift" || len(es[0].Problems) == 0 || strings.Join(es[0].Fix, "\n") != strings.Join(plan, "\n") {
				t.Errorf("status --json: %+v\nwant the fix %q", es, plan)
			}

			up := ns.up(cfg, "eth1")
			var ran []string
			for _, l := range lines(up.stdout + up.stderr) {
				if strings.HasPrefix(l, "gre-hook: + ") {
					ran = append(ran, strings.TrimPrefix(l, "gre-hook: + "))
				}
			}
			if strings.Join(ran, "\n") != strings.Join(plan, "\n") {
				t.Errorf("up printed:\n%s%s\nwant the lines:\n%s", up.stdout, up.stderr, strings.Join(plan, "\n"))
			}
			if got := kernel(); got != clean {
				t.Errorf("kernel after up:\n%s\nwant:\n%s", got, clean)
			}
			ns.must(ns.gh(nil, "status", "--config", cfg, "--iface", "eth1"))
		})
	}
	ns.down(cfg, "eth1")
	ns.assertNothingLeft("down")
}
