package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := dispatch(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestValidate(t *testing.T) {
	if code, out, errs := cli(t, "validate", "-c", "../../examples/quickstart/eventfn.yaml"); code != 0 {
		t.Fatalf("quickstart: code %d: %s %s", code, out, errs)
	}
	code, _, errs := cli(t, "validate", "-c", "testdata/bad.yaml")
	if code != 1 {
		t.Fatalf("bad file: code %d", code)
	}
	for _, want := range []string{
		`testdata/bad.yaml:5:11: rule "broken": expression "payload.x ==="`,
		`testdata/bad.yaml:7:9: rule "broken": unknown key "nope" in step`,
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("missing %q in\n%s", want, errs)
		}
	}
}

func TestDryRunShowsRenderedArgvWithoutRunningAnything(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	ev := filepath.Join(dir, "ev.json")
	os.WriteFile(ev, []byte(`{"type": "order", "payload": {"order_uuid": "$(touch `+marker+`)", "order_state": "executing"}}`), 0o600)
	code, out, errs := cli(t, "dry-run", "-c", "../../examples/quickstart/eventfn.yaml", "--explain", ev)
	if code != 0 {
		t.Fatalf("code %d: %s", code, errs)
	}
	for _, want := range []string{
		"order-executing              match  when = true",
		"1. echo (exec):\n",
		`$ echo "order $(touch ` + marker + `) for no project"`,
		`{{ trim(steps.echo.stdout) }}`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("dry-run ran something")
	}
	code, out, _ = cli(t, "dry-run", "-c", "../../examples/quickstart/eventfn.yaml", "--output", "json", ev)
	if code != 0 || !strings.Contains(out, `"rule": "order-executing"`) {
		t.Errorf("json output: %d %s", code, out)
	}
}

func TestRuleTests(t *testing.T) {
	if code, out, errs := cli(t, "test", "testdata/order_test.yaml"); code != 0 {
		t.Fatalf("code %d: %s %s", code, out, errs)
	}
	code, out, _ := cli(t, "test", "testdata/order_wrong_test.yaml")
	if code != 1 {
		t.Fatalf("a wrong expectation must fail: %d", code)
	}
	for _, want := range []string{
		"FAIL testdata/order_wrong_test.yaml: executing order echoes and notifies",
		"expect[1].steps[0].params.argv[1]:",
		`- want: "order abc for weather"`, `+ got:  "order abc for climate"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
}

// signalWriter is a log sink that closes a channel once a line containing
// each wanted text has been written as often as wanted.
type signalWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want map[string]int
	done chan struct{}
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for text, n := range w.want {
		if strings.Count(w.buf.String(), text) < n {
			return len(p), nil
		}
	}
	select {
	case <-w.done:
	default:
		close(w.done)
	}
	return len(p), nil
}

func TestRunQuickstartRunsCommandsAndWebhook(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	src, _ := os.ReadFile("../../examples/quickstart/eventfn.yaml")
	cfg := strings.ReplaceAll(string(src), "127.0.0.1:8080", addr)
	cfg = strings.ReplaceAll(cfg, "file:events.jsonl", "file:"+filepath.Join(mustAbs(t, "../../examples/quickstart"), "events.jsonl"))
	path := filepath.Join(t.TempDir(), "eventfn.yaml")
	os.WriteFile(path, []byte(cfg), 0o600)

	w := &signalWriter{done: make(chan struct{}), want: map[string]int{
		"webhook delivered: order 3f1c0a2b9d8e4f6a8b7c6d5e4f3a2b1c for climate": 1,
		// the hostile event's text arrives intact: no shell saw it
		`webhook delivered: order $(touch /tmp/pwned); rm -rf ~ for a; echo injected`: 1,
	}}
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int)
	go func() { code <- dispatch(ctx, []string{"run", "-c", path}, &bytes.Buffer{}, w) }()
	<-w.done
	cancel()
	if c := <-code; c != 0 {
		t.Fatalf("run exited %d:\n%s", c, w.buf.String())
	}
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

var _ = fmt.Sprint

// TestExamples validates every example and runs its rule tests and a
// dry-run of each of its sample events.
func TestExamples(t *testing.T) {
	files, _ := filepath.Glob("../../examples/*/eventfn.yaml")
	if len(files) < 2 {
		t.Fatalf("examples: %v", files)
	}
	for _, f := range files {
		dir := filepath.Dir(f)
		if code, _, errs := cli(t, "validate", "-c", f); code != 0 {
			t.Errorf("validate %s: %s", f, errs)
		}
		tests, _ := filepath.Glob(filepath.Join(dir, "*_test.yaml"))
		for _, tf := range tests {
			if code, out, errs := cli(t, "test", tf); code != 0 {
				t.Errorf("test %s: %s%s", tf, out, errs)
			}
		}
		events, _ := filepath.Glob(filepath.Join(dir, "events", "*.json"))
		for _, ev := range events {
			if code, out, errs := cli(t, "dry-run", "-c", f, ev); code != 0 {
				t.Errorf("dry-run %s: %s%s", ev, out, errs)
			}
		}
	}
}
