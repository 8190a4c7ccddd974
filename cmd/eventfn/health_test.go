package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eventfn/eventfn/config"
	"github.com/eventfn/eventfn/internal/brokertest"
)

// body returns the status and body of a GET.
func body(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A source whose login the broker refuses, at the very first connection,
// stays alive and retrying, and shows as down on /healthz and /readyz (with
// the broker's reason) and in eventfn_source_connected.
func TestRefusedSourceShowsDown(t *testing.T) {
	bt := brokertest.New(t)
	vhost := bt.VHost(brokertest.Unique("eventfn-health-"))
	listen := freeAddr(t)
	base := "http://" + listen
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pass"), []byte("not-the-passcode\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := `version: 1
sources:
  - name: mq
    url: mqtt://127.0.0.1:1884
    vhost: ` + vhost + `
    login: nobody-` + brokertest.Unique("") + `
    passcode_file: pass
    subscribe: [x/#]
    client_id: eventfn-health-test
rules:
  - {name: r, on: order, steps: [{log: hi}]}
`
	path := filepath.Join(dir, "eventfn.yaml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, c, listen, logger, strings.NewReader("")) }()

	poll(t, "two refused logins", func() bool { return strings.Count(logs.String(), "mqtt login refused") >= 2 })
	code, text := body(t, base+"/healthz")
	if code != http.StatusOK || !strings.Contains(text, "source mq: down: broker refused the login") {
		t.Errorf("/healthz = %d %q, want 200 naming the source down and why", code, text)
	}
	code, text = body(t, base+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(text, "source mq: down: broker refused the login") {
		t.Errorf("/readyz = %d %q, want 503 naming the source down and why", code, text)
	}
	if v, ok := scrape(t, base)[`eventfn_source_connected{source="mq"}`]; !ok || v != 0 {
		t.Errorf("eventfn_source_connected = %v (present %v), want 0", v, ok)
	}
	if strings.Contains(logs.String(), "not-the-passcode") || strings.Contains(text, "not-the-passcode") {
		t.Error("the passcode shows")
	}
	select {
	case err := <-done:
		t.Fatalf("run stopped on a refused login: %v", err)
	default:
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not stop")
	}
}
