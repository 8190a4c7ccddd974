package journal

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/rules"
	"github.com/eventfn/eventfn/runner"
)

// emitRuns records the message ids its steps ran for, and what the
// settler had acknowledged by then.
type emitRuns struct {
	mu    sync.Mutex
	ran   map[string]int
	acked *ackLog
}

func (o *emitRuns) Run(_ context.Context, req actions.Request) (actions.Result, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ran[req.MessageID]++
	if o.acked.has(req.Params["parent"].(string)) {
		return nil, fmt.Errorf("the parent %s was acknowledged before its emitted event ran", req.Params["parent"])
	}
	return actions.Result{}, nil
}

// ackLog is a settler that records the ids it acknowledged.
type ackLog struct {
	mu    sync.Mutex
	ids   map[string]bool
	fates chan string
}

func (a *ackLog) has(id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ids[id]
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

// TestEmittedEventsShareTheirParentsKey: with the durable journal a plan's
// next plan of the same key waits for its settlement (the key's barrier),
// and a message that emits is settled only once its emitted events are. An
// emitted event under its parent's key must not wait for the parent (a
// deadlock), nor may parents hold every settlement slot while their events
// wait for one: 40 orders, each emitting an event under its own key, run
// with concurrency 2 (8 settlement slots), and every one is acknowledged
// after its event ran.
func TestEmittedEventsShareTheirParentsKey(t *testing.T) {
	j, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	acked := &ackLog{ids: map[string]bool{}, fates: make(chan string, 64)}
	runs := &emitRuns{ran: map[string]int{}, acked: acked}
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
	timeout := time.After(10 * time.Second)
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
	runs.mu.Lock()
	defer runs.mu.Unlock()
	for i := range n {
		if id := fmt.Sprintf("o%d:emit:user", i); runs.ran[id] != 1 {
			t.Errorf("event %s ran %d times, want 1", id, runs.ran[id])
		}
	}
}

// blockOnce is an effect that, the first time, waits (reporting on
// started) until its context ends; later it completes, counting.
type blockOnce struct {
	mu      sync.Mutex
	calls   int
	done    int
	started chan struct{}
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
	return actions.Result{}, nil
}

// TestEmittedEventCutOffLeavesItsParentForRedelivery: an emitted event
// lives in the runner only. When the runner stops while it runs, the
// message that emitted it is not acknowledged (before, it was, and the
// event was lost): it is left for redelivery, and on redelivery its emit
// step runs again (emit steps are not recorded done), the event is emitted
// again under the same id, and its plan completes, once. With the in-memory
// journal and with the durable one, replayed in between.
func TestEmittedEventCutOffLeavesItsParentForRedelivery(t *testing.T) {
	for _, kind := range []string{"memory", "durable"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			mem := runner.NewMemoryJournal(0, 0)
			open := func() runner.Journal {
				if kind == "memory" {
					return mem
				}
				j, err := Open(dir, Options{})
				if err != nil {
					t.Fatal(err)
				}
				return j
			}
			eff := &blockOnce{started: make(chan struct{}, 1)}
			reg := actions.Standard(actions.Options{Logger: slog.New(slog.DiscardHandler)})
			reg.Register(actions.FromSpec("provision", actions.Spec{}, eff))
			rs, err := rules.Parse("t.yaml", []byte(`
version: 1
types: [order_user]
rules:
  - name: order
    on: order
    key: payload.order_uuid
    steps:
      - log: {level: debug, message: before}
      - emit: {type: order_user, payload: {order_uuid: "{{ payload.order_uuid }}"}, key: user}
  - name: user
    on: order_user
    key: payload.order_uuid
    steps:
      - provision: {}
`), rules.Options{Actions: reg})
			if err != nil {
				t.Fatal(err)
			}
			run := func(ctx context.Context, j runner.Journal) string {
				src := &chanSource{msgs: make(chan *runner.Message, 1)}
				s := make(fateSettler, 1)
				r := runner.New(runner.Config{Rules: rs, Actions: reg, Logger: slog.New(slog.DiscardHandler), Journal: j,
					ShutdownTimeout: 50 * time.Millisecond, Sources: []runner.Source{src}})
				ctx, cancel := context.WithCancel(ctx)
				done := make(chan error, 1)
				go func() { done <- r.Run(ctx) }()
				src.msgs <- &runner.Message{Source: "t", Type: "order", ID: "m1", Body: []byte(`{"order_uuid": "u1"}`), Settler: s}
				fate := <-s
				cancel()
				if err := <-done; err != nil {
					t.Errorf("run: %v", err)
				}
				return fate
			}

			ctx, cancel := context.WithCancel(context.Background())
			go func() { <-eff.started; cancel() }()
			j := open()
			if fate := run(ctx, j); fate != "requeue" {
				t.Fatalf("the runner stopped while the emitted event ran: its parent's fate %q, want requeue", fate)
			}
			if kind == "durable" {
				if err := j.Close(); err != nil {
					t.Fatal(err)
				}
			}
			j = open()
			defer j.Close()
			if fate := run(context.Background(), j); fate != "ack" {
				t.Fatalf("redelivery: fate %q, want ack", fate)
			}
			eff.mu.Lock()
			defer eff.mu.Unlock()
			if eff.calls != 2 || eff.done != 1 {
				t.Errorf("the emitted event's step ran %d times, completed %d: want cut off once, then completed once", eff.calls, eff.done)
			}
		})
	}
}
