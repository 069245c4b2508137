package hook

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// forker is a command that starts a sleeper in the background, writes its
// PID to the file named by $1 and waits for it: the shape of a command
// that outlives its time because of something it started.
const forker = `/bin/sleep 300 & echo $! > "$1"; wait`

// limit is the time limit of the tests' commands: long enough for a
// shell to start its sleeper on a busy machine.
const limit = time.Second

// runForker runs script through CommandRunner r with ctx and returns the
// error and the sleeper's PID. The sleeper is killed when the test ends,
// whatever happened. running, if not nil, is called once the sleeper's
// PID has been written.
func runForker(t *testing.T, ctx context.Context, r CommandRunner, script string, running func()) (pid int, err error) {
	t.Helper()
	dir := t.TempDir()
	pidfile := filepath.Join(dir, "pid")
	if running != nil {
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for {
				if data, err := os.ReadFile(pidfile); err == nil && strings.HasSuffix(string(data), "\n") {
					running()
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
		}()
	}
	if r.Out == nil {
		// A file, not a buffer: a pipe would keep Run waiting for as long
		// as the sleeper holds it.
		out, err := os.Create(filepath.Join(dir, "out"))
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		r.Out = out
	}
	err = r.Run(ctx, []string{"/bin/sh", "-c", script, "sh", pidfile}, []string{"PATH=/usr/bin:/bin"})
	data, rerr := os.ReadFile(pidfile)
	if rerr != nil {
		t.Fatalf("the command wrote no PID: %v (run: %v)", rerr, err)
	}
	pid, perr := strconv.Atoi(strings.TrimSpace(string(data)))
	if perr != nil || pid <= 1 {
		t.Fatalf("PID file holds %q", data)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	return pid, err
}

// alive reports whether pid is a live process. A zombie is dead: it only
// waits for its new parent, init, to reap it.
func alive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// assertGone waits up to two seconds for pid to die: a SIGKILL is sent,
// but its delivery is not synchronous.
func assertGone(t *testing.T, pid int, what string) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if !alive(pid) {
			return
		}
	}
	t.Errorf("%s: the sleeper it started (PID %d) is still running", what, pid)
}

// A command that times out is killed together with what it started.
func TestCommandTimeoutKillsItsChildren(t *testing.T) {
	r := CommandRunner{Limit: limit}
	start := time.Now()
	pid, err := runForker(t, context.Background(), r, forker, nil)
	if want := "/bin/sh: still running after 1s, killed with the processes it started"; err == nil || err.Error() != want {
		t.Errorf("error:\n got %v\nwant %s", err, want)
	}
	assertGone(t, pid, "timed-out command")
	if d := time.Since(start); d > limit+5*time.Second {
		t.Errorf("the timed-out command took %s to stop", d)
	}
}

// A command running when gre-hook is told to stop (SIGTERM or SIGINT
// cancel the run's context) is killed together with what it started.
func TestCommandCancelKillsItsChildren(t *testing.T) {
	r := CommandRunner{Limit: time.Minute}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	// Cancelled once the sleeper runs, as by a SIGTERM to gre-hook.
	pid, err := runForker(t, ctx, r, forker, cancel)
	if want := "/bin/sh: killed with the processes it started: gre-hook is stopping: context canceled"; err == nil || err.Error() != want {
		t.Errorf("error:\n got %v\nwant %s", err, want)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v does not wrap context.Canceled", err)
	}
	assertGone(t, pid, "interrupted command")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the interrupted command took %s to stop", d)
	}
}

// What ignores SIGTERM gets SIGKILL after the grace period.
func TestCommandKillEscalatesAfterGrace(t *testing.T) {
	r := CommandRunner{Limit: limit, Grace: 300 * time.Millisecond}
	start := time.Now()
	// The trap is inherited: the sleeper ignores SIGTERM too.
	pid, err := runForker(t, context.Background(), r, `trap "" TERM; `+forker, nil)
	if err == nil || !strings.Contains(err.Error(), "still running after 1s") {
		t.Errorf("error: %v", err)
	}
	assertGone(t, pid, "command ignoring SIGTERM")
	if d := time.Since(start); d < limit+300*time.Millisecond {
		t.Errorf("stopped after %s: SIGKILL came before the grace period was over", d)
	}
}

// A command that finishes in time keeps what it started: restarting a
// daemon is what up_command is for.
func TestCommandThatFinishesKeepsWhatItStarted(t *testing.T) {
	r := CommandRunner{Limit: 5 * time.Second, Grace: 100 * time.Millisecond}
	pid, err := runForker(t, context.Background(), r, `/bin/sleep 300 & echo $! > "$1"`, nil)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if !alive(pid) {
		t.Error("the process a successful command started was killed")
	}
}

// With output to a pipe (any Out that is not a file), a process that left
// the command's process group and holds the pipe does not keep Run
// waiting.
func TestCommandTimeoutDoesNotWaitForAnEscapedProcess(t *testing.T) {
	var out strings.Builder
	r := CommandRunner{Limit: limit, Grace: 100 * time.Millisecond, Out: &out}
	start := time.Now()
	pid, err := runForker(t, context.Background(), r, `/usr/bin/setsid /bin/sleep 300 & echo $! > "$1"; wait`, nil)
	if err == nil || !strings.Contains(err.Error(), "still running after 1s") {
		t.Errorf("error: %v", err)
	}
	if d := time.Since(start); d > limit+3*time.Second {
		t.Errorf("Run took %s", d)
	}
	if !alive(pid) {
		t.Error("a process in a session of its own was killed; only the command's group should be")
	}
}
