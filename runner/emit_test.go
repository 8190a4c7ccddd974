package runner

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/rules"
)

// recorder is an action kind that records the requests it runs.
type recorder struct {
	mu   sync.Mutex
	reqs []actions.Request
	got  chan actions.Request
}

func (rc *recorder) Run(_ context.Context, req actions.Request) (actions.Result, error) {
	rc.mu.Lock()
	rc.reqs = append(rc.reqs, req)
	rc.mu.Unlock()
	rc.got <- req
	return actions.Result{}, nil
}

func newRecordingRunner(t *testing.T, src string, tp *sdktrace.TracerProvider) (*Runner, *recorder) {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := actions.Standard(actions.Options{Logger: logger})
	rc := &recorder{got: make(chan actions.Request, 64)}
	reg.Register(actions.FromSpec("record", actions.Spec{Keys: []string{"what", "headers", "item", "index"}}, rc))
	rs, err := rules.Parse("test.yaml", []byte(src), rules.Options{Actions: reg})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Rules: rs, Actions: reg, Logger: logger}
	if tp != nil {
		cfg.TracerProvider = tp
	}
	return New(cfg), rc
}

func TestEmitFeedsDerivedEventsThroughTheRules(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	r, rc := newRecordingRunner(t, `
version: 1
rules:
  - name: reconcile
    on: timer
    steps:
      - {id: a, emit: {type: order, payload: {order_uuid: o1}, key: o1}}
      - {id: b, emit: {type: order, payload: {order_uuid: o2}}}
      - {record: {what: "{{ [steps.a.id, steps.b.id] }}"}}
  - name: order
    on: order
    steps:
      - record: {what: "{{ payload.order_uuid }}", headers: "{{ headers }}"}
`, tp)
	s := newSettler()
	r.Deliver(context.Background(), &Message{Source: "tick", Type: "timer", Body: []byte(`{"name": "hourly"}`), ID: "t1", Settler: s})
	if f := <-s.done; f != "ack" {
		t.Fatalf("timer message: %s", f)
	}
	seen := map[string]actions.Request{}
	var ids []any
	for len(seen) < 2 || ids == nil {
		req := <-rc.got
		switch req.Rule {
		case "order":
			seen[req.Params["what"].(string)] = req
		case "reconcile":
			ids = req.Params["what"].([]any)
		}
	}
	r.disp.Wait()
	if ids[0] != "t1:emit:o1" || len(ids[1].(string)) != len("t1:emit:")+16 {
		t.Errorf("emitted ids %v: want t1:emit:o1 and t1:emit:<content hash>", ids)
	}
	o1 := seen["o1"]
	if o1.MessageID != "t1:emit:o1" || o1.Type != "order" {
		t.Errorf("emitted event ran as %+v", o1)
	}
	h := o1.Params["headers"].(map[string]any)
	if h[HeaderParentID] != "t1" || h[HeaderEmittedBy] != "reconcile" || h[HeaderEmitDepth] != "1" || h["traceparent"] == nil {
		t.Errorf("emitted headers %v", h)
	}
	if got := testCounter(r.m.Received.WithLabelValues(EmitSource, "order")); got != 2 {
		t.Errorf("received{source=emit} = %v, want 2", got)
	}
	if got := testCounter(r.m.Settled.WithLabelValues(EmitSource, "order", "acked")); got != 2 {
		t.Errorf("settled{source=emit,acked} = %v, want 2", got)
	}
	// Same trace: the emitted events' spans are children of the emitting
	// step's attempt.
	var timerTrace, emitStep string
	for _, sp := range rec.Ended() {
		if sp.Name() == "process timer" {
			timerTrace = sp.SpanContext().TraceID().String()
		}
		if sp.Name() == "step a" {
			emitStep = sp.SpanContext().SpanID().String()
		}
	}
	found := false
	for _, sp := range rec.Ended() {
		if sp.Name() == "process order" && sp.Parent().SpanID().String() == emitStep {
			found = true
			if sp.SpanContext().TraceID().String() != timerTrace {
				t.Error("emitted event's span is in another trace")
			}
		}
	}
	if !found {
		t.Error("no emitted event's span is a child of step a")
	}
}

func TestEmitLoopIsBounded(t *testing.T) {
	r, rc := newRecordingRunner(t, `
version: 1
types: [loop]
rules:
  - name: loop
    on: loop
    steps:
      - record: {what: "{{ headers?.[\"x-eventfn-emit-depth\"] ?? \"0\" }}"}
      - emit: {type: loop, key: again}
        retry: {attempts: 1}
`, nil)
	s := newSettler()
	r.Deliver(context.Background(), &Message{Source: "t", Type: "loop", Body: []byte(`{}`), ID: "l", Settler: s})
	<-s.done
	for i := 0; i <= MaxEmitDepth; i++ {
		<-rc.got
	}
	r.disp.Wait()
	if n := len(rc.reqs); n != MaxEmitDepth+1 {
		t.Errorf("loop ran %d times, want %d (the delivered event and %d emitted)", n, MaxEmitDepth+1, MaxEmitDepth)
	}
	if got := testCounter(r.m.Settled.WithLabelValues(EmitSource, "loop", "acked")); got != MaxEmitDepth {
		t.Errorf("settled emitted loops = %v, want %d", got, MaxEmitDepth)
	}
	if got := testCounter(r.m.Plans.WithLabelValues("loop", "failed")); got != 1 {
		t.Errorf("failed loop plans = %v, want 1 (the one that would go past the depth)", got)
	}
}

func testLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newRunnerWith(t *testing.T, reg *actions.Registry, src string) *Runner {
	t.Helper()
	rs, err := rules.Parse("test.yaml", []byte(src), rules.Options{Actions: reg})
	if err != nil {
		t.Fatal(err)
	}
	return New(Config{Rules: rs, Actions: reg, Logger: testLogger()})
}

// gateAction announces each run and holds it until release is closed.
type gateAction struct {
	running chan int
	release chan struct{}
	now     atomic.Int32
	max     atomic.Int32
}

func (g *gateAction) Run(ctx context.Context, req actions.Request) (actions.Result, error) {
	n := g.now.Add(1)
	defer g.now.Add(-1)
	for m := g.max.Load(); n > m && !g.max.CompareAndSwap(m, n); m = g.max.Load() {
	}
	g.running <- req.Params["n"].(int)
	select {
	case <-g.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return actions.Result{}, nil
}
