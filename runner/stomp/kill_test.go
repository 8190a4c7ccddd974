package stomp_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eventfn/eventfn/internal/brokertest"
	"github.com/eventfn/eventfn/waldur"
)

// binDir holds the eventfn binary built for the subprocess tests.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "eventfn-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// eventfnBinary builds cmd/eventfn once per test process.
func eventfnBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(binDir, "eventfn")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/eventfn/eventfn/cmd/eventfn").CombinedOutput()
	if err != nil {
		t.Fatalf("go build cmd/eventfn: %v\n%s", err, out)
	}
	return bin
}

// killSetup is what a kill test starts from: the eventfn binary, a site
// with an order queue, a directory for the test's files, and their paths.
func killSetup(t *testing.T) (bin string, s *site, dir string, p func(name string) string) {
	t.Helper()
	bin, s, dir = eventfnBinary(t), newSite(t, waldur.TypeOrder), t.TempDir()
	return bin, s, dir, func(name string) string { return filepath.Join(dir, name) }
}

// killConfig is the head of a kill test's rules file: the durable journal
// in state, one attempt per step, the site's order queue.
func killConfig(state string, s *site) string {
	return fmt.Sprintf(`version: 1
runner: {state_dir: %q, shutdown_timeout: 5s}
defaults: {timeout: 120s, retry: {attempts: 1}}
sources:
  - name: waldur
    url: %s
    vhost: %s
    login: %s
    passcode_env: EVENTFN_TEST_PASSCODE
    subscribe: [%s]
`, state, tcpURL(), s.vhost, s.login, waldur.Destination(s.queues[waldur.TypeOrder]))
}

// startEventfn starts `eventfn run` (run n) on dir/eventfn.yaml, its log in
// dir/eventfn-n.log (shown when the test fails), and kills it at the end of
// the test if it still runs.
func startEventfn(t *testing.T, bin, dir string, n int, pass string) (*exec.Cmd, string) {
	t.Helper()
	logPath := filepath.Join(dir, fmt.Sprintf("eventfn-%d.log", n))
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("eventfn run %d:\n%s", n, b)
		}
	})
	cmd := exec.Command(bin, "run", "-c", filepath.Join(dir, "eventfn.yaml"), "--log-level", "debug")
	cmd.Env = append(os.Environ(), "EVENTFN_TEST_PASSCODE="+pass)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd, logPath
}

// stopWhenHandled waits until eventfn's log says the message was handled,
// then stops it with SIGTERM, which it must exit cleanly on.
func stopWhenHandled(t *testing.T, eventfn *exec.Cmd, logPath string) {
	t.Helper()
	brokertest.WaitFor(t, 60*time.Second, "the message to be handled after the restart", func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b), "message handled")
	})
	if err := eventfn.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := eventfn.Wait(); err != nil {
		t.Errorf("eventfn exited with %v after SIGTERM", err)
	}
}

// killWhenStarted waits until what (a step's command) has written its pid
// to pidfile, kills eventfn with SIGKILL, then that command: it outlives
// eventfn (it has its own process group).
func killWhenStarted(t *testing.T, eventfn *exec.Cmd, pidfile, what string) {
	t.Helper()
	brokertest.WaitFor(t, 60*time.Second, what+" to start", func() bool {
		_, err := os.Stat(pidfile)
		return err == nil
	})
	if err := eventfn.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = eventfn.Wait()
	if b, err := os.ReadFile(pidfile); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func lines(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "\n")
}

