package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/rules"
)

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// scrape reads /metrics into series → value ("name{labels}" as printed).
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

func status(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lockedBuffer collects log output from many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func opsRules(push, rule string) string {
	return fmt.Sprintf(`version: 1
sources:
  - name: push
    url: http://%s/events
runner:
  concurrency: 4
  shutdown_timeout: 5s
rules:
  - name: %s
    on: order
    key: payload.k
    steps:
      - id: cmd
        exec: [sh, -c, 'exit 0']
  - name: watch
    on: "*"
    steps:
      - log: {message: "saw {{ type }}", level: debug}
`, push, rule)
}

func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path+".new", []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
}

// TestRunMetricsHealthAndReload runs `run` as an operator sees it: events
// pushed while /metrics is scraped, health endpoints, then the rules file
// edited live (good, broken, SIGHUP) and a clean stop.
func TestRunMetricsHealthAndReload(t *testing.T) {
	push, listen := freeAddr(t), freeAddr(t)
	base := "http://" + listen
	path := filepath.Join(t.TempDir(), "eventfn.yaml")
	if err := os.WriteFile(path, []byte(opsRules(push, "order-step")), 0o600); err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Load(path, rules.Options{Actions: actions.Builtin()})
	if err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, rs, listen, logger, strings.NewReader("")) }()
	poll(t, "/readyz", func() bool { return status(base+"/readyz") == http.StatusOK })
	if c := status(base + "/healthz"); c != http.StatusOK {
		t.Fatalf("/healthz = %d", c)
	}

	post := func(typ string, i int) {
		body := fmt.Sprintf(`{"type": %q, "id": "%s-%d", "payload": {"k": "k%d"}}`, typ, typ, i, i%4)
		resp, err := http.Post("http://"+push+"/events", "application/json", strings.NewReader(body))
		if err != nil {
			t.Error(err)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Errorf("push: %s", resp.Status)
		}
	}
	const n = 30
	pushed := make(chan struct{})
	go func() {
		defer close(pushed)
		for i := range n {
			post("order", i)
			post("user_role", i)
		}
	}()
	// Scrape while the events flow, until all are settled.
	var m map[string]float64
	poll(t, "every event settled", func() bool {
		m = scrape(t, base)
		return m[`eventfn_messages_settled_total{fate="acked",source="push",type="order"}`] == n &&
			m[`eventfn_messages_settled_total{fate="acked",source="push",type="user_role"}`] == n
	})
	<-pushed
	for series, want := range map[string]float64{
		`eventfn_messages_received_total{source="push",type="order"}`:     n,
		`eventfn_messages_received_total{source="push",type="user_role"}`: n,
		`eventfn_rule_matches_total{rule="order-step"}`:                   n,
		`eventfn_rule_matches_total{rule="watch"}`:                        2 * n,
		`eventfn_plans_total{outcome="success",rule="order-step"}`:        n,
		`eventfn_step_attempts_total{kind="exec",result="ok"}`:            n,
		`eventfn_step_attempts_total{kind="log",result="ok"}`:             2 * n,
		`eventfn_step_duration_seconds_count{kind="exec"}`:                n,
		`eventfn_message_duration_seconds_count{source="push"}`:           2 * n,
		`eventfn_plans_in_flight`:                                         0,
	} {
		if got, ok := m[series]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	if _, ok := m["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
	if got := strings.Count(logs.String(), `"msg":"message handled"`); got != 2*n {
		t.Errorf("%d outcome log lines for %d messages", got, 2*n)
	}

	// A good edit of the rules file is picked up without a restart.
	replaceFile(t, path, opsRules(push, "order-step-v2"))
	poll(t, "the reload", func() bool { return scrape(t, base)[`eventfn_rules_reloads_total{result="ok"}`] >= 1 })
	post("order", 1000)
	poll(t, "the new rule to run", func() bool {
		return scrape(t, base)[`eventfn_rule_matches_total{rule="order-step-v2"}`] == 1
	})

	// A broken edit is rejected; the rules in force stay and so does readiness.
	if err := os.WriteFile(path, []byte("version: 1\nrules: [{name: x}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	poll(t, "the failed reload", func() bool { return scrape(t, base)[`eventfn_rules_reloads_total{result="error"}`] >= 1 })
	if c := status(base + "/readyz"); c != http.StatusOK {
		t.Errorf("/readyz = %d after a broken edit", c)
	}
	post("order", 1001)
	poll(t, "the old rules to go on", func() bool {
		return scrape(t, base)[`eventfn_rule_matches_total{rule="order-step-v2"}`] == 2
	})

	// SIGHUP reloads too (the file is still broken: one more failure).
	errsBefore := scrape(t, base)[`eventfn_rules_reloads_total{result="error"}`]
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	poll(t, "the reload on SIGHUP", func() bool {
		return scrape(t, base)[`eventfn_rules_reloads_total{result="error"}`] == errsBefore+1
	})
	if !strings.Contains(logs.String(), `"reason":"hangup"`) {
		t.Error("no log line for the SIGHUP reload")
	}

	cancel() // SIGTERM
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not stop")
	}
}
