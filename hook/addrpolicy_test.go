package hook

import (
	"net/netip"
	"strings"
	"testing"
)

// A name that resolves only to addresses no tunnel may use leaves its
// tunnel unresolved, in one line that names the name and what was
// refused; a dry run says the same, and an address that is fine among
// refused ones is taken.
func TestRemoteNameRefusedAnswers(t *testing.T) {
	for _, c := range []struct {
		name    string
		answers []string
		want    string // the warning, or the remote taken
	}{
		{"ad-blocker", []string{"0.0.0.0"}, `remote site2.test resolves to no address a tunnel can use (0.0.0.0 is the unspecified address: a tunnel with it takes GRE from, or sends it to, any address)`},
		{"loopback", []string{"127.0.0.1", "::1"}, `remote site2.test resolves to no address a tunnel can use (127.0.0.1 is a loopback address, this host itself)`},
		{"own address", []string{"198.51.100.1"}, `remote site2.test resolves to no address a tunnel can use (198.51.100.1 is an address of this router)`},
		{"multicast and broadcast", []string{"224.0.0.5", "255.255.255.255"}, `remote site2.test resolves to no address a tunnel can use (224.0.0.5 is a multicast address; 255.255.255.255 is the limited broadcast address)`},
		{"one good among bad", []string{"0.0.0.0", "127.0.0.1", "203.0.113.1"}, "203.0.113.1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, dry := range []bool{true, false} {
				e := newEnv(t)
				e.names(map[string][]string{"site2.test": c.answers, "site3.test": {"203.0.113.3"}})
				e.write(namedConfig)
				req := e.req(PhaseUp)
				req.DryRun = dry
				e.log.Reset()
				err := run(req, e.sys)
				out := e.log.String()
				if err != nil {
					t.Fatalf("dry %v: %v\n%s", dry, err, out)
				}
				if !strings.Contains(c.want, " ") {
					if !strings.Contains(out, "ip tunnel add gre-site2 mode gre remote "+c.want+" ") {
						t.Errorf("dry %v: log lacks remote %s:\n%s", dry, c.want, out)
					}
					continue
				}
				want := `gre-hook: warning: tunnel "gre-site2": ` + c.want + ": the tunnel is not brought up now."
				if strings.Count(out, "site2.test") != 1 || !strings.Contains(out, want) {
					t.Errorf("dry %v: log lacks, once,\n%s\ngot:\n%s", dry, want, out)
				}
				if strings.Contains(e.dump(), "gre-site2") {
					t.Errorf("dry %v: gre-site2 exists:\n%s", dry, e.dump())
				}
			}
		})
	}
}

// Retarget, the watcher's move, refuses what up refuses.
func TestRetargetRefusesUnusableAddresses(t *testing.T) {
	e := newEnv(t)
	e.names(map[string][]string{"site2.test": {"203.0.113.1"}, "site3.test": {"203.0.113.3"}})
	e.write(namedConfig)
	e.mustRun(PhaseUp)
	dump, rec := e.dump(), e.record()
	for _, c := range []struct{ local, remote, want string }{
		{"", "0.0.0.0", "remote 0.0.0.0 is the unspecified address"},
		{"", "127.0.0.1", "remote 127.0.0.1 is a loopback address"},
		{"", "198.51.100.1", "remote 198.51.100.1 is an address of this router"},
		{"0.0.0.0", "", "local 0.0.0.0 is the unspecified address"},
		{"224.0.0.1", "", "local 224.0.0.1 is a multicast address"},
	} {
		var l, r netip.Addr
		if c.local != "" {
			l = netip.MustParseAddr(c.local)
		}
		if c.remote != "" {
			r = netip.MustParseAddr(c.remote)
		}
		err := engineTo(e.sys, nil).Retarget(bg(), "eth1", "gre-site2", l, r)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Retarget(%s, %s): %v, want %q", c.local, c.remote, err, c.want)
		}
	}
	diff(t, "kernel after refused moves", e.dump(), dump)
	diff(t, "record after refused moves", e.record(), rec)
}

// remote = "localhost" is refused before anything is looked up, by up and
// a dry run alike (and check, which reads the config the same way).
func TestRemoteLocalhostRefused(t *testing.T) {
	for _, dry := range []bool{false, true} {
		e := newEnv(t)
		e.names(map[string][]string{"localhost": {"127.0.0.1"}})
		e.write("[[tunnel]]\nname = \"gre-x\"\nunderlay = \"eth1\"\nremote = \"localhost\"\n")
		req := e.req(PhaseUp)
		req.DryRun = dry
		err := run(req, e.sys)
		want := `tunnel "gre-x": remote: "localhost" always names this host itself, a loopback address (RFC 6761), which cannot be a tunnel's remote`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("dry %v: %v, want %s", dry, err, want)
		}
		diff(t, "kernel", e.dump(), baseline)
	}
}
