package cli

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mainWithin runs Main and fails the test, rather than hang it, if Main
// does not return within d.
func mainWithin(t *testing.T, d time.Duration, args []string, env func(string) string) (int, string) {
	t.Helper()
	type result struct {
		code   int
		stderr string
	}
	done := make(chan result, 1)
	go func() {
		var stderr strings.Builder
		code := Main(args, env, io.Discard, &stderr, "t")
		done <- result{code, stderr.String()}
	}()
	select {
	case r := <-done:
		return r.code, r.stderr
	case <-time.After(d):
		t.Fatalf("gre-hook %q did not return within %v", args, d)
		return 0, ""
	}
}

// A FIFO as the config, or among a directory's files, is refused at
// once, even when the config is read unchecked.
func TestFIFOConfigDoesNotHang(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "gre-hook.toml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	insecure := "gre-hook: warning: GRE_HOOK_INSECURE_CONFIG=1: the config is read without checking who owns it or can write it; this is for tests only\n"
	for _, path := range []string{fifo, dir} {
		code, stderr := mainWithin(t, 5*time.Second, []string{"check", "--config", path}, envOf("GRE_HOOK_INSECURE_CONFIG", "1"))
		want := insecure + "gre-hook: reading config: " + fifo + " is not a regular file (a named pipe)\n"
		if code != ExitUsage || stderr != want {
			t.Errorf("check --config %s: exit %d, stderr:\n%s\nwant exit %d and:\n%s", path, code, stderr, ExitUsage, want)
		}
	}
}

// A relative state directory is refused: it would put records and the
// lock wherever gre-hook happens to be run from.
func TestRelativeStateDirRefused(t *testing.T) {
	var stderr strings.Builder
	code := Main([]string{"--iface", "eth1", "--phase", "up", "--dry-run"}, envOf("GRE_HOOK_STATE_DIR", "run/gre-hook"), io.Discard, &stderr, "t")
	want := "gre-hook: usage: GRE_HOOK_STATE_DIR=\"run/gre-hook\" is not an absolute path; records and the lock would land in whatever directory gre-hook is run from\n"
	if code != ExitUsage || stderr.String() != want {
		t.Errorf("exit %d, stderr %q; want %d, %q", code, stderr.String(), ExitUsage, want)
	}
}

// --config naming a directory without config files is named in what
// gre-hook says: up warns (it must not fail an ifup), gc refuses (with
// no config, everything of gre-hook's would go).
func TestEmptyConfigDirNamed(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "conf.d")
	os.Mkdir(empty, 0o755)
	env := envOf("GRE_HOOK_INSECURE_CONFIG", "1", "GRE_HOOK_STATE_DIR", filepath.Join(dir, "run"))
	insecure := "gre-hook: warning: GRE_HOOK_INSECURE_CONFIG=1: the config is read without checking who owns it or can write it; this is for tests only\n"
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"up", "--iface", "eth9", "--config", empty}, ExitOK,
			"gre-hook: warning: no config files: directory " + empty + " holds no *.toml files, so there are no tunnels\n"},
		{[]string{"gc", "--config", empty}, ExitUsage,
			"gre-hook: gc: refusing to run: no config files: directory " + empty + " holds no *.toml files, and gc would remove every tunnel of gre-hook's\n"},
	} {
		var stderr strings.Builder
		code := Main(tc.args, env, io.Discard, &stderr, "t")
		if code != tc.code || stderr.String() != insecure+tc.want {
			t.Errorf("%q: exit %d, stderr:\n%s\nwant exit %d and:\n%s%s", tc.args, code, stderr.String(), tc.code, insecure, tc.want)
		}
	}
}

// A run that cannot tell its network namespace says which state
// directory it falls back to.
func TestStateDirFallbackSaid(t *testing.T) {
	old := netnsDir
	netnsDir = func(base string) (string, error) {
		return base, errors.New("cannot tell which network namespace this is (readlink /proc/1/ns/net: permission denied), so it is taken for the host's")
	}
	t.Cleanup(func() { netnsDir = old })
	cfg := filepath.Join(t.TempDir(), "gre-hook.toml")
	os.WriteFile(cfg, []byte(oneTunnel), 0o644)
	var stderr strings.Builder
	code := Main([]string{"up", "--iface", "eth9", "--config", cfg}, envOf("GRE_HOOK_INSECURE_CONFIG", "1"), io.Discard, &stderr, "t")
	want := "gre-hook: warning: GRE_HOOK_INSECURE_CONFIG=1: the config is read without checking who owns it or can write it; this is for tests only\n" +
		"gre-hook: warning: cannot tell which network namespace this is (readlink /proc/1/ns/net: permission denied), so it is taken for the host's: records and the lock are in /run/gre-hook\n"
	if code != ExitOK || stderr.String() != want {
		t.Errorf("exit %d, stderr:\n%s\nwant:\n%s", code, stderr.String(), want)
	}
}
