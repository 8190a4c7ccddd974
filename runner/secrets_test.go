package runner

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/rules"
	"github.com/eventfn/eventfn/telemetry"
)

// TestSecretsNeverLeave sends a secret with special characters through
// every path out of the process (logs, span attributes, status and events,
// Sentry, the dead-letter reason, {{ error }} given to on_failure, step
// results given to later steps) and greps every sink for each of its forms.
func TestSecretsNeverLeave(t *testing.T) {
	const secret = `p@ss/w:rd?&=+ "q" <t> é\x%41`
	forms := telemetry.Forms(secret)
	if len(forms) < 6 {
		t.Fatalf("only %d forms of the secret: %q", len(forms), forms)
	}
	// A webhook target that fails, echoing the secret in every form.
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, "denied: "+strings.Join(forms, " | "))
	}))
	defer hook.Close()
	var sentryMu sync.Mutex
	var sentryRaw strings.Builder
	sentrySrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			if zr, err := gzip.NewReader(r.Body); err == nil {
				body = zr
			}
		}
		b, _ := io.ReadAll(body)
		sentryMu.Lock()
		sentryRaw.Write(b)
		sentryMu.Unlock()
		_, _ = io.WriteString(w, `{"id":"0"}`)
	}))
	defer sentrySrv.Close()

	dir := t.TempDir()
	src := fmt.Sprintf(`
version: 1
secrets: {s: {env: EVENTFN_TEST_SECRET}}
types: [x]
rules:
  - name: leak
    on: x
    steps:
      - id: out
        exec: [sh, -c, 'printf "%%s\n" "$1"', _, "{{ secrets.s }} {{ toJSON(secrets.s) }} {{ toBase64(secrets.s) }}"]
      - exec: [sh, -c, 'printf "%%s" "$1" > "$0"', "%[1]s/results", "{{ steps.out.stdout }}"]
      - log: "stdout was {{ steps.out.stdout }}"
      - id: hook
        webhook: {url: "%[2]s/x", headers: {Authorization: "Bearer {{ secrets.s }}"}, body: {token: "{{ secrets.s }}"}}
        retry: {attempts: 1}
    on_failure:
      - exec: [sh, -c, 'printf "%%s" "$1" > "$0"', "%[1]s/error", "{{ error }}"]
`, dir, hook.URL)
	rs, err := rules.Parse("secrets.yaml", []byte(src), rules.Options{Actions: actions.Builtin()})
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := rs.ReadSecrets(func(string) (string, bool) { return secret, true })
	if err != nil {
		t.Fatal(err)
	}
	red := telemetry.NewRedactor(telemetry.Values(secrets)...)
	var logs syncBuffer
	logger := slog.New(telemetry.NewRedactingHandler(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}), red))
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(telemetry.NewRedactingExporter(spans, red)))
	defer tp.Shutdown(context.Background())
	rep, err := telemetry.NewSentry(telemetry.SentryOptions{DSN: strings.Replace(sentrySrv.URL, "http://", "http://k@", 1) + "/1", Redactor: red})
	if err != nil {
		t.Fatal(err)
	}
	defer rep.Close(time.Second)
	r := New(Config{Rules: rs, Actions: actions.Standard(actions.Options{Logger: logger}), Logger: logger,
		Metrics: NewMetrics(), Secrets: secrets, Redactor: red, TracerProvider: tp, Reporter: rep})
	fate := catalogueDeliver(t, r, &Message{Source: "t", Body: []byte(`{}`), Type: "x", ID: "m1", DeadLetterOnFailure: true})
	if !rep.Flush(10 * time.Second) {
		t.Fatal("sentry did not flush")
	}
	spanJSON, err := json.Marshal(spans.GetSpans())
	if err != nil {
		t.Fatal(err)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	sentryMu.Lock()
	sentry := sentryRaw.String()
	sentryMu.Unlock()
	sinks := map[string]string{
		"logs":                       logs.String(),
		"spans":                      string(spanJSON),
		"sentry":                     sentry,
		"dead-letter reason":         fate,
		"{{ error }} in on_failure":  read("error"),
		"step results to later step": read("results"),
	}
	for sink, text := range sinks {
		if !strings.Contains(text, telemetry.Masked) {
			t.Errorf("%s: no %s: the secret never reached it, the test proves nothing\n%.500s", sink, telemetry.Masked, text)
		}
		for _, f := range forms {
			if strings.Contains(text, f) {
				t.Errorf("%s holds the secret as %q", sink, f)
			}
		}
	}
	if !strings.HasPrefix(fate, "dead-letter: ") {
		t.Errorf("fate %q, want dead-letter", fate)
	}
}
