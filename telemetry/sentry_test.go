package telemetry_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/eventfn/eventfn/runner"
	"github.com/eventfn/eventfn/telemetry"
)

// fakeSentry accepts envelopes on /api/<project>/envelope/ and keeps their
// event items.
type fakeSentry struct {
	mu     sync.Mutex
	raw    []string
	events []map[string]any
}

func (f *fakeSentry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, _ := io.ReadAll(body)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.raw = append(f.raw, r.URL.Path+"\n"+string(b))
	// An envelope: a header line, then item header and payload lines.
	lines := bytes.Split(b, []byte("\n"))
	for i := 1; i+1 < len(lines); i++ {
		var hdr map[string]any
		if json.Unmarshal(lines[i], &hdr) == nil && hdr["type"] == "event" {
			var ev map[string]any
			if err := json.Unmarshal(lines[i+1], &ev); err == nil {
				f.events = append(f.events, ev)
			}
			i++
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"id":"0"}`)
}

func TestSentryReportsFailedPlansWithoutSecrets(t *testing.T) {
	const secret = "hunter2-very-secret"
	fs := &fakeSentry{}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	dsn := strings.Replace(srv.URL, "http://", "http://publickey@", 1) + "/42"
	rep, err := telemetry.NewSentry(telemetry.SentryOptions{DSN: dsn, Release: "eventfn@test", Environment: "ci",
		Redactor: telemetry.NewRedactor(secret)})
	if err != nil {
		t.Fatal(err)
	}
	defer rep.Close(time.Second)

	// A plan whose command fails and prints the secret it was given.
	fate := runMessage(t, runner.Config{Reporter: rep, Secrets: map[string]any{"token": secret},
		TracerProvider: sdktrace.NewTracerProvider()}, `
version: 1
secrets: {token: {env: EVENTFN_TEST_TOKEN}}
rules:
  - name: create-account
    on: order
    steps:
      - id: add
        exec: [sh, -c, 'echo "login with $1 refused" >&2; exit 3', sh, "{{ secrets.token }}"]
        retry: {attempts: 1}
`, &runner.Message{Source: "broker", Type: "order", ID: "m-42", Body: []byte(`{}`),
		Headers: map[string]string{"traceparent": "00-55555555555555555555555555555555-6666666666666666-01"}})
	if fate != "ack" {
		t.Fatalf("fate %q", fate)
	}
	if !rep.Flush(10 * time.Second) {
		t.Fatal("sentry flush timed out")
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if len(fs.events) != 1 {
		t.Fatalf("sentry got %d events: %q", len(fs.events), fs.raw)
	}
	if !strings.HasPrefix(fs.raw[0], "/api/42/envelope/") {
		t.Errorf("posted to %q", strings.SplitN(fs.raw[0], "\n", 2)[0])
	}
	for _, raw := range fs.raw {
		if strings.Contains(raw, secret) {
			t.Errorf("the secret reached Sentry:\n%s", raw)
		}
	}
	ev := fs.events[0]
	tags, _ := ev["tags"].(map[string]any)
	if ev["level"] != "error" || ev["release"] != "eventfn@test" || ev["environment"] != "ci" ||
		tags["rule"] != "create-account" || tags["event_type"] != "order" || tags["source"] != "broker" ||
		tags["trace_id"] != "55555555555555555555555555555555" {
		t.Errorf("event = %v", ev)
	}
	msg, _ := ev["message"].(string)
	if !strings.Contains(msg, "login with *** refused") || !strings.Contains(msg, "create-account") {
		t.Errorf("message = %q, want the command's error with the secret masked", msg)
	}
	fp, _ := ev["fingerprint"].([]any)
	if len(fp) != 2 || fp[1] != "create-account" {
		t.Errorf("fingerprint = %v", fp)
	}
}

func TestSentryNeedsADSN(t *testing.T) {
	if _, err := telemetry.NewSentry(telemetry.SentryOptions{}); err == nil {
		t.Error("no error without a DSN")
	}
	if _, err := telemetry.NewSentry(telemetry.SentryOptions{DSN: "not a dsn"}); err == nil {
		t.Error("no error for a bad DSN")
	}
}