// TestKilledMidPlanResumesOnce: eventfn is killed with SIGKILL while the
// second step of a plan runs. The message was not acknowledged, so the
// broker redelivers it to the restarted eventfn, whose journal (in
// runner.state_dir) says the first step completed: the plan resumes at the
// second step and runs to success once.
func TestKilledMidPlanResumesOnce(t *testing.T) {
	bin, s, dir, p := killSetup(t)
	config := killConfig(p("state"), s) + fmt.Sprintf(`rules:
  - name: provision
    on: order
    when: payload.order_state == "executing"
    steps:
      - id: account
        exec: [sh, -c, 'echo "$1" >> "$0"', %q, "{{ payload.order_uuid }}"]
      - id: limits
        exec:
          - sh
          - -c
          - 'echo x >> "$0"; if [ ! -e "$1" ]; then echo $$ > "$3.tmp"; mv "$3.tmp" "$3"; exec sleep 120; fi; echo x >> "$2"'
          - %q
          - %q
          - %q
          - %q
`, p("account"), p("limits-started"), p("release"), p("limits-done"), p("sleeper.pid"))
	if err := os.WriteFile(p("eventfn.yaml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	start := func(n int) (*exec.Cmd, string) { return startEventfn(t, bin, dir, n, s.pass) }

	s.b.Publish(s.vhost, s.queues[waldur.TypeOrder],
		payload(t, map[string]any{"order_uuid": "4d5e6f", "order_state": "executing"}))

	first, _ := start(1)
	killWhenStarted(t, first, p("sleeper.pid"), "the second step")
	if n := lines(p("account")); n != 1 {
		t.Fatalf("first step ran %d times before the kill, want 1", n)
	}
	if err := os.WriteFile(p("release"), nil, 0o600); err != nil {
		t.Fatal(err)
	}

	second, log2 := start(2)
	brokertest.WaitFor(t, 60*time.Second, "the plan to finish after the restart", func() bool {
		return lines(p("limits-done")) >= 1
	})
	stopWhenHandled(t, second, log2)

	if n := lines(p("account")); n != 1 {
		t.Errorf("the first step ran %d times, want 1 (the restart must resume after it)", n)
	}
	if n := lines(p("limits-started")); n != 2 {
		t.Errorf("the second step started %d times, want 2 (killed once, then completed)", n)
	}
	if n := lines(p("limits-done")); n != 1 {
		t.Errorf("the second step completed %d times, want 1", n)
	}
	b, _ := os.ReadFile(log2)
	if !strings.Contains(string(b), "plan resumed after its completed steps") {
		t.Error("the restarted eventfn did not log the resumption")
	}
	if msgs := s.b.Peek(s.vhost, s.queues[waldur.TypeOrder], 10); len(msgs) > 0 {
		t.Errorf("queue still holds %d messages", len(msgs))
	}
}

// TestKilledMidForEachResumesAfterItsDoneItems: eventfn is killed with
// SIGKILL while the third item of a for_each step runs (a command per item
// that appends to a file: not idempotent). The restarted eventfn, whose
// journal recorded the first two items, runs the third and the fourth only:
// every item's effect happens once.
func TestKilledMidForEachResumesAfterItsDoneItems(t *testing.T) {
	bin, s, dir, p := killSetup(t)
	config := killConfig(p("state"), s) + fmt.Sprintf(`rules:
  - name: users
    on: order
    steps:
      - id: add
        for_each: payload.users
        exec:
          - sh
          - -c
          - 'echo "$1" >> "$0"; if [ "$1" = c ] && [ ! -e "$2" ]; then echo $$ > "$4.tmp"; mv "$4.tmp" "$4"; exec sleep 120; fi; echo "$1" >> "$3"'
          - %q
          - "{{ item }}"
          - %q
          - %q
          - %q
`, p("started"), p("release"), p("done"), p("sleeper.pid"))
	if err := os.WriteFile(p("eventfn.yaml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	s.b.Publish(s.vhost, s.queues[waldur.TypeOrder],
		payload(t, map[string]any{"order_uuid": "7a8b9c", "users": []string{"a", "b", "c", "d"}}))

	first, _ := startEventfn(t, bin, dir, 1, s.pass)
	killWhenStarted(t, first, p("sleeper.pid"), "the third item")
	if b, _ := os.ReadFile(p("done")); string(b) != "a\nb\n" {
		t.Fatalf("items done before the kill: %q, want a and b", b)
	}
	if err := os.WriteFile(p("release"), nil, 0o600); err != nil {
		t.Fatal(err)
	}

	second, log2 := startEventfn(t, bin, dir, 2, s.pass)
	stopWhenHandled(t, second, log2)
	if b, _ := os.ReadFile(p("done")); string(b) != "a\nb\nc\nd\n" {
		t.Errorf("items done: %q, want each of a, b, c, d once", b)
	}
	if b, _ := os.ReadFile(p("started")); string(b) != "a\nb\nc\nc\nd\n" {
		t.Errorf("items started: %q, want a, b, c (killed), c, d", b)
	}
	b, _ := os.ReadFile(log2)
	if !strings.Contains(string(b), "for_each resumed after its completed items") {
		t.Error("the restarted eventfn did not log the resumption")
	}
	if msgs := s.b.Peek(s.vhost, s.queues[waldur.TypeOrder], 10); len(msgs) > 0 {
		t.Errorf("queue still holds %d messages", len(msgs))
	}
}

// TestKilledWhileAnEmittedEventRuns: an order's plan emits an event and is
// done; its message is acknowledged. eventfn is killed with SIGKILL while
// the emitted event's command runs. The broker has nothing to redeliver;
// the journal's outbox has the event, and the restarted eventfn delivers
// it by itself: its command completes once.
func TestKilledWhileAnEmittedEventRuns(t *testing.T) {
	bin, s, dir, p := killSetup(t)
	config := killConfig(p("state"), s) + fmt.Sprintf(`types: [order_user]
rules:
  - name: order
    on: order
    steps:
      - emit: {type: order_user, payload: {order_uuid: "{{ payload.order_uuid }}"}, key: user}
  - name: user
    on: order_user
    steps:
      - exec:
          - sh
          - -c
          - 'echo "$1" >> "$0"; if [ ! -e "$2" ]; then echo $$ > "$4.tmp"; mv "$4.tmp" "$4"; exec sleep 120; fi; echo "$1" >> "$3"'
          - %q
          - "{{ payload.order_uuid }}"
          - %q
          - %q
          - %q
`, p("started"), p("release"), p("done"), p("sleeper.pid"))
	if err := os.WriteFile(p("eventfn.yaml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	s.b.Publish(s.vhost, s.queues[waldur.TypeOrder], payload(t, map[string]any{"order_uuid": "5e6f7a"}))

	first, _ := startEventfn(t, bin, dir, 1, s.pass)
	brokertest.WaitFor(t, 60*time.Second, "the broker to have the order's acknowledgement", func() bool {
		ready, unacked := s.b.Depth(s.vhost, s.queues[waldur.TypeOrder])
		return ready == 0 && unacked == 0
	})
	killWhenStarted(t, first, p("sleeper.pid"), "the emitted event's command")
	if err := os.WriteFile(p("release"), nil, 0o600); err != nil {
		t.Fatal(err)
	}

	second, log2 := startEventfn(t, bin, dir, 2, s.pass)
	stopWhenHandled(t, second, log2)
	if b, _ := os.ReadFile(p("done")); string(b) != "5e6f7a\n" {
		t.Errorf("the emitted event's command completed as %q, want once", b)
	}
	if b, _ := os.ReadFile(p("started")); string(b) != "5e6f7a\n5e6f7a\n" {
		t.Errorf("the emitted event's command started as %q, want twice (killed, then completed)", b)
	}
	b, _ := os.ReadFile(log2)
	if !strings.Contains(string(b), "delivering again the emitted events the last run left unhandled") {
		t.Error("the restarted eventfn did not say it delivered the event again")
	}
	if ready, unacked := s.b.Depth(s.vhost, s.queues[waldur.TypeOrder]); ready+unacked != 0 {
		t.Errorf("the order queue holds %d ready and %d unacknowledged messages, want none", ready, unacked)
	}
}
