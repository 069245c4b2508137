package state

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gre-hook/gre-hook/hook/plan"
)

func sample() *Record {
	pin := Route{Dst: netip.MustParsePrefix("203.0.113.5/32"), Gw: netip.MustParseAddr("198.51.100.254"), Dev: "eth1"}
	return &Record{Version: Version, Underlay: "eth1", Tunnels: []Tunnel{
		{Name: "gre-vpn", Pin: &pin,
			Defaults: []Route{{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("10.9.0.1"), Dev: "gre-vpn"}},
			Replaced: []Route{{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("198.51.100.254"), Dev: "eth1", Metric: 100, Protocol: 16}},
			MSS:      []int{4, 6}, Down: []string{"/bin/echo", "a b"}},
		{Name: "gre2"},
	}}
}

func TestSaveLoad(t *testing.T) {
	s := Store{Dir: filepath.Join(t.TempDir(), "run")}
	if r, err := s.Load("eth1"); r != nil || err != nil {
		t.Fatalf("missing record: %v %v", r, err)
	}
	if s.Exists("eth1") {
		t.Fatal("Exists before Save")
	}
	want := sample()
	if err := s.Save(want); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load("eth1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
	}
	if !s.Exists("eth1") || !reflect.DeepEqual(got.Families(), map[int]bool{4: true, 6: true}) || got.Find("gre2") == nil || got.Find("nope") != nil {
		t.Error("Exists, Families or Find wrong")
	}
	// Atomic: no temporary files left, and the record replaced whole.
	want.Tunnels = want.Tunnels[1:]
	if err := s.Save(want); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(s.Dir)
	if len(entries) != 1 || entries[0].Name() != "eth1.json" {
		t.Errorf("directory after saves: %v", entries)
	}
	all, broken, err := s.All()
	if err != nil || len(broken) > 0 || len(all) != 1 || len(all["eth1"].Tunnels) != 1 {
		t.Errorf("All = %v %v %v", all, broken, err)
	}
	// An empty record is removed.
	if err := s.Save(&Record{Underlay: "eth1"}); err != nil || s.Exists("eth1") {
		t.Errorf("empty record saved: %v", err)
	}
	if err := s.Remove("eth1"); err != nil {
		t.Errorf("Remove of a missing record: %v", err)
	}
}

func TestLoadWrongUnderlay(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	os.WriteFile(filepath.Join(s.Dir, "eth1.json"), []byte(`{"version":1,"underlay":"eth2","tunnels":[]}`), 0o600)
	if _, err := s.Load("eth1"); err == nil || !strings.Contains(err.Error(), `is for underlay "eth2"`) {
		t.Errorf("got %v", err)
	}
	if _, err := s.Load("../etc/passwd"); err == nil {
		t.Error("path in an underlay name accepted")
	}
	os.WriteFile(filepath.Join(s.Dir, "eth3.json"), []byte(`{`), 0o600)
	recs, broken, err := s.All()
	if err != nil || len(recs) != 0 || len(broken) != 2 || broken["eth1"] == nil || broken["eth3"] == nil {
		t.Errorf("All should report both bad records by underlay, got %v %v %v", recs, broken, err)
	}
	// The error names the file and the way out.
	var ue *UnreadableError
	if _, err := s.Load("eth3"); !errors.As(err, &ue) || !strings.Contains(err.Error(), filepath.Join(s.Dir, "eth3.json")+".bad") ||
		!strings.Contains(err.Error(), "gre-hook --iface eth3 --phase down") {
		t.Errorf("Load of a corrupt record: %v", err)
	}
}

