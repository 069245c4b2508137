package hook

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"syscall"
	"time"
)

// CommandGrace is how long a command that is being killed, and what it
// started, get between SIGTERM and SIGKILL.
const CommandGrace = 2 * time.Second

// CommandRunner runs up_command and down_command: its Run is
// System.Command in a real run.
type CommandRunner struct {
	// Limit is how long a command may run before it is killed.
	Limit time.Duration
	// Grace is the time between SIGTERM and SIGKILL when a command is
	// killed (CommandGrace in a real run).
	Grace time.Duration
	// Out gets the command's standard output and error.
	Out io.Writer
}

// Run runs argv with env. When the command is still running after
// r.Limit, or when ctx is cancelled (gre-hook got SIGTERM or SIGINT), it
// kills the command and everything the command started.
//
// Killing only the direct child, as exec.CommandContext does, would leave
// its children running: a shell script's sleep, a daemon's helper. So the
// command gets a process group of its own, and the kill goes to the
// group: SIGTERM first, SIGKILL after r.Grace. A command that finishes in
// time keeps what it started: restarting a daemon is what up_command is
// for. A process that leaves the group on its own (setsid, as daemons do)
// is not killed either.
func (r CommandRunner) Run(ctx context.Context, argv, env []string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: not run: gre-hook is stopping: %w", argv[0], err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = r.Out, r.Out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	limit := time.NewTimer(r.Limit)
	defer limit.Stop()
	var err error
	select {
	case err := <-done:
		return err
	case <-limit.C:
		err = fmt.Errorf("%s: still running after %s, killed with the processes it started", argv[0], r.Limit)
	case <-ctx.Done():
		err = fmt.Errorf("%s: killed with the processes it started: gre-hook is stopping: %w", argv[0], ctx.Err())
	}
	r.killGroup(cmd.Process.Pid, done)
	return err
}

// killGroup ends process group pgid: SIGTERM, and SIGKILL to whatever is
// left after r.Grace. done receives when the group's leader is reaped.
func (r CommandRunner) killGroup(pgid int, done <-chan error) {
	syscall.Kill(-pgid, syscall.SIGTERM)
	// Kill(-pgid, 0) fails with ESRCH once the group is empty; until then
	// the group's ID cannot be given to a new process, so the SIGKILL
	// below cannot reach a stranger.
	for deadline := time.Now().Add(r.Grace); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if syscall.Kill(-pgid, 0) == syscall.ESRCH {
			return
		}
	}
	syscall.Kill(-pgid, syscall.SIGKILL)
	// Wait for the leader, but not for ever: when Out is a pipe, Wait also
	// waits for every holder of the pipe, and a process that left the
	// group may hold it.
	select {
	case <-done:
	case <-time.After(time.Second):
	}
}
