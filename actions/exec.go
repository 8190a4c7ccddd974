package actions

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"
)

// DefaultMaxOutput bounds how much of a command's stdout and stderr is kept
// (each); the rest is read and discarded so the command never blocks.
const DefaultMaxOutput = 1 << 20

// passEnv are the variables of eventfn's own environment that commands
// inherit. Everything else (tokens, passcodes) stays out unless a step
// passes it explicitly with env.
var passEnv = []string{"PATH", "HOME", "LANG", "LC_ALL", "TZ", "SLURM_CONF", "TMPDIR"}

// ExecParams are the parameters of an exec step.
type ExecParams struct {
	Argv           []string          `json:"argv"`
	Env            map[string]string `json:"env"`
	Stdin          string            `json:"stdin"`
	Dir            string            `json:"dir"`
	OKExitCodes    []int             `json:"ok_exit_codes"`
	FatalExitCodes []int             `json:"fatal_exit_codes"`
	MaxOutput      int               `json:"max_output"`
}

// Exec runs a command as an argv list, never through a shell.
type Exec struct{}

// Run implements Action.
func (e *Exec) Run(ctx context.Context, req Request) (Result, error) {
	var p ExecParams
	if err := decode(req.Params, &p); err != nil {
		return nil, err
	}
	return RunCommand(ctx, p, nil)
}

// ExitError is a command that ended with an exit code it should not have.
type ExitError struct {
	Argv0    string
	ExitCode int
	Stderr   string
}

func (e *ExitError) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	if msg == "" {
		return fmt.Sprintf("%s exited with code %d", e.Argv0, e.ExitCode)
	}
	return fmt.Sprintf("%s exited with code %d: %s", e.Argv0, e.ExitCode, msg)
}

// RunCommand runs p.Argv with stdin taken from p.Stdin (or stdin when not
// nil) and returns exit_code, stdout, stderr and json (stdout parsed when it
// is JSON). Exit codes outside ok_exit_codes (default 0) are errors; those in
// fatal_exit_codes are permanent ones. The command runs in its own process
// group, killed whole when ctx ends.
func RunCommand(ctx context.Context, p ExecParams, stdin []byte) (Result, error) {
	if len(p.Argv) == 0 || p.Argv[0] == "" {
		return nil, Permanent(errors.New("exec: empty argv"))
	}
	cmd := exec.CommandContext(ctx, p.Argv[0], p.Argv[1:]...)
	cmd.Dir = p.Dir
	cmd.Env = commandEnv(p.Env)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	} else if p.Stdin != "" {
		cmd.Stdin = strings.NewReader(p.Stdin)
	}
	limit := p.MaxOutput
	if limit <= 0 {
		limit = DefaultMaxOutput
	}
	stdout, stderr := &capped{max: limit}, &capped{max: limit}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err := cmd.Run()
	code := 0
	var warning string
	if errors.Is(err, exec.ErrWaitDelay) && ctx.Err() == nil && cmd.ProcessState != nil && cmd.ProcessState.Success() {
		// The command exited 0; something it left behind (a background
		// child) still held its output open. The exit decides: kill what is
		// left of its process group and go on.
		_ = syscall.Kill(-cmd.ProcessState.Pid(), syscall.SIGKILL)
		warning = "the command exited 0 but a process it started kept its output open: its process group was killed"
		slog.WarnContext(ctx, "exec: "+warning, "argv0", p.Argv[0], "pid", cmd.ProcessState.Pid())
		err = nil
	}
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ctx.Err() != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%s: %w", p.Argv[0], ctx.Err())
			}
			if exhausted(err) {
				// Out of descriptors, processes or memory: the machine's
				// state, not the command's; worth another attempt.
				return nil, fmt.Errorf("exec %s: %w", p.Argv[0], err)
			}
			return nil, Permanent(fmt.Errorf("exec %s: %w", p.Argv[0], err))
		}
		code = ee.ExitCode()
	}
	res := Result{
		"exit_code": code,
		"stdout":    stdout.String(),
		"stderr":    stderr.String(),
		"json":      parseJSON(stdout.Bytes()),
	}
	if stdout.dropped > 0 || stderr.dropped > 0 {
		res["truncated"] = true
	}
	if warning != "" {
		res["warning"] = warning
	}
	ok := p.OKExitCodes
	if len(ok) == 0 {
		ok = []int{0}
	}
	if slices.Contains(ok, code) {
		return res, nil
	}
	xerr := &ExitError{Argv0: p.Argv[0], ExitCode: code, Stderr: stderr.String()}
	if slices.Contains(p.FatalExitCodes, code) {
		return res, Permanent(xerr)
	}
	return res, xerr
}

// exhausted reports whether a command failed to start for lack of a
// resource (descriptors, processes, memory): a transient failure.
func exhausted(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.EAGAIN, syscall.ENOMEM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func commandEnv(extra map[string]string) []string {
	env := make([]string, 0, len(passEnv)+len(extra))
	for _, k := range passEnv {
		if v, ok := os.LookupEnv(k); ok {
			if _, over := extra[k]; !over {
				env = append(env, k+"="+v)
			}
		}
	}
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}

// capped keeps the first max bytes written and counts the rest. (It does
// not embed bytes.Buffer: its ReadFrom would bypass the cap.)
type capped struct {
	buf     bytes.Buffer
	max     int
	dropped int64
}

func (c *capped) Write(p []byte) (int, error) {
	room := c.max - c.buf.Len()
	if room >= len(p) {
		return c.buf.Write(p)
	}
	if room > 0 {
		c.buf.Write(p[:room])
	}
	c.dropped += int64(len(p) - max(room, 0))
	return len(p), nil
}

func (c *capped) String() string { return c.buf.String() }
func (c *capped) Bytes() []byte  { return c.buf.Bytes() }
