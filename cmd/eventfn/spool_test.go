package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/eventfn/eventfn/config"
)

// TestAcceptedPushesSurviveSIGTERM: events pushed to the HTTP source and
// answered 202 are still in flight when eventfn is stopped past its
// shutdown_timeout; after a restart every one of them runs (issue 13.6).
func TestAcceptedPushesSurviveSIGTERM(t *testing.T) {
	dir := t.TempDir()
	push := freeAddr(t)
	path := filepath.Join(dir, "eventfn.yaml")
	src := fmt.Sprintf(`version: 1
sources:
  - {name: push, url: "http://%s/events"}
runner:
  state_dir: state
  shutdown_timeout: 100ms
rules:
  - name: gated
    on: order
    steps:
      - exec: [sh, -c, 'while [ ! -e "$0/go" ]; do sleep 0.05; done; echo "$1" >> "$0/ran"', %q, "{{ payload.n }}"]
        timeout: 60s
`, push, dir)
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	rs, err := config.Load(path, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	start := func() (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- run(ctx, rs, "", logger, strings.NewReader("")) }()
		return func() {
			cancel() // what SIGTERM does
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		}
	}
	stop := start()
	const n = 5
	for i := range n {
		var resp *http.Response
		poll(t, "the push to be answered", func() bool {
			r, err := http.Post("http://"+push+"/events", "application/json", strings.NewReader(fmt.Sprintf(`{"type": "order", "payload": {"n": %d}}`, i)))
			if err != nil {
				return false
			}
			resp = r
			return true
		})
		var body struct{ Accepted, Durable bool }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted || !body.Durable {
			t.Fatalf("push %d: %s durable=%v, want 202 durable", i, resp.Status, body.Durable)
		}
	}
	stop()
	if b, _ := os.ReadFile(filepath.Join(dir, "ran")); len(b) != 0 {
		t.Fatalf("plans ran before the gate opened: %q", b)
	}
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	stop = start()
	defer stop()
	var lines []string
	poll(t, "every accepted push to run after the restart", func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "ran"))
		lines = strings.Fields(string(b))
		return len(lines) >= n
	})
	sort.Strings(lines)
	if strings.Join(lines, " ") != "0 1 2 3 4" {
		t.Errorf("ran %v, want each of 0..4 once", lines)
	}
	poll(t, "the spool to empty", func() bool {
		files, _ := filepath.Glob(filepath.Join(dir, "state", "http-spool", "push", "*.json"))
		return len(files) == 0
	})
}
