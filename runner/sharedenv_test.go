package runner

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/event"
	"github.com/eventfn/eventfn/rules"
)

// Plans of rules that read no step results share the event's environment
// (no copy per plan): two such rules running one event at once, under
// different keys, with failing steps, must not write it (run with -race),
// and a rule that reads steps.<id> still sees its own results.
func TestPlansShareTheEventsEnvironmentSafely(t *testing.T) {
	rs := opsParse(t, `
version: 1
rules:
  - name: a
    on: order
    key: '"a-" + payload.n'
    steps:
      - exec: [/bin/false]
        retry: {attempts: 1}
  - name: b
    on: order
    key: '"b-" + payload.n'
    steps:
      - exec: [/bin/false]
        retry: {attempts: 1}
        continue_on_error: true
      - log: {level: debug, message: "{{ payload.n }}"}
  - name: c
    on: order
    key: '"c-" + payload.n'
    steps:
      - id: first
        log: {level: debug, message: x}
      - exec: ["/bin/sh", "-c", 'test "$0" = true', "{{ steps.first.ok }}"]
        retry: {attempts: 1}
`)
	for _, r := range rs.Rules[:2] {
		if r.NeedsStepResults() {
			t.Fatalf("rule %s: NeedsStepResults, want false", r.Name)
		}
	}
	var msgs []*Message
	for i := range 20 {
		msgs = append(msgs, &Message{Source: "s", Type: "order", ID: fmt.Sprint("m-", i),
			Body: fmt.Appendf(nil, `{"n":"%d"}`, i), Settler: newOpsSettler()})
	}
	logger := slog.New(slog.DiscardHandler)
	r := runOnce(t, Config{Rules: rs, Actions: actions.Standard(actions.Options{Logger: logger}), Logger: logger,
		Concurrency: 8}, msgs...)
	if got := testCounterOps(r.m.Plans.WithLabelValues("c", "success")); got != 20 {
		t.Errorf("rule c (reads steps.first.ok): %v plans succeeded, want 20", got)
	}
	if got := testCounterOps(r.m.Plans.WithLabelValues("a", "failed")); got != 20 {
		t.Errorf("rule a: %v plans failed, want 20", got)
	}
}

// The executor leaves the event's environment as it was for a rule that
// needs no step results, failing step included.
func TestExecutorDoesNotWriteASharedEnvironment(t *testing.T) {
	rs := opsParse(t, `
version: 1
rules:
  - name: a
    on: order
    steps:
      - id: s
        exec: [/bin/false]
        retry: {attempts: 1}
`)
	logger := slog.New(slog.DiscardHandler)
	x := &Executor{Actions: actions.Standard(actions.Options{Logger: logger}), Logger: logger, Metrics: NewMetrics()}
	env := map[string]any{"payload": map[string]any{}}
	res := x.Execute(context.Background(), rules.Plan{Rule: rs.Rules[0], Env: env, Event: &event.Event{Type: "order"}}, nil)
	if res.Outcome != Failed {
		t.Fatalf("outcome %v, want failed", res.Outcome)
	}
	if len(env) != 1 {
		t.Errorf("the shared environment was written: %v", env)
	}
}
