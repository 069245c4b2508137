//go:build realkernel

package realkernel

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPackage installs the .deb named by GRE_HOOK_DEB into the VM's
// throwaway root, runs the two-site scenario driven only by the package's
// if-up.d and if-down.d hooks (no post-up or pre-down lines) with the site
// configs in /etc/gre-hook/conf.d, and removes the package. scripts/test
// runs it in a VM of its own, since it changes the root filesystem.
func TestPackage(t *testing.T) {
	deb := os.Getenv("GRE_HOOK_DEB")
	if deb == "" {
		t.Fatal("GRE_HOOK_DEB must name the .deb to install (scripts/test sets it)")
	}
	// man-db's trigger rebuilds its whole index, minutes under emulation;
	// this root is thrown away, so skip it as its own switch allows.
	os.Remove("/var/lib/man-db/auto-update")
	// A daemon test that ran first in this root (run on its own, say)
	// left the package installed: the install below is onto a root
	// without it.
	if dpkgInstalled("gre-hook") {
		if out, err := exec.Command("dpkg", "--purge", "gre-hook").CombinedOutput(); err != nil {
			t.Fatalf("dpkg --purge of the package the daemon tests left: %v\n%s", err, out)
		}
	}
	if out, err := exec.Command("dpkg", "-i", deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg -i: %v\n%s", err, out)
	}
	for _, p := range []string{"/usr/sbin/gre-hook", "/etc/gre-hook/gre-hook.toml", "/etc/gre-hook/conf.d", "/etc/modules-load.d/gre-hook.conf"} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("package did not install %s: %v", p, err)
		}
	}
	for _, l := range []string{"/etc/network/if-up.d/gre-hook", "/etc/network/if-down.d/gre-hook"} {
		if dst, err := os.Readlink(l); err != nil || dst != "/usr/sbin/gre-hook" {
			t.Errorf("%s -> %q (%v), want /usr/sbin/gre-hook", l, dst, err)
		}
	}
	if out, _ := exec.Command("/usr/sbin/gre-hook", "check", "-v").CombinedOutput(); !strings.Contains(string(out), "0 tunnel(s)") {
		t.Errorf("the shipped conffile is not empty of tunnels: %s", out)
	}
	for _, m := range []string{"/usr/share/man/man8/gre-hook.8.gz", "/usr/share/man/man5/gre-hook.toml.5.gz"} {
		if _, err := os.Stat(m); err != nil {
			t.Errorf("man page not installed: %v", err)
		}
	}

	checkUnitInstalled(t)

	root := repoRoot(t)
	// Both routers share this filesystem; `ip netns exec` mounts
	// /etc/netns/NAME/gre-hook over /etc/gre-hook, so each router sees its
	// own site's file in /etc/gre-hook/conf.d.
	s := newTwoSites(t, "", "", false)
	for router, site := range map[*netns]string{s.r1: "site1.toml", s.r2: "site2.toml"} {
		dir := filepath.Join("/etc/netns", router.name, "gre-hook", "conf.d")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(root, "configs", site))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, site), data, 0o644); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(filepath.Dir(dir), "gre-hook.toml"), []byte("# empty\n"), 0o644)
	}
	t.Run("two sites through the package's hooks", func(t *testing.T) {
		s.up()
		if _, ok := s.r1.link("gre-site2"); !ok {
			t.Fatal("if-up.d hook did not bring gre-site2 up")
		}
		s.checkTraffic(t)
		s.down()
		s.checkClean(t)
	})
	// Without the package's /etc/gre-hook, ip netns exec could not bind
	// these over it.
	os.RemoveAll(filepath.Join("/etc/netns", s.r1.name))
	os.RemoveAll(filepath.Join("/etc/netns", s.r2.name))

	// Remove, then purge, as an admin would: the maintainer scripts run
	// here with no systemd and must not fail for it.
	if out, err := exec.Command("dpkg", "--remove", "gre-hook").CombinedOutput(); err != nil {
		t.Fatalf("dpkg --remove: %v\n%s", err, out)
	}
	for _, p := range unitDirs {
		if _, err := os.Lstat(filepath.Join(p, watchUnit)); err == nil {
			t.Errorf("%s is still there after remove", filepath.Join(p, watchUnit))
		}
	}
	if out, err := exec.Command("dpkg", "--purge", "gre-hook").CombinedOutput(); err != nil {
		t.Fatalf("dpkg --purge: %v\n%s", err, out)
	}
	for _, p := range append([]string{"/usr/sbin/gre-hook", "/etc/gre-hook", "/etc/network/if-up.d/gre-hook", "/etc/network/if-down.d/gre-hook", "/etc/modules-load.d/gre-hook.conf",
		unitWants, "/etc/systemd/system/" + watchUnit}, dispatcherLinks...) {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s is still there after purge", p)
		}
	}
	s.r1.assertClean()
	s.r2.assertClean()
}

// The systemd unit that runs gre-hook watch, where systemd looks for
// units that packages ship (on a merged-/usr system /lib is /usr/lib), and
// the link that enables it at boot.
const (
	watchUnit = "gre-hook-watch.service"
	unitWants = "/etc/systemd/system/multi-user.target.wants/" + watchUnit
)

var unitDirs = []string{"/lib/systemd/system", "/usr/lib/systemd/system"}

// checkUnitInstalled checks, after dpkg -i, that the package put the
// watcher's unit where systemd looks and enabled it as deb-systemd-helper
// does even where systemd is not running (this VM), so that the first
// boot under systemd starts the watcher with no manual step.
func checkUnitInstalled(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		t.Log("systemd runs here: the install was not the no-systemd case")
	}
	out, err := exec.Command("dpkg", "-L", "gre-hook").Output()
	if err != nil {
		t.Fatalf("dpkg -L gre-hook: %v", err)
	}
	var unit string
	for _, f := range strings.Fields(string(out)) {
		if filepath.Base(f) == watchUnit {
			unit = f
		}
	}
	if dir := filepath.Dir(unit); unit == "" || (dir != unitDirs[0] && dir != unitDirs[1]) {
		t.Fatalf("the package ships %s as %q, not in %v:\n%s", watchUnit, unit, unitDirs, out)
	}
	data, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"ExecStart=/usr/sbin/gre-hook watch", "Restart=on-failure", "WantedBy=multi-user.target"} {
		if !strings.Contains(string(data), "\n"+line+"\n") {
			t.Errorf("%s has no line %q:\n%s", unit, line, data)
		}
	}
	// Enabled: multi-user.target wants it.
	if dst, err := os.Readlink(unitWants); err != nil || filepath.Base(dst) != watchUnit {
		t.Errorf("%s -> %q (%v): the package did not enable the unit", unitWants, dst, err)
	} else if _, err := os.Stat(unitWants); err != nil {
		t.Errorf("%s -> %s, which does not resolve: %v", unitWants, dst, err)
	}
	t.Logf("unit %s, enabled through %s", unit, unitWants)
}
