package hook

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"time"
)

// commandRunner runs up_command and down_command.
type commandRunner struct {
	// Limit is how long a command may run before it is killed.
	Limit time.Duration
	// Out gets the command's standard output and error.
	Out io.Writer
}

// Run runs argv with env, and kills it after r.Limit.
func (r commandRunner) Run(ctx context.Context, argv, env []string) error {
	ctx, cancel := context.WithTimeout(ctx, r.Limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = r.Out, r.Out
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("%s: still running after %s, killed", argv[0], r.Limit)
	}
	return err
}
