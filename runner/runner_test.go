package runner

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/rules"
)

func TestDispatcherKeepsOrderPerKey(t *testing.T) {
	d := NewDispatcher(4, 16)
	var mu sync.Mutex
	got := map[string][]int{}
	for i := 0; i < 200; i++ {
		key := fmt.Sprintf("k%d", i%5)
		if err := d.Submit(context.Background(), key, func() {
			mu.Lock()
			got[key] = append(got[key], i)
			mu.Unlock()
		}); err != nil {
			t.Fatal(err)
		}
	}
	d.Wait()
	for key, seq := range got {
		if len(seq) != 40 {
			t.Errorf("%s: %d jobs", key, len(seq))
		}
		for j := 1; j < len(seq); j++ {
			if seq[j] < seq[j-1] {
				t.Fatalf("%s ran out of order: %v", key, seq)
			}
		}
	}
}

func TestDispatcherRunsKeysInParallel(t *testing.T) {
	d := NewDispatcher(2, 4)
	started := make(chan struct{}, 2)
	release := make(chan struct{})
	for _, k := range []string{"a", "b"} {
		d.Submit(context.Background(), k, func() { started <- struct{}{}; <-release })
	}
	<-started
	<-started // both running at once: different keys are not serialised
	close(release)
	d.Wait()
}

// settler records what became of a message.
type settler struct {
	mu    sync.Mutex
	fates []string
	done  chan string
}

func newSettler() *settler { return &settler{done: make(chan string, 16)} }
func (s *settler) record(f string) error {
	s.mu.Lock()
	s.fates = append(s.fates, f)
	s.mu.Unlock()
	s.done <- f
	return nil
}
func (s *settler) Ack(context.Context) error                    { return s.record("ack") }
func (s *settler) Requeue(context.Context) error                { return s.record("requeue") }
func (s *settler) DeadLetter(_ context.Context, r string) error { return s.record("dead-letter: " + r) }

func newRunner(t *testing.T, src string) (*Runner, *Metrics) {
	t.Helper()
	rs, err := rules.Parse("test.yaml", []byte(src), rules.Options{Actions: actions.Builtin()})
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := NewMetrics()
	r := New(Config{Rules: rs, Actions: actions.Standard(actions.Options{Logger: logger}), Logger: logger, Metrics: m})
	return r, m
}

func deliver(t *testing.T, r *Runner, body string, id string, dlq bool) string {
	t.Helper()
	s := newSettler()
	err := r.Deliver(context.Background(), &Message{Source: "t", Body: []byte(body), Type: "order", ID: id,
		DeadLetterOnFailure: dlq, Settler: s})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case f := <-s.done:
		return f
	case <-time.After(30 * time.Second):
		t.Fatal("message never settled")
	}
	return ""
}

func TestRetryThenOnFailureThenDeadLetter(t *testing.T) {
	dir := t.TempDir()
	count := filepath.Join(dir, "count")
	failed := filepath.Join(dir, "failed")
	r, m := newRunner(t, fmt.Sprintf(`
version: 1
rules:
  - name: flaky
    on: order
    steps:
      - id: try
        exec: [sh, -c, 'echo x >> %s; exit 1']
        retry: {attempts: 3, backoff: constant, initial: 1ms}
    on_failure:
      - exec: [sh, -c, 'printf "%%s" "$1" > %s', sh, "{{ error }}"]
`, count, failed))
	fate := deliver(t, r, `{"order_uuid": "o1"}`, "", true)
	if !strings.HasPrefix(fate, "dead-letter: step try") {
		t.Errorf("fate = %q", fate)
	}
	b, _ := os.ReadFile(count)
	if n := strings.Count(string(b), "x"); n != 3 {
		t.Errorf("attempts = %d, want 3", n)
	}
	e, _ := os.ReadFile(failed)
	if !strings.Contains(string(e), "exited with code 1") {
		t.Errorf("on_failure saw error %q", e)
	}
	_ = m
}

func TestFailedMessageAckedWhenPolicyIsAck(t *testing.T) {
	r, _ := newRunner(t, `
version: 1
rules:
  - name: bad
    on: order
    steps: [{exec: [false], retry: {attempts: 1}}]
`)
	if fate := deliver(t, r, `{}`, "", false); fate != "ack" {
		t.Errorf("fate = %q, want ack", fate)
	}
}

// Bad input (undecodable bodies, rules that fail to evaluate, and the
// rest): TestBadInputCatalogue in catalogue_test.go.

func TestDuplicateIsSkipped(t *testing.T) {
	dir := t.TempDir()
	count := filepath.Join(dir, "count")
	r, m := newRunner(t, fmt.Sprintf(`
version: 1
rules:
  - {name: once, on: order, steps: [{exec: [sh, -c, 'echo x >> %s']}]}
`, count))
	deliver(t, r, `{}`, "id-1", false)
	if fate := deliver(t, r, `{}`, "id-1", false); fate != "ack" {
		t.Errorf("duplicate fate = %q", fate)
	}
	b, _ := os.ReadFile(count)
	if n := strings.Count(string(b), "x"); n != 1 {
		t.Errorf("ran %d times, want 1", n)
	}
	if got := testCounter(m.Duplicates.WithLabelValues("t", "order")); got != 1 {
		t.Errorf("duplicate metric = %v", got)
	}
}

