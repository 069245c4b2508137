package config

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// other is a user who is not trusted to write config.
const other = 1000

// testTrust trusts root and the user running the tests, so the tests of
// modes run without root too. The tests of ownership need root, to give
// files to another user.
func testTrust() trust { return trust{also: uint32(os.Geteuid())} }

// secureDir makes a directory for a test's config files, with every
// directory above it acceptable: t.TempDir() under /tmp, which is sticky.
func secureDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := testTrust().resolve(filepath.Join(d, "x")); err != nil && !os.IsNotExist(err) {
		t.Fatalf("the test directory itself is refused, so these tests cannot run here (is TMPDIR in a directory others can write?): %v", err)
	}
	return d
}

func mkdir(t *testing.T, path string, mode os.FileMode) string {
	t.Helper()
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func symlink(t *testing.T, target, path string) string {
	t.Helper()
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// giveAway makes path belong to another user, without following a
// symlink; without root that cannot be done, and the test is skipped.
func giveAway(t *testing.T, path string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("giving a file to another user needs root; the real-kernel tier runs this as root")
	}
	if err := os.Lchown(path, other, other); err != nil {
		t.Fatal(err)
	}
}

const suffix = " (tests: set GRE_HOOK_INSECURE_CONFIG=1)"

// TestTrust: every directory on the way to a config file, every symlink
// followed, the symlinks' targets, and the file as opened are checked,
// with a message naming what is wrong and how to fix it.
func TestTrust(t *testing.T) {
	for _, tc := range []struct {
		name string
		// setup makes files under d and returns the config path to read,
		// and the error wanted ("" to accept).
		setup func(t *testing.T, d string) (path, want string)
	}{
		{"file in good directories", func(t *testing.T, d string) (string, string) {
			return writeFile(t, filepath.Join(mkdir(t, filepath.Join(d, "etc"), 0o755), "c.toml"), base, 0o644), ""
		}},
		{"directory of files", func(t *testing.T, d string) (string, string) {
			c := mkdir(t, filepath.Join(d, "conf.d"), 0o755)
			writeFile(t, filepath.Join(c, "a.toml"), base, 0o600)
			return c, ""
		}},
		{"world-writable ancestor", func(t *testing.T, d string) (string, string) {
			ww := mkdir(t, filepath.Join(d, "ww"), 0o777)
			f := writeFile(t, filepath.Join(mkdir(t, filepath.Join(ww, "b"), 0o755), "c.toml"), base, 0o644)
			return f, "refusing config " + f + ": directory " + ww + " is writable by group or others (mode 0777); fix with: chmod go-w " + ww + suffix
		}},
		{"group-writable ancestor", func(t *testing.T, d string) (string, string) {
			gw := mkdir(t, filepath.Join(d, "gw"), 0o775)
			f := writeFile(t, filepath.Join(mkdir(t, filepath.Join(gw, "b"), 0o755), "c.toml"), base, 0o644)
			return f, "refusing config " + f + ": directory " + gw + " is writable by group or others (mode 0775); fix with: chmod go-w " + gw + suffix
		}},
		{"group-writable parent", func(t *testing.T, d string) (string, string) {
			gw := mkdir(t, filepath.Join(d, "gw"), 0o770)
			f := writeFile(t, filepath.Join(gw, "c.toml"), base, 0o644)
			return f, "refusing config " + f + ": directory " + gw + " is writable by group or others (mode 0770); fix with: chmod go-w " + gw + suffix
		}},
		{"ancestor owned by another user", func(t *testing.T, d string) (string, string) {
			u := mkdir(t, filepath.Join(d, "home"), 0o755)
			f := writeFile(t, filepath.Join(mkdir(t, filepath.Join(u, "b"), 0o755), "c.toml"), base, 0o644)
			giveAway(t, u)
			return f, "refusing config " + f + ": directory " + u + " is owned by uid 1000, not root; fix with: chown root: " + u + suffix
		}},
		{"group-writable file", func(t *testing.T, d string) (string, string) {
			f := writeFile(t, filepath.Join(d, "c.toml"), base, 0o664)
			return f, "refusing config " + f + ": it is writable by group or others (mode 0664); fix with: chmod go-w " + f + suffix
		}},
		{"file owned by another user", func(t *testing.T, d string) (string, string) {
			f := writeFile(t, filepath.Join(d, "c.toml"), base, 0o644)
			giveAway(t, f)
			return f, "refusing config " + f + ": it is owned by uid 1000, not root; fix with: chown root: " + f + suffix
		}},
		{"not a regular file", func(t *testing.T, d string) (string, string) {
			f := filepath.Join(d, "c.toml")
			if err := syscall.Mkfifo(f, 0o644); err != nil {
				t.Fatal(err)
			}
			return f, "refusing config " + f + ": it is not a regular file" + suffix
		}},
		// A sticky directory such as /tmp may be on the way: nobody else
		// can replace what is in it.
		{"sticky ancestor", func(t *testing.T, d string) (string, string) {
			s := mkdir(t, filepath.Join(d, "tmp"), os.ModeSticky|0o777)
			return writeFile(t, filepath.Join(mkdir(t, filepath.Join(s, "b"), 0o755), "c.toml"), base, 0o644), ""
		}},
		{"file in a sticky directory", func(t *testing.T, d string) (string, string) {
			s := mkdir(t, filepath.Join(d, "tmp"), os.ModeSticky|0o777)
			return writeFile(t, filepath.Join(s, "c.toml"), base, 0o644), ""
		}},
		{"another user's directory in a sticky one", func(t *testing.T, d string) (string, string) {
			s := mkdir(t, filepath.Join(d, "tmp"), os.ModeSticky|0o777)
			u := mkdir(t, filepath.Join(s, "mine"), 0o755)
			f := writeFile(t, filepath.Join(u, "c.toml"), base, 0o644)
			giveAway(t, u)
			return f, "refusing config " + f + ": directory " + u + " is owned by uid 1000, not root; fix with: chown root: " + u + suffix
		}},
		{"another user's file in a sticky directory", func(t *testing.T, d string) (string, string) {
			s := mkdir(t, filepath.Join(d, "tmp"), os.ModeSticky|0o777)
			f := writeFile(t, filepath.Join(s, "c.toml"), base, 0o644)
			giveAway(t, f)
			return f, "refusing config " + f + ": it is owned by uid 1000, not root; fix with: chown root: " + f + suffix
		}},
		// But not as the directory whose files are read: anyone could add
		// one.
		{"sticky config directory", func(t *testing.T, d string) (string, string) {
			s := mkdir(t, filepath.Join(d, "conf.d"), os.ModeSticky|0o777)
			writeFile(t, filepath.Join(s, "a.toml"), base, 0o644)
			return s, "refusing config " + s + ": it is writable by group or others (mode 1777), so others could add files to it, sticky bit or not; fix with: chmod go-w " + s + suffix
		}},
		{"symlink into another user's directory", func(t *testing.T, d string) (string, string) {
			evil := mkdir(t, filepath.Join(d, "evil"), 0o755)
			target := writeFile(t, filepath.Join(evil, "x.toml"), base, 0o644)
			c := mkdir(t, filepath.Join(d, "conf.d"), 0o755)
			symlink(t, target, filepath.Join(c, "x.toml"))
			giveAway(t, evil)
			return c, "refusing config " + filepath.Join(c, "x.toml") + ": directory " + evil + " is owned by uid 1000, not root; fix with: chown root: " + evil + suffix
		}},
		{"relative symlink through a world-writable directory", func(t *testing.T, d string) (string, string) {
			ww := mkdir(t, filepath.Join(d, "ww"), 0o777)
			writeFile(t, filepath.Join(ww, "x.toml"), base, 0o644)
			c := mkdir(t, filepath.Join(d, "conf.d"), 0o755)
			l := symlink(t, "../ww/x.toml", filepath.Join(c, "x.toml"))
			return l, "refusing config " + l + ": directory " + ww + " is writable by group or others (mode 0777); fix with: chmod go-w " + ww + suffix
		}},
		{"symlink owned by another user", func(t *testing.T, d string) (string, string) {
			good := writeFile(t, filepath.Join(d, "good.toml"), base, 0o644)
			c := mkdir(t, filepath.Join(d, "conf.d"), 0o755)
			l := symlink(t, good, filepath.Join(c, "y.toml"))
			giveAway(t, l)
			return c, "refusing config " + l + ": symlink " + l + " is owned by uid 1000, not root; fix with: chown -h root: " + l + suffix
		}},
		{"symlink to a writable file", func(t *testing.T, d string) (string, string) {
			target := writeFile(t, filepath.Join(mkdir(t, filepath.Join(d, "t"), 0o755), "x.toml"), base, 0o666)
			l := symlink(t, target, filepath.Join(d, "c.toml"))
			return l, "refusing config " + l + ": its target " + target + " is writable by group or others (mode 0666); fix with: chmod go-w " + target + suffix
		}},
		{"symlinked directory on the way", func(t *testing.T, d string) (string, string) {
			ww := mkdir(t, filepath.Join(d, "ww"), 0o777)
			writeFile(t, filepath.Join(mkdir(t, filepath.Join(ww, "b"), 0o755), "c.toml"), base, 0o644)
			l := symlink(t, filepath.Join(ww, "b"), filepath.Join(d, "alias"))
			f := filepath.Join(l, "c.toml")
			return f, "refusing config " + f + ": directory " + ww + " is writable by group or others (mode 0777); fix with: chmod go-w " + ww + suffix
		}},
		{"good symlinks, relative and absolute", func(t *testing.T, d string) (string, string) {
			shared := mkdir(t, filepath.Join(d, "shared"), 0o755)
			writeFile(t, filepath.Join(shared, "x.toml"), base, 0o644)
			target := writeFile(t, filepath.Join(shared, "y.toml"), strings.Replace(base, "gre1", "gre2", 1)+"key = 2\n", 0o644)
			c := mkdir(t, filepath.Join(d, "conf.d"), 0o755)
			symlink(t, "../shared/x.toml", filepath.Join(c, "a.toml"))
			symlink(t, target, filepath.Join(d, "abs.toml"))
			symlink(t, "../abs.toml", filepath.Join(c, "b.toml"))
			return c, ""
		}},
		{"symlink loop", func(t *testing.T, d string) (string, string) {
			a := filepath.Join(d, "a.toml")
			symlink(t, "b.toml", a)
			symlink(t, "a.toml", filepath.Join(d, "b.toml"))
			return a, "reading config: open " + a + ": too many levels of symbolic links"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := secureDir(t)
			path, want := tc.setup(t, d)
			done := make(chan struct{})
			var err error
			go func() {
				defer close(done)
				_, err = read(path, testTrust().open)
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("reading the config hangs")
			}
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != want {
				t.Errorf("read(%s):\n got %s\nwant %s", path, got, want)
			}
			if _, ok := err.(Errors); err != nil && !ok {
				t.Errorf("error is a %T, not Errors (exit status 2)", err)
			}
		})
	}
}

// TestTrustChecksWhatItReads: the checks are made on the descriptor the
// file is read from, so a file swapped in after the path was checked is
// refused, and its contents never parsed.
func TestTrustChecksWhatItReads(t *testing.T) {
	d := secureDir(t)
	f := writeFile(t, filepath.Join(d, "c.toml"), base, 0o644)
	swapped := writeFile(t, filepath.Join(d, "swapped"), strings.Replace(base, "gre1", "swapped", 1), 0o666)
	testHookOpen = func(real string) {
		if err := os.Rename(swapped, real); err != nil {
			t.Error(err)
		}
	}
	defer func() { testHookOpen = nil }()
	cfg, err := read(f, testTrust().open)
	want := "refusing config " + f + ": it is writable by group or others (mode 0666); fix with: chmod go-w " + f + suffix
	if err == nil || err.Error() != want {
		t.Errorf("file swapped after the check:\n got %v, %v\nwant %s", cfg, err, want)
	}
}

// TestInsecureReadsAnything: GRE_HOOK_INSECURE_CONFIG reads what the
// checks refuse.
func TestInsecureReadsAnything(t *testing.T) {
	d := secureDir(t)
	ww := mkdir(t, filepath.Join(d, "ww"), 0o777)
	f := writeFile(t, filepath.Join(ww, "c.toml"), base, 0o666)
	if _, err := Read(f, false); err == nil {
		t.Error("a world-writable file in a world-writable directory was accepted")
	}
	cfg, err := Read(f, true)
	if err != nil || len(cfg.Tunnels) != 1 {
		t.Errorf("insecure read: %v, %v", cfg, err)
	}
}

// The state directory is held to the config's rules, and says it is the
// state directory that is refused.
func TestTrustedDir(t *testing.T) {
	base := t.TempDir()
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	err := TrustedDir(filepath.Join(open, "run"), "state directory")
	if err == nil || !strings.Contains(err.Error(), "refusing state directory") {
		t.Errorf("a missing directory under a world-writable one: %v", err)
	}
	if os.Geteuid() != 0 {
		return // the rest needs directories root owns
	}
	if err := TrustedDir(filepath.Join(base, "run", "gre-hook"), "state directory"); err != nil {
		t.Errorf("a missing directory under a private one of root's: %v", err)
	}
	if err := TrustedDir(base, "state directory"); err != nil {
		t.Errorf("a private directory of root's: %v", err)
	}
	if err := os.Chmod(open, 0o1777); err != nil {
		t.Fatal(err)
	}
	if err := TrustedDir(open, "state directory"); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("a sticky world-writable state directory: %v", err)
	}
}
