package actions

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// gone reports whether process pid has ended (absent, or a zombie waiting
// for a parent that is not us).
func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// pid (comm) S ...: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && (s[i+2] == 'Z' || s[i+2] == 'X')
}

func TestExitZeroWinsOverABackgroundChildHoldingOutput(t *testing.T) {
	res, err := (&Exec{}).Run(context.Background(), Request{Params: map[string]any{
		"argv": []any{"sh", "-c", "sleep 300 & echo $!"},
	}})
	if err != nil {
		t.Fatalf("exit 0 with a background child: %v, want success", err)
	}
	if res["exit_code"] != 0 || res["warning"] == nil {
		t.Fatalf("result %v, want exit_code 0 and a warning", res)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(res["stdout"].(string)))
	if err != nil {
		t.Fatalf("stdout %q: %v", res["stdout"], err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !gone(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the background sleep %d is still running", pid)
		}
		time.Sleep(10 * time.Millisecond) // polling the process table: no signal to wait on
	}
}

func TestStartWithoutDescriptorsIsTransient(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	low := lim
	low.Cur = uint64(len(entries)) // every further open fails with EMFILE
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	_, runErr := (&Exec{}).Run(context.Background(), Request{Params: map[string]any{"argv": []any{"true"}}})
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if runErr == nil {
		t.Fatal("the command started with no descriptor left")
	}
	if !errors.Is(runErr, syscall.EMFILE) || !Retryable(runErr) {
		t.Fatalf("error %v (retryable %v), want EMFILE and retryable", runErr, Retryable(runErr))
	}
	if _, err := (&Exec{}).Run(context.Background(), Request{Params: map[string]any{"argv": []any{"true"}}}); err != nil {
		t.Fatalf("after the limit is restored: %v", err)
	}
}

func TestHeaderWithCRLFIsPermanent(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	for _, h := range []map[string]any{
		{"X-A": "a\r\nX-Injected: 1"},
		{"X-A": "a\nb"},
		{"X-A\r\nX-B": "a"},
		{"X-A": "a\x00"},
	} {
		_, err := NewWebhook().Run(context.Background(), Request{Params: map[string]any{"url": srv.URL, "headers": h}})
		if err == nil || Retryable(err) {
			t.Errorf("headers %q: error %v (retryable %v), want a permanent error", h, err, Retryable(err))
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("%d requests reached the server", n)
	}
}

func TestScriptWithoutAnEncodableEventFails(t *testing.T) {
	_, err := (&Script{}).Run(context.Background(), Request{Params: map[string]any{"path": "/bin/cat"}})
	if err == nil || Retryable(err) || !strings.Contains(err.Error(), "cannot be encoded") {
		t.Fatalf("script with no event JSON: %v, want a permanent failure", err)
	}
}
