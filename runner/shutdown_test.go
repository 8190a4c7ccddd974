package runner

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/rules"
)

// gate is an action that tells when it starts and then waits for release
// (or, when release is nil, for its context to end).
type gate struct {
	started chan string
	release chan struct{}
	ended   chan error
}

func newGate() *gate {
	return &gate{started: make(chan string, 8), ended: make(chan error, 8)}
}

func (g *gate) Run(ctx context.Context, req actions.Request) (actions.Result, error) {
	g.started <- req.MessageID
	select {
	case <-g.release:
		g.ended <- nil
		return actions.Result{}, nil
	case <-ctx.Done():
		g.ended <- ctx.Err()
		return nil, ctx.Err()
	}
}

// gateRunner returns a runner whose rule "slow" runs the gate, with its
// messages keyed by payload.k.
func gateRunner(t *testing.T, g *gate, timeout time.Duration, src Source) *Runner {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	reg := actions.Standard(actions.Options{Logger: logger})
	reg.Register(actions.FromSpec("gate", actions.Spec{Keys: []string{"name"}, Shorthand: "name"}, g))
	rs, err := rules.Parse("gate.yaml", []byte(`
version: 1
rules:
  - name: slow
    on: order
    key: payload.k
    steps:
      - gate: wait
        retry: {attempts: 1}
        timeout: 1h
`), rules.Options{Actions: reg})
	if err != nil {
		t.Fatal(err)
	}
	return New(Config{Rules: rs, Actions: reg, Logger: logger, Concurrency: 2,
		ShutdownTimeout: timeout, Sources: []Source{src}})
}

func orderMsg(id, key string) *Message {
	return &Message{Source: "ops", Type: "order", ID: id, Body: []byte(`{"k": "` + key + `"}`), Settler: newOpsSettler()}
}

func TestShutdownLetsInFlightPlansFinish(t *testing.T) {
	g := newGate()
	g.release = make(chan struct{})
	first, late := orderMsg("first", "a"), orderMsg("late", "b")
	src := &opsSource{msgs: []*Message{first}, late: []*Message{late}, lateErrs: make(chan error, 1)}
	r := gateRunner(t, g, time.Minute, src)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	if id := <-g.started; id != "first" {
		t.Fatalf("started %q", id)
	}
	if !r.Ready() {
		t.Error("not ready while running")
	}

	cancel() // SIGTERM

	// A message the source hands over after the signal is not taken: it is
	// left to the broker, and nothing runs for it.
	if err := <-src.lateErrs; err != nil {
		t.Fatalf("deliver after shutdown: %v", err)
	}
	if f := late.Settler.(*opsSettler).wait(t); f != "requeue" {
		t.Errorf("late message fate = %q, want requeue", f)
	}
	// Draining: not ready, still running the in-flight plan.
	deadline := time.Now().Add(10 * time.Second)
	for r.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("still ready while draining")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) while a plan was in flight", err)
	default:
	}

	close(g.release) // the in-flight plan finishes...
	if f := first.Settler.(*opsSettler).wait(t); f != "ack" {
		t.Errorf("in-flight message fate = %q, want ack", f)
	}
	if err := <-done; err != nil { // ...and then Run returns
		t.Fatal(err)
	}
	if err := <-g.ended; err != nil {
		t.Errorf("in-flight step was cancelled: %v", err)
	}
	select {
	case id := <-g.started:
		t.Errorf("a step ran for %q after shutdown began", id)
	default:
	}
	if n := testCounterOps(r.Metrics().Plans.WithLabelValues("slow", "success")); n != 1 {
		t.Errorf("plans{slow,success} = %v", n)
	}
}

func TestShutdownTimeoutCancelsAndRequeues(t *testing.T) {
	g := newGate() // never released: only the shutdown timeout ends it
	running, queued := orderMsg("running", "same"), orderMsg("queued", "same")
	src := &opsSource{msgs: []*Message{running, queued}, delivered: make(chan struct{})}
	r := gateRunner(t, g, 50*time.Millisecond, src)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	if id := <-g.started; id != "running" {
		t.Fatalf("started %q", id)
	}
	<-src.delivered // the second message waits behind the first (same key)
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after the shutdown timeout")
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("Run returned after %v, before the shutdown timeout", d)
	}
	if err := <-g.ended; err == nil {
		t.Error("the running step was not cancelled")
	}
	for _, m := range []*Message{running, queued} {
		if f := m.Settler.(*opsSettler).wait(t); f != "requeue" {
			t.Errorf("%s: fate = %q, want requeue (unacknowledged, redelivered)", m.ID, f)
		}
	}
	select {
	case id := <-g.started:
		t.Errorf("the queued plan ran (%q) after the timeout", id)
	default:
	}
	if n := testCounterOps(r.Metrics().Plans.WithLabelValues("slow", "interrupted")); n != 2 {
		t.Errorf("plans{slow,interrupted} = %v, want 2", n)
	}
	if n := testCounterOps(r.Metrics().Settled.WithLabelValues("ops", "order", "acked")); n != 0 {
		t.Errorf("%v messages acked", n)
	}
}

// drainingSource is like a broker source: once stopped, it keeps its
// connection until its messages are settled (or its own drain timeout).
type drainingSource struct {
	msg     *Message
	settled chan string
}

func (s *drainingSource) Name() string { return "draining" }
func (s *drainingSource) Run(ctx context.Context, deliver Deliver) error {
	if err := deliver(ctx, s.msg); err != nil {
		return err
	}
	<-ctx.Done()
	select {
	case f := <-s.msg.Settler.(*opsSettler).fates:
		s.settled <- f
	case <-time.After(time.Minute):
		s.settled <- "drain timeout"
	}
	return nil
}

func TestShutdownDeadlineStartsAtTheSignal(t *testing.T) {
	g := newGate() // never released
	src := &drainingSource{msg: orderMsg("stuck", "k"), settled: make(chan string, 1)}
	r := gateRunner(t, g, 100*time.Millisecond, src)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	<-g.started
	start := time.Now()
	cancel()
	// The plan is cancelled at the shutdown timeout while the source still
	// waits for it: its message is requeued over the open connection.
	if f := <-src.settled; f != "requeue" {
		t.Errorf("fate seen by the draining source = %q, want requeue", f)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("stop took %v: the deadline waited for the source's drain", d)
	}
}
