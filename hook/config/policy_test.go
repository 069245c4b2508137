package config

import (
	"path/filepath"
	"strings"
	"testing"
)

// No [policy] table: the values gre-hook has always used.
func TestPolicyDefaults(t *testing.T) {
	d := t.TempDir()
	cfg, err := Load([]string{writeFile(t, filepath.Join(d, "a.toml"), base, 0o600)})
	if err != nil {
		t.Fatal(err)
	}
	if want := (Policy{Table: 18247, Priority: 32700, FwMark: 0x4747}); cfg.Policy != want || DefaultPolicy != want {
		t.Errorf("policy %+v, default %+v, want %+v", cfg.Policy, DefaultPolicy, want)
	}
	if cfg.PolicyFrom != "" {
		t.Errorf("PolicyFrom %q for the defaults", cfg.PolicyFrom)
	}
}

// A [policy] table sets any of the three keys; the others keep their
// defaults. It may stand in a file of its own, and another file may
// repeat a key with the same value.
func TestPolicyValues(t *testing.T) {
	d := t.TempDir()
	for _, tc := range []struct {
		name  string
		files []string
		want  Policy
	}{
		{"all three", []string{"[policy]\ntable = 100\npriority = 1000\nfwmark = 0x10\n\n" + base}, Policy{100, 1000, 0x10}},
		{"table only", []string{"[policy]\ntable = 4294967295\n" + base}, Policy{4294967295, 32700, 0x4747}},
		{"inline", []string{"policy = { priority = 1, fwmark = 0xffffffff }\n" + base}, Policy{18247, 1, 0xffffffff}},
		{"highest priority", []string{"[policy]\npriority = 32764\n"}, Policy{18247, 32764, 0x4747}},
		{"a file of its own", []string{"[policy]\ntable = 7\n", base}, Policy{7, 32700, 0x4747}},
		{"keys in two files, one repeated", []string{"[policy]\ntable = 7\n", "[policy]\ntable = 7\nfwmark = 9\n" + base}, Policy{7, 32700, 9}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var files []string
			for i, text := range tc.files {
				files = append(files, writeFile(t, filepath.Join(d, strings.ReplaceAll(tc.name, " ", "-")+string(rune('a'+i))+".toml"), text, 0o600))
			}
			cfg, err := Load(files)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Policy != tc.want {
				t.Errorf("policy %+v, want %+v", cfg.Policy, tc.want)
			}
			if !strings.HasPrefix(cfg.PolicyFrom, files[0]+":") {
				t.Errorf("PolicyFrom %q, want the first file", cfg.PolicyFrom)
			}
		})
	}
}

func TestPolicyErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text, want string
	}{
		{"table 0", "[policy]\ntable = 0\n",
			`/etc/gre-hook/t.toml:2:1: policy: table: 0 is not a table gre-hook can own: use 1-252 or 256-4294967295 (0 is unspecified, 253 default, 254 main, 255 local)`},
		{"table default", "[policy]\ntable = 253\n",
			`/etc/gre-hook/t.toml:2:1: policy: table: 253 is not a table gre-hook can own: use 1-252 or 256-4294967295 (0 is unspecified, 253 default, 254 main, 255 local)`},
		{"table main", "[policy]\n  table = 254\n",
			`/etc/gre-hook/t.toml:2:3: policy: table: 254 is not a table gre-hook can own: use 1-252 or 256-4294967295 (0 is unspecified, 253 default, 254 main, 255 local)`},
		{"table local", "[policy]\ntable = 255\n",
			`/etc/gre-hook/t.toml:2:1: policy: table: 255 is not a table gre-hook can own: use 1-252 or 256-4294967295 (0 is unspecified, 253 default, 254 main, 255 local)`},
		{"table too big", "[policy]\ntable = 4294967296\n",
			`/etc/gre-hook/t.toml:2:1: policy: table: 4294967296 is not a table gre-hook can own: use 1-252 or 256-4294967295 (0 is unspecified, 253 default, 254 main, 255 local)`},
		{"table negative", "[policy]\ntable = -1\n",
			`/etc/gre-hook/t.toml:2:1: policy: table: -1 is not a table gre-hook can own: use 1-252 or 256-4294967295 (0 is unspecified, 253 default, 254 main, 255 local)`},
		{"priority 0", "[policy]\npriority = 0\n",
			`/etc/gre-hook/t.toml:2:1: policy: priority: 0 is out of range 1-32764: gre-hook's two rules take it and the next, and 0, 32766 and 32767 are the kernel's local, main and default rules`},
		{"priority 32765", "[policy]\npriority = 32765\n",
			`/etc/gre-hook/t.toml:2:1: policy: priority: 32765 is out of range 1-32764: gre-hook's two rules take it and the next, and 0, 32766 and 32767 are the kernel's local, main and default rules`},
		{"priority main", "[policy]\npriority = 32766\n",
			`/etc/gre-hook/t.toml:2:1: policy: priority: 32766 is out of range 1-32764: gre-hook's two rules take it and the next, and 0, 32766 and 32767 are the kernel's local, main and default rules`},
		{"priority huge", "[policy]\npriority = 40000\n",
			`/etc/gre-hook/t.toml:2:1: policy: priority: 40000 is out of range 1-32764: gre-hook's two rules take it and the next, and 0, 32766 and 32767 are the kernel's local, main and default rules`},
		{"fwmark 0", "[policy]\nfwmark = 0\n",
			`/etc/gre-hook/t.toml:2:1: policy: fwmark: 0 marks nothing: use 1-4294967295 (0x1-0xffffffff)`},
		{"fwmark too big", "[policy]\nfwmark = 0x100000000\n",
			`/etc/gre-hook/t.toml:2:1: policy: fwmark: 4294967296 is out of range 1-4294967295 (0x1-0xffffffff)`},
		{"fwmark negative", "[policy]\nfwmark = -5\n",
			`/etc/gre-hook/t.toml:2:1: policy: fwmark: -5 is out of range 1-4294967295 (0x1-0xffffffff)`},
		{"wrong type", "[policy]\nfwmark = \"0x4747\"\n",
			`/etc/gre-hook/t.toml:2:1: policy: fwmark: must be an integer, not a string ("0x4747")`},
		{"unknown key", "[policy]\ntable = 100\nmark = 5\n",
			`/etc/gre-hook/t.toml:3:1: policy: unknown key "mark" (it has table, priority and fwmark)`},
		{"array of tables", "[[policy]]\ntable = 100\n",
			`/etc/gre-hook/t.toml:1:1: policy: must be one [policy] table (single brackets), not an array`},
		{"not a table", "policy = 100\n",
			`/etc/gre-hook/t.toml:1:1: policy: must be a [policy] table, not an integer (100)`},
		{"two errors", "[policy]\ntable = 254\npriority = 0\n",
			"/etc/gre-hook/t.toml:2:1: policy: table: 254 is not a table gre-hook can own: use 1-252 or 256-4294967295 (0 is unspecified, 253 default, 254 main, 255 local)\n" +
				"/etc/gre-hook/t.toml:3:1: policy: priority: 0 is out of range 1-32764: gre-hook's two rules take it and the next, and 0, 32766 and 32767 are the kernel's local, main and default rules"},
		{"route in the default table", base + "address = [\"10.0.0.1/30\"]\n[[tunnel.route]]\nto = \"10.1.0.0/16\"\ntable = 18247\n",
			`/etc/gre-hook/t.toml:8:1: tunnel "gre1" route #1: table: 18247 is gre-hook's own table for the default routes of default_route tunnels ([policy] table); use another`},
		{"route in the policy's table", "[policy]\ntable = 100\n\n" + base + "address = [\"10.0.0.1/30\"]\n[[tunnel.route]]\nto = \"10.1.0.0/16\"\ntable = 100\n",
			`/etc/gre-hook/t.toml:11:1: tunnel "gre1" route #1: table: 100 is gre-hook's own table for the default routes of default_route tunnels ([policy] table, set at /etc/gre-hook/t.toml:2:1); use another`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := Parse(file, []byte(tc.text))
			if len(errs) == 0 {
				t.Fatal("no error")
			}
			if got := errs.Error(); got != tc.want {
				t.Errorf("error:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

// With the policy's table moved, 18247 is a table like any other.
func TestPolicyTableFreesTheDefault(t *testing.T) {
	text := "[policy]\ntable = 100\n\n" + base + "address = [\"10.0.0.1/30\"]\n[[tunnel.route]]\nto = \"10.1.0.0/16\"\ntable = 18247\n"
	if _, errs := Parse(file, []byte(text)); len(errs) > 0 {
		t.Fatal(errs)
	}
}

// The policy is one for the router: two files that give a key two values
// are an error naming both places, and so is a route in one file into
// the table another file gives the policy.
func TestPolicyConflicts(t *testing.T) {
	d := t.TempDir()
	a := writeFile(t, filepath.Join(d, "a.toml"), "[policy]\ntable = 100\nfwmark = 0x10\n", 0o600)
	b := writeFile(t, filepath.Join(d, "b.toml"), base+"\n[policy]\ntable = 200\nfwmark = 16\npriority = 5\n", 0o600)
	c := writeFile(t, filepath.Join(d, "c.toml"), "policy = { priority = 6 }\n", 0o600)
	_, err := Load([]string{a, b, c})
	want := b + `:7:1: policy: table: 200 here, but 100 at ` + a + `:2:1; the policy is one for the whole router: give each key once, or the same value in every file
` + c + `:1:1: policy: priority: 6 here, but 5 at ` + b + `:9:1; the policy is one for the whole router: give each key once, or the same value in every file`
	if err == nil || err.Error() != want {
		t.Errorf("error:\n got %v\nwant %s", err, want)
	}

	e := writeFile(t, filepath.Join(d, "e.toml"), base+"address = [\"10.0.0.1/30\"]\n[[tunnel.route]]\nto = \"10.1.0.0/16\"\ntable = 100\n", 0o600)
	_, err = Load([]string{a, e})
	want = e + `:8:1: tunnel "gre1" route #1: table: 100 is gre-hook's own table for the default routes of default_route tunnels ([policy] table, set at ` + a + `:2:1); use another`
	if err == nil || err.Error() != want {
		t.Errorf("error:\n got %v\nwant %s", err, want)
	}
}
