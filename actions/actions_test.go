package actions

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func run(t *testing.T, a Action, params map[string]any) (Result, error) {
	t.Helper()
	return a.Run(context.Background(), Request{Params: params})
}

func TestExecArgvIsNeverAShell(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "pwned")
	evil := "$(touch " + marker + "); touch " + marker + " `touch " + marker + "`"
	res, err := run(t, &Exec{}, map[string]any{"argv": []any{"echo", evil, 42}})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(res["stdout"].(string)); got != evil+" 42" {
		t.Errorf("stdout = %q", got)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("shell metacharacters were interpreted")
	}
}

func TestExecExitCodes(t *testing.T) {
	res, err := run(t, &Exec{}, map[string]any{"argv": []any{"sh", "-c", "echo oops >&2; exit 3"}})
	var xe *ExitError
	if !errors.As(err, &xe) || xe.ExitCode != 3 || !strings.Contains(err.Error(), "oops") {
		t.Fatalf("err = %v", err)
	}
	if !Retryable(err) || res["exit_code"] != 3 {
		t.Errorf("exit 3 not listed as fatal must be retryable; res=%v", res)
	}
	_, err = run(t, &Exec{}, map[string]any{"argv": []any{"sh", "-c", "exit 3"}, "fatal_exit_codes": []any{3}})
	if err == nil || Retryable(err) {
		t.Errorf("fatal exit code must be permanent: %v", err)
	}
	_, err = run(t, &Exec{}, map[string]any{"argv": []any{"sh", "-c", "exit 3"}, "ok_exit_codes": []any{0, 3}})
	if err != nil {
		t.Errorf("ok exit code: %v", err)
	}
}

func TestExecJSONAndEnv(t *testing.T) {
	t.Setenv("EVENTFN_SECRET_TOKEN", "hunter2")
	res, err := run(t, &Exec{}, map[string]any{
		"argv": []any{"sh", "-c", `printf '{"a": "%s", "leak": "%s"}' "$GREETING" "$EVENTFN_SECRET_TOKEN"`},
		"env":  map[string]any{"GREETING": "hi"},
	})
	if err != nil {
		t.Fatal(err)
	}
	js := res["json"].(map[string]any)
	if js["a"] != "hi" || js["leak"] != "" {
		t.Errorf("json = %v: env must be given explicitly, not inherited", js)
	}
}

func TestExecOutputIsCapped(t *testing.T) {
	res, err := run(t, &Exec{}, map[string]any{
		"argv":       []any{"sh", "-c", "head -c 5000000 /dev/zero"},
		"max_output": 1000,
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(res["stdout"].(string)); n != 1000 || res["truncated"] != true {
		t.Errorf("kept %d bytes, truncated=%v", n, res["truncated"])
	}
}

func TestTimeoutKillsProcessGroupAndRetries(t *testing.T) {
	var attempts []Attempt
	start := time.Now()
	_, err := Do(context.Background(), RetryPolicy{Attempts: 2, Backoff: "constant", Initial: time.Millisecond},
		100*time.Millisecond, func(ctx context.Context, _ int) (Result, error) {
			// The child sleeps in a subshell: only killing the group ends it.
			return RunCommand(ctx, ExecParams{Argv: []string{"sh", "-c", "sleep 30 & wait"}}, nil)
		}, func(a Attempt) { attempts = append(attempts, a) })
	var te *TimeoutError
	if !errors.As(err, &te) {
		t.Fatalf("err = %v, want TimeoutError", err)
	}
	if len(attempts) != 2 {
		t.Errorf("attempts = %d, want 2 (timeouts are retryable)", len(attempts))
	}
	if time.Since(start) > 20*time.Second {
		t.Errorf("the process group was not killed")
	}
}

func TestDoStopsOnPermanentError(t *testing.T) {
	n := 0
	_, err := Do(context.Background(), RetryPolicy{Attempts: 5, Backoff: "constant", Initial: time.Millisecond}, 0,
		func(context.Context, int) (Result, error) { n++; return nil, Permanent(errors.New("bad request")) }, nil)
	if err == nil || n != 1 {
		t.Errorf("n = %d, err = %v", n, err)
	}
	n = 0
	_, err = Do(context.Background(), RetryPolicy{Attempts: 4, Backoff: "exponential", Initial: time.Millisecond, Max: 2 * time.Millisecond}, 0,
		func(context.Context, int) (Result, error) { n++; return nil, errors.New("flaky") }, nil)
	if err == nil || n != 4 {
		t.Errorf("n = %d, want 4 attempts", n)
	}
}

func TestWebhookSignsAndClassifies(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secretFile, []byte("s3cret\n"), 0o600)
	var status atomic.Int32
	status.Store(200)
	var gotSig, gotBody, gotCT string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		gotBody, gotSig, gotCT = string(b), r.Header.Get(SignatureHeader), r.Header.Get("Content-Type")
		w.WriteHeader(int(status.Load()))
		w.Write([]byte(`{"ok": true}`))
	}))
	defer srv.Close()
	params := map[string]any{"url": srv.URL, "body": map[string]any{"n": 1}, "hmac_secret_file": secretFile}
	res, err := run(t, NewWebhook(), params)
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, []byte("s3cret"))
	mac.Write([]byte(gotBody))
	if gotSig != "sha256="+hex.EncodeToString(mac.Sum(nil)) || gotBody != `{"n":1}` || gotCT != "application/json" {
		t.Errorf("sig=%q body=%q ct=%q", gotSig, gotBody, gotCT)
	}
	if res["status"] != 200 || res["json"].(map[string]any)["ok"] != true {
		t.Errorf("res = %v", res)
	}
	for code, retry := range map[int32]bool{500: true, 503: true, 429: true, 400: false, 404: false} {
		status.Store(code)
		_, err := run(t, NewWebhook(), params)
		if err == nil || Retryable(err) != retry {
			t.Errorf("status %d: err=%v retryable=%v, want %v", code, err, Retryable(err), retry)
		}
	}
}

func TestWebhookRefusesRedirectToAnotherHost(t *testing.T) {
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("the other host must not be called")
	}))
	defer other.Close()
	srv := httptest.NewServer(http.RedirectHandler(strings.Replace(other.URL, "127.0.0.1", "localhost", 1), http.StatusFound))
	defer srv.Close()
	_, err := run(t, NewWebhook(), map[string]any{"url": srv.URL})
	if err == nil || Retryable(err) || !strings.Contains(err.Error(), "another host") {
		t.Errorf("err = %v", err)
	}
}

func TestDecodeConvertsRenderedValues(t *testing.T) {
	var p ExecParams
	err := decode(map[string]any{"argv": []any{"x", 5, true, map[string]any{"a": 1}}, "ok_exit_codes": []any{"0", 2.0}}, &p)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(p.Argv, "|") != `x|5|true|{"a":1}` || len(p.OKExitCodes) != 2 || p.OKExitCodes[1] != 2 {
		t.Errorf("p = %+v", p)
	}
	if err := decode(map[string]any{"ok_exit_codes": []any{"zero"}}, &p); err == nil || Retryable(err) {
		t.Errorf("bad int must be a permanent error: %v", err)
	}
}