// TestDeadLetteredMessageThatComesBackIsDeadLetteredAgain: the journal
// records a message as handled before the broker hears of its fate. When
// the dead-lettering does not reach the broker (the connection closed
// first; found by the soak test), the broker redelivers the message; it
// used to be acknowledged as a duplicate and so was lost: in neither the
// queue nor the dead-letter queue. It is dead-lettered again, without
// running its plan again.
func TestDeadLetteredMessageThatComesBackIsDeadLetteredAgain(t *testing.T) {
	count := filepath.Join(t.TempDir(), "count")
	r, m := newRunner(t, fmt.Sprintf(`
version: 1
rules:
  - name: doomed
    on: order
    steps: [{exec: [sh, -c, 'echo x >> %s; exit 1'], retry: {attempts: 1}}]
`, count))
	if fate := deliver(t, r, `{}`, "m-dl", true); !strings.HasPrefix(fate, "dead-letter: step") {
		t.Fatalf("first delivery: fate = %q", fate)
	}
	// The redelivery after the dead-lettering was lost.
	if fate := deliver(t, r, `{}`, "m-dl", true); !strings.HasPrefix(fate, "dead-letter: dead-lettered before") {
		t.Errorf("redelivery of a dead-lettered message: fate = %q, want dead-lettered again", fate)
	}
	// A source whose policy is now ack acks it (nothing to dead-letter to).
	if fate := deliver(t, r, `{}`, "m-dl", false); fate != "ack" {
		t.Errorf("with on_failure: ack, fate = %q", fate)
	}
	if b, _ := os.ReadFile(count); strings.Count(string(b), "x") != 1 {
		t.Errorf("the plan ran %d times, want once", strings.Count(string(b), "x"))
	}
	if got := testCounter(m.Duplicates.WithLabelValues("t", "order")); got != 2 {
		t.Errorf("duplicate metric = %v, want 2", got)
	}
	// A message acked before stays acked on its redelivery.
	r2, _ := newRunner(t, `
version: 1
rules:
  - {name: fine, on: order, steps: [{log: hi}]}
`)
	deliver(t, r2, `{}`, "m-ok", true)
	if fate := deliver(t, r2, `{}`, "m-ok", true); fate != "ack" {
		t.Errorf("redelivery of an acked message: fate = %q", fate)
	}
}

func TestInterruptedPlanIsRequeuedAndResumes(t *testing.T) {
	dir := t.TempDir()
	second, gate := filepath.Join(dir, "second"), filepath.Join(dir, "gate")
	var calls atomic.Int32
	stepOneDone := make(chan struct{}, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		fmt.Fprint(w, `{"from": "one"}`)
		stepOneDone <- struct{}{}
	}))
	defer hook.Close()
	src := fmt.Sprintf(`
version: 1
rules:
  - name: two-steps
    on: order
    steps:
      - id: one
        webhook: {url: %q}
      - id: two
        exec: [sh, -c, 'test -e %s || sleep 30; echo "$1" >> %s', sh, "{{ steps.one.json.from }}"]
        retry: {attempts: 1}
`, hook.URL, gate, second)
	rs, err := rules.Parse("t.yaml", []byte(src), rules.Options{Actions: actions.Builtin()})
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	j := NewMemoryJournal(0, 0)
	start := func(ctx context.Context) (*settler, chan error) {
		s := newSettler()
		msg := &Message{Source: "t", Body: []byte(`{}`), Type: "order", ID: "m1", Settler: s}
		r := New(Config{Rules: rs, Actions: actions.Standard(actions.Options{Logger: logger}), Logger: logger,
			Journal: j, ShutdownTimeout: 50 * time.Millisecond, Sources: []Source{&sliceSource{msgs: []*Message{msg}}}})
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		return s, done
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, done := start(ctx)
	<-stepOneDone
	cancel() // the runner stops while step two sleeps
	if fate := <-s.done; fate != "requeue" {
		t.Fatalf("fate = %q, want requeue", fate)
	}
	<-done

	os.WriteFile(gate, nil, 0o600)
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	s, _ = start(ctx2)
	if fate := <-s.done; fate != "ack" {
		t.Fatalf("redelivery fate = %q", fate)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("step one ran %d times, want once (the plan resumed)", n)
	}
	if b, _ := os.ReadFile(second); strings.TrimSpace(string(b)) != "one" {
		t.Errorf("step two saw %q: step one's recorded result must be restored", b)
	}
}

// sliceSource delivers its messages, then waits for its context to end.
type sliceSource struct{ msgs []*Message }

func (s *sliceSource) Name() string { return "slice" }
func (s *sliceSource) Run(ctx context.Context, deliver Deliver) error {
	for _, m := range s.msgs {
		if err := deliver(ctx, m); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return nil
}