// A record written by a newer gre-hook, with fields this one does not
// know, is read for what it knows: a downgrade must not strand tunnels.
func TestParseNewerVersion(t *testing.T) {
	r, err := Parse([]byte(`{"version":2,"underlay":"eth1","future":{"a":1},"source":"/etc/x.toml","tunnels":[{"name":"gre1","liveness":"dead","default_seq":7,` +
		`"replaced":[{"dst":"0.0.0.0/0","gw":"198.51.100.254","dev":"eth1","protocol":4}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.Source != "/etc/x.toml" || len(r.Tunnels) != 1 || r.Tunnels[0].Seq != 7 || len(r.Tunnels[0].Replaced) != 1 || r.Tunnels[0].Replaced[0].Protocol != 4 {
		t.Errorf("parsed %+v", r)
	}
}

// The policy a record was written under round-trips; a record without
// one (written before it could be configured) had the fixed values.
func TestRecordPolicy(t *testing.T) {
	r, err := Parse([]byte(`{"version":1,"underlay":"eth1","policy":{"table":100,"priority":1000,"fwmark":16},"tunnels":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := (plan.Policy{Table: 100, Priority: 1000, Mark: 16}); r.Applied() != want {
		t.Errorf("Applied() = %+v, want %+v", r.Applied(), want)
	}
	old, err := Parse([]byte(`{"version":1,"underlay":"eth1","tunnels":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	var none *Record
	if old.Applied() != plan.DefaultPolicy || none.Applied() != plan.DefaultPolicy {
		t.Errorf("a record without a policy: %+v", old.Applied())
	}
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{`{`, "corrupt: unexpected EOF"},
		{`{"version":1,"underlay":"eth1","tunnels":[]} {}`, "corrupt: trailing data"},
		{`{"version":0,"underlay":"eth1","tunnels":[]}`, "corrupt: format version 0"},
		{`{"underlay":"eth1","tunnels":[]}`, "corrupt: format version 0"},
		{`{"version":1,"underlay":"eth1","source":"etc/x.toml","tunnels":[]}`, `source "etc/x.toml" is neither "default" nor an absolute path`},
		{`{"version":1,"underlay":"","tunnels":[]}`, "underlay: must not be empty"},
		{`{"version":1,"underlay":"eth1","tunnels":[{"name":"a/b"}]}`, `tunnel name: "a/b" contains '/', which Linux forbids in interface names`},
		{`{"version":1,"underlay":"eth1","tunnels":[{"name":"averyveryverylongname"}]}`, `tunnel name: "averyveryverylongname" is 21 bytes; Linux allows at most 15`},
		{`{"version":1,"underlay":"eth1","tunnels":[{"name":"a"},{"name":"a"}]}`, `tunnel "a" listed twice`},
		{`{"version":1,"underlay":"eth1","tunnels":[{"name":"a","mss":[5]}]}`, `tunnel "a": mss family 5 is not 4 or 6`},
		{`{"version":1,"underlay":"eth1","tunnels":[{"name":"a","defaults":[{"dst":"0.0.0.0/0","gw":"fd00::1"}]}]}`, `tunnel "a": route 0.0.0.0/0 via fd00::1 mixes address families`},
		{`{"version":1,"underlay":"eth1","tunnels":[{"name":"a","pin":{"dst":"1.2.3.4/32","protocol":300}}]}`, `tunnel "a": route 1.2.3.4/32: table, metric or protocol out of range`},
		{`{"version":1,"underlay":"eth1","tunnels":[{"name":"a","pin":{"dst":"1.2.3.4/32","dev":"x y"}}]}`, `tunnel "a": route 1.2.3.4/32: bad device name`},
		{`{"version":1,"underlay":"eth1","tunnels":[{"name":"a","pin":{"dst":"bogus"}}]}`, `corrupt: netip.ParsePrefix("bogus"): no '/'`},
		{`{"version":1,"underlay":"eth1","tunnels":[{"name":"a","down_command":["rm","-rf","/"]}]}`, `tunnel "a": down_command: "rm" must be an absolute path: the command runs without a shell and without PATH lookup`},
		{`{"version":1,"underlay":"eth1","policy":{"table":254,"priority":32700,"fwmark":1},"tunnels":[]}`, `policy table 254, rules at priorities 32700 and 32701, fwmark 0x1 is not one gre-hook applies`},
		{`{"version":1,"underlay":"eth1","policy":{"table":100,"priority":32765,"fwmark":1},"tunnels":[]}`, `policy table 100, rules at priorities 32765 and 32766, fwmark 0x1 is not one gre-hook applies`},
		{`{"version":1,"underlay":"eth1","policy":{"table":100,"priority":1,"fwmark":0},"tunnels":[]}`, `policy table 100, rules at priorities 1 and 2, fwmark 0x0 is not one gre-hook applies`},
	} {
		_, err := Parse([]byte(tc.text))
		if err == nil || err.Error() != tc.want {
			t.Errorf("Parse(%s):\n got %v\nwant %s", tc.text, err, tc.want)
		}
	}
}

func TestLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	unlock, err := Lock(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	wait := 100 * time.Millisecond
	start := time.Now()
	_, err = Lock(dir, wait)
	took := time.Since(start)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Lock: %v, want ErrLocked", err)
	}
	if took < wait || took > 10*wait+5*time.Second {
		t.Errorf("second Lock gave up after %s with a wait of %s", took, wait)
	}
	unlock()
	unlock2, err := Lock(dir, wait)
	if err != nil {
		t.Fatalf("Lock after unlock: %v", err)
	}
	unlock2()
}

// A secure store reads a record only if root owns it and nobody else can
// write it, from the descriptor it checked, and never through a symlink.
func TestSecureStoreRefusesUntrustedRecords(t *testing.T) {
	dir := t.TempDir()
	s := Store{Dir: dir, Secure: true}
	good := `{"version":1,"underlay":"eth1","tunnels":[{"name":"gre1"}]}`
	write := func(name, text string, mode os.FileMode) string {
		p := filepath.Join(dir, name+".json")
		os.Remove(p)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("eth1", good, 0o600)
	if os.Geteuid() == 0 {
		if r, err := s.Load("eth1"); err != nil || r == nil {
			t.Fatalf("a root-owned 0600 record: %v", err)
		}
	}
	cases := map[string]func() string{
		"writable by others": func() string { write("eth1", good, 0o666); return "writable by group or others" },
		"a symlink": func() string {
			other := write("eth9", strings.ReplaceAll(good, "eth1", "eth9"), 0o600)
			os.Remove(filepath.Join(dir, "eth1.json"))
			if err := os.Symlink(other, filepath.Join(dir, "eth1.json")); err != nil {
				t.Fatal(err)
			}
			return "is a symlink"
		},
	}
	if os.Geteuid() == 0 {
		cases["owned by another user"] = func() string {
			p := write("eth1", good, 0o600)
			if err := os.Chown(p, 1000, 1000); err != nil {
				t.Fatal(err)
			}
			return "owned by uid 1000, not root"
		}
	}
	for name, setup := range cases {
		want := setup()
		_, err := s.Load("eth1")
		var ue *UnreadableError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an UnreadableError saying %q", name, err, want)
		}
		// The same file is read by an insecure store, as before.
		if name == "writable by others" {
			if _, err := (Store{Dir: dir}).Load("eth1"); err != nil {
				t.Errorf("insecure store: %v", err)
			}
		}
	}
}

func TestLivenessFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	if got, err := ReadLiveness(dir); got != nil || err != nil {
		t.Fatalf("no file: %v %v", got, err)
	}
	reply := time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.UTC)
	want := []LivenessEntry{
		{Underlay: "eth1", Tunnel: "gre-a", Remote: netip.MustParseAddr("203.0.113.5"), Alive: true, LastReply: reply},
		{Underlay: "eth2", Tunnel: "gre-b", Remote: netip.MustParseAddr("192.0.2.9"), DeadSince: reply.Add(time.Second)},
	}
	if err := WriteLiveness(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadLiveness(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if !got[i].LastReply.Equal(want[i].LastReply) || !got[i].DeadSince.Equal(want[i].DeadSince) {
			t.Errorf("entry %d times: got %v %v, want %v %v", i, got[i].LastReply, got[i].DeadSince, want[i].LastReply, want[i].DeadSince)
		}
		got[i].LastReply, got[i].DeadSince = want[i].LastReply, want[i].DeadSince
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	data, _ := os.ReadFile(filepath.Join(dir, LivenessFile))
	if !strings.Contains(string(data), `"last_reply": "2024-05-01T12:00:00.123456789Z"`) || strings.Count(string(data), "dead_since") != 1 {
		t.Errorf("file format:\n%s", data)
	}
	// The file sits beside the records and is not one of them.
	s := Store{Dir: dir}
	recs, broken, err := s.All()
	if err != nil || len(recs) != 0 || len(broken) != 0 {
		t.Errorf("All with a liveness file: %v %v %v", recs, broken, err)
	}
}

func TestDeadTunnelRoundTrip(t *testing.T) {
	s := Store{Dir: filepath.Join(t.TempDir(), "run")}
	r := sample()
	since := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	r.Tunnels[0].Dead = true
	r.Tunnels[0].DeadSince = &since
	r.Tunnels[0].Withdrawn = r.Tunnels[0].Defaults
	r.Tunnels[0].Fallbacks = r.Tunnels[0].Replaced
	if err := s.Save(r); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load("eth1")
	if err != nil {
		t.Fatal(err)
	}
	if g := got.Tunnels[0]; !g.Dead || !g.DeadSince.Equal(since) || !reflect.DeepEqual(g.Withdrawn, r.Tunnels[0].Withdrawn) || !reflect.DeepEqual(g.Fallbacks, r.Tunnels[0].Fallbacks) {
		t.Fatalf("got %+v", g)
	}
	// A record of this version read by one that knows no liveness: the
	// fields are extra, and an older reader ignores them as this one
	// ignores unknown fields.
	if _, err := Parse([]byte(`{"version":1,"underlay":"eth1","tunnels":[{"name":"gre1","dead":true,"some_future_field":3}]}`)); err != nil {
		t.Fatal(err)
	}
}
