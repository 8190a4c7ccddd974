package journal

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/rules"
	"github.com/eventfn/eventfn/runner"
)

// emitRuns records the message ids its steps ran for.
type emitRuns struct {
	mu     sync.Mutex
	ran    map[string]int
	ranOne chan struct{}
}

func (o *emitRuns) Run(_ context.Context, req actions.Request) (actions.Result, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ran[req.MessageID]++
	o.ranOne <- struct{}{}
	return actions.Result{}, nil
}

// ackLog is a settler that records the ids it acknowledged.
type ackLog struct {
	mu    sync.Mutex
	ids   map[string]bool
	fates chan string
}

type ackOf struct {
	l  *ackLog
	id string
}

func (s ackOf) Ack(context.Context) error {
	s.l.mu.Lock()
	s.l.ids[s.id] = true
	s.l.mu.Unlock()
	s.l.fates <- "ack"
	return nil
}
func (s ackOf) Requeue(context.Context) error            { s.l.fates <- "requeue"; return nil }
func (s ackOf) DeadLetter(context.Context, string) error { s.l.fates <- "dead-letter"; return nil }

// TestEmitUnderAFullDispatcher: 40 orders, each emitting an event under
// its own key, with concurrency 2 (room for 8 jobs) and the durable journal
// (the next plan of a key waits for the settlement of the last). Every
// order is acknowledged and every emitted event runs once. Before emitted
// events took no room, both workers sat in an emit step waiting for room
// that only the orders queued behind them could free, and nothing ran.
func TestEmitUnderAFullDispatcher(t *testing.T) {
	j, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	acked := &ackLog{ids: map[string]bool{}, fates: make(chan string, 64)}
	runs := &emitRuns{ran: map[string]int{}, ranOne: make(chan struct{}, 64)}
	reg := actions.Standard(actions.Options{Logger: slog.New(slog.DiscardHandler)})
	reg.Register(actions.FromSpec("note", actions.Spec{Keys: []string{"parent"}}, runs))
	rs, err := rules.Parse("t.yaml", []byte(`
version: 1
types: [order_user]
rules:
  - name: order
    on: order
    key: payload.order_uuid
    steps:
      - emit: {type: order_user, payload: {order_uuid: "{{ payload.order_uuid }}", parent: "{{ id }}"}, key: user}
  - name: user
    on: order_user
    key: payload.order_uuid
    steps:
      - note: {parent: "{{ payload.parent }}"}
`), rules.Options{Actions: reg})
	if err != nil {
		t.Fatal(err)
	}
	src := &chanSource{msgs: make(chan *runner.Message, 64)}
	r := runner.New(runner.Config{Rules: rs, Actions: reg, Logger: slog.New(slog.DiscardHandler), Journal: j,
		Concurrency: 2, Sources: []runner.Source{src}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	const n = 40
	for i := range n {
		id := fmt.Sprintf("o%d", i)
		src.msgs <- &runner.Message{Source: "t", Type: "order", ID: id, Settler: ackOf{acked, id},
			Body: []byte(fmt.Sprintf(`{"order_uuid": "u%d"}`, i))}
	}
	timeout := time.After(60 * time.Second)
	for i := range n {
		select {
		case f := <-acked.fates:
			if f != "ack" {
				t.Fatalf("message %d: fate %s", i, f)
			}
		case <-timeout:
			t.Fatalf("%d of %d orders settled after 60 s: a deadlock", i, n)
		}
	}
	for range n { // the events may run after their orders settle
		select {
		case <-runs.ranOne:
		case <-timeout:
			t.Fatal("emitted events did not run")
		}
	}
	runs.mu.Lock()
	defer runs.mu.Unlock()
	for i := range n {
		if id := fmt.Sprintf("o%d:emit:user", i); runs.ran[id] != 1 {
			t.Errorf("event %s ran %d times, want 1", id, runs.ran[id])
		}
	}
}

// blockOnce is an effect that, the first time, waits (reporting on
// started) until its context ends; later it completes, counting (and
// reporting on finished).
type blockOnce struct {
	mu       sync.Mutex
	calls    int
	done     int
	started  chan struct{}
	finished chan struct{}
}

func (b *blockOnce) Run(ctx context.Context, _ actions.Request) (actions.Result, error) {
	b.mu.Lock()
	b.calls++
	first := b.calls == 1
	b.mu.Unlock()
	if first {
		b.started <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	b.mu.Lock()
	b.done++
	b.mu.Unlock()
	b.finished <- struct{}{}
	return actions.Result{}, nil
}

// TestResumedPlanEmitsAgain: a plan cut off by a stop after its emit step,
// with the event it emitted cut off too. The event lived in the runner
// only; the plan's message is redelivered, and since emit steps are never
// recorded done, its resumed plan emits the event again, under the same
// id, and the event's step completes, once. An event that had completed
// is skipped by the journal instead (TestResumedPlanEmitsAgain/completed).
// With the in-memory journal and with the durable one, replayed between.
func TestResumedPlanEmitsAgain(t *testing.T) {
	for _, c := range []struct {
		name, journal string
		eventCutOff   bool
	}{{"memory", "memory", true}, {"durable", "durable", true}, {"completed", "durable", false}} {
		t.Run(c.name, func(t *testing.T) {
			restart := newRestarts(t, c.journal)
			parentStep := &blockOnce{started: make(chan struct{}, 1), finished: make(chan struct{}, 2)}
			eventStep := &blockOnce{started: make(chan struct{}, 1), finished: make(chan struct{}, 2)}
			if !c.eventCutOff {
				eventStep.calls = 1 // its first call completes
			}
			reg := actions.Standard(actions.Options{Logger: slog.New(slog.DiscardHandler)})
			reg.Register(actions.FromSpec("after", actions.Spec{}, parentStep))
			reg.Register(actions.FromSpec("provision", actions.Spec{}, eventStep))
			rs, err := rules.Parse("t.yaml", []byte(`
version: 1
types: [order_user]
rules:
  - name: order
    on: order
    key: payload.order_uuid
    steps:
      - emit: {type: order_user, payload: {order_uuid: "{{ payload.order_uuid }}"}, key: user}
      - after: {}
  - name: user
    on: order_user
    steps: # no key: it runs beside the order's plan
      - provision: {}
`), rules.Options{Actions: reg})
			if err != nil {
				t.Fatal(err)
			}
			run := func(ctx context.Context, j runner.Journal) string {
				return runOnce(ctx, t, rs, reg, j, `{"order_uuid": "u1"}`)
			}

			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				<-parentStep.started
				if c.eventCutOff {
					<-eventStep.started
				} else {
					<-eventStep.finished
				}
				cancel()
			}()
			j := restart.open()
			if fate := run(ctx, j); fate != "requeue" {
				t.Fatalf("cut off: the order's fate %q, want requeue", fate)
			}
			restart.close(j)
			j = restart.open()
			defer j.Close()
			if fate := run(context.Background(), j); fate != "ack" {
				t.Fatalf("redelivery: fate %q, want ack", fate)
			}
			eventStep.mu.Lock()
			defer eventStep.mu.Unlock()
			if eventStep.done != 1 {
				t.Errorf("the emitted event's step completed %d times over both runs, want once", eventStep.done)
			}
			// Emitted again when it had completed, it is skipped, and its
			// second outbox record goes with it.
			if n := len(j.(runner.Outboxer).Outbox()); n != 0 {
				t.Errorf("outbox holds %d events, want 0", n)
			}
		})
	}
}

// TestEmittedEventOutlivesAStop: the order whose plan emitted an event is
// acknowledged once its plan is done; the runner stops while the event
// runs. The event was in the journal's outbox, so the next runner (the
// same in-memory journal, or the durable one replayed and compacted)
// delivers it again by itself, and it completes once; its completion
// empties the outbox.
func TestEmittedEventOutlivesAStop(t *testing.T) {
	for _, kind := range []string{"memory", "durable"} {
		t.Run(kind, func(t *testing.T) {
			restart := newRestarts(t, kind)
			eventStep := &blockOnce{started: make(chan struct{}, 1), finished: make(chan struct{}, 2)}
			reg := actions.Standard(actions.Options{Logger: slog.New(slog.DiscardHandler)})
			reg.Register(actions.FromSpec("provision", actions.Spec{}, eventStep))
			rs, err := rules.Parse("t.yaml", []byte(`
version: 1
types: [order_user]
rules:
  - name: order
    on: order
    key: payload.order_uuid
    steps:
      - emit: {type: order_user, payload: {order_uuid: "{{ payload.order_uuid }}", n: 3}, key: user}
  - name: user
    on: order_user
    when: payload.n == 3
    steps:
      - provision: {}
`), rules.Options{Actions: reg})
			if err != nil {
				t.Fatal(err)
			}
			start := func(j runner.Journal) (*chanSource, context.CancelFunc, chan error) {
				src := &chanSource{msgs: make(chan *runner.Message, 1)}
				r := runner.New(runner.Config{Rules: rs, Actions: reg, Logger: slog.New(slog.DiscardHandler), Journal: j,
					ShutdownTimeout: 50 * time.Millisecond, Sources: []runner.Source{src}})
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- r.Run(ctx) }()
				return src, cancel, done
			}
			outbox := func(j runner.Journal) int { return len(j.(runner.Outboxer).Outbox()) }

			j := restart.open()
			src, stop, done := start(j)
			s := make(fateSettler, 1)
			src.msgs <- &runner.Message{Source: "t", Type: "order", ID: "m1", Body: []byte(`{"order_uuid": "u1"}`), Settler: s}
			if fate := <-s; fate != "ack" {
				t.Fatalf("the order: fate %q, want ack (its plan is done)", fate)
			}
			<-eventStep.started
			stop() // while the emitted event runs
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if n := outbox(j); n != 1 {
				t.Fatalf("outbox holds %d events after the stop, want 1", n)
			}
			restart.close(j)

			j = restart.open()
			defer j.Close()
			if dj, ok := j.(*Journal); ok {
				if err := dj.Compact(); err != nil { // the record survives a compaction
					t.Fatal(err)
				}
			}
			_, stop, done = start(j) // nothing is delivered to it
			select {
			case <-eventStep.finished:
			case <-time.After(30 * time.Second):
				t.Fatal("the emitted event was not delivered again after the restart")
			}
			stop()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			eventStep.mu.Lock()
			defer eventStep.mu.Unlock()
			if eventStep.calls != 2 || eventStep.done != 1 {
				t.Errorf("the event's step ran %d times, completed %d: want cut off, then completed once", eventStep.calls, eventStep.done)
			}
			if n := outbox(j); n != 0 {
				t.Errorf("outbox holds %d events after the event completed, want 0", n)
			}
		})
	}
}

// TestEmittedEventWithASecretStaysOffTheDisk: an emitted event whose
// payload holds a secret's value runs, but is not written to the journal's
// outbox (secrets stay off the disk; the event is then lost if eventfn
// stops before it runs, and a warning says so).
func TestEmittedEventWithASecretStaysOffTheDisk(t *testing.T) {
	j, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	runs := &emitRuns{ran: map[string]int{}, ranOne: make(chan struct{}, 4)}
	reg := actions.Standard(actions.Options{Logger: slog.New(slog.DiscardHandler)})
	reg.Register(actions.FromSpec("note", actions.Spec{Keys: []string{"parent"}}, runs))
	rs, err := rules.Parse("t.yaml", []byte(`
version: 1
types: [order_user]
secrets:
  token: {env: EVENTFN_TEST_EMIT_TOKEN}
rules:
  - name: order
    on: order
    steps:
      - emit: {type: order_user, payload: {token: "{{ secrets.token }}"}, key: user}
  - name: user
    on: order_user
    steps:
      - note: {parent: "x"}
`), rules.Options{Actions: reg})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	src := &chanSource{msgs: make(chan *runner.Message, 1)}
	r := runner.New(runner.Config{Rules: rs, Actions: reg, Logger: slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil)), Journal: j,
		Secrets: map[string]any{"token": "s3cr3t-value"}, Sources: []runner.Source{src}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	s := make(fateSettler, 1)
	src.msgs <- &runner.Message{Source: "t", Type: "order", ID: "m1", Body: []byte(`{}`), Settler: s}
	if fate := <-s; fate != "ack" {
		t.Fatalf("fate %q", fate)
	}
	<-runs.ranOne
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(j.Path())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("s3cr3t-value")) {
		t.Error("the secret is in the journal")
	}
	if !strings.Contains(logs.String(), "emitted event holds a secret") {
		t.Errorf("no warning; log:\n%s", logs.String())
	}
}

// syncWriter serialises writes to w.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
