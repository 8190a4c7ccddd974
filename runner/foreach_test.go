package runner

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/eventfn/eventfn/actions"
)

func TestForEachRunsEachItemAndCollectsResults(t *testing.T) {
	r, rc := newRecordingRunner(t, `
version: 1
rules:
  - name: each
    on: order
    steps:
      - id: users
        for_each: "{{ payload.users }}"
        for_each_concurrency: 3
        record: {what: "{{ item.name }}", index: "{{ index }}"}
      - id: summary
        log: "{{ map(steps.users.items, .ok) }}"
      - record: {what: "{{ steps.users.count }}"}
`, nil)
	s := newSettler()
	r.Deliver(context.Background(), &Message{Source: "t", Type: "order", Settler: s,
		Body: []byte(`{"users": [{"name": "a"}, {"name": "b"}, {"name": "c"}, {"name": "d"}]}`)})
	if f := <-s.done; f != "ack" {
		t.Fatalf("fate %s", f)
	}
	got := map[string]any{}
	for _, req := range rc.reqs[:4] {
		got[req.Params["what"].(string)] = req.Params["index"]
	}
	want := map[string]any{"a": 0, "b": 1, "c": 2, "d": 3}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("items ran as %v, want %v", got, want)
	}
	if last := rc.reqs[4].Params["what"]; last != 4 {
		t.Errorf("steps.users.count = %v, want 4", last)
	}
}

func TestForEachConcurrencyBound(t *testing.T) {
	logger := testLogger()
	reg := actions.Standard(actions.Options{Logger: logger})
	gate := &gateAction{running: make(chan int, 16), release: make(chan struct{})}
	reg.Register(actions.FromSpec("gate", actions.Spec{Keys: []string{"n"}}, gate))
	r := newRunnerWith(t, reg, `
version: 1
rules:
  - name: each
    on: order
    steps:
      - for_each: "payload.n"
        for_each_concurrency: 2
        gate: {n: "{{ item }}"}
`)
	s := newSettler()
	r.Deliver(context.Background(), &Message{Source: "t", Type: "order", Settler: s, Body: []byte(`{"n": [1, 2, 3, 4, 5]}`)})
	<-gate.running
	<-gate.running // two at once
	select {
	case n := <-gate.running:
		t.Fatalf("a third item (%d) started while two ran", n)
	default:
	}
	close(gate.release)
	if f := <-s.done; f != "ack" {
		t.Fatalf("fate %s", f)
	}
	if gate.max.Load() != 2 {
		t.Errorf("at most %d ran at once, want 2", gate.max.Load())
	}
}

func TestForEachFailingItemFailsTheStep(t *testing.T) {
	for _, coe := range []bool{false, true} {
		t.Run(fmt.Sprintf("continue_on_error=%v", coe), func(t *testing.T) {
			r, rc := newRecordingRunner(t, fmt.Sprintf(`
version: 1
rules:
  - name: each
    on: order
    steps:
      - id: each
        for_each: "payload.n"
        continue_on_error: %v
        retry: {attempts: 2, backoff: constant, initial: 1ms}
        exec: [sh, -c, 'test "$0" != 2', "{{ item }}"]
      - record: {what: "{{ map(steps.each.items, .ok) }}"}
`, coe), nil)
			s := newSettler()
			r.Deliver(context.Background(), &Message{Source: "t", Type: "order", Settler: s, Body: []byte(`{"n": [1, 2, 3]}`)})
			f := <-s.done
			if f != "ack" {
				t.Fatalf("fate %s", f)
			}
			if !coe {
				if got := testCounter(r.m.Plans.WithLabelValues("each", "failed")); got != 1 {
					t.Errorf("failed plans = %v, want 1", got)
				}
				if got := testCounter(r.m.StepAttempts.WithLabelValues("exec", "error")); got != 2 {
					t.Errorf("failed attempts = %v, want 2 (item 1 retried once)", got)
				}
				if len(rc.reqs) != 0 {
					t.Errorf("the step after a failed for_each ran")
				}
				return
			}
			if got := fmt.Sprint(rc.reqs[0].Params["what"]); got != "[true false true]" {
				t.Errorf("items ok = %s, want [true false true]", got)
			}
		})
	}
}

func TestForEachNotAList(t *testing.T) {
	r, _ := newRunner(t, `
version: 1
rules:
  - {name: each, on: order, steps: [{for_each: payload.n, log: "{{ item }}"}]}
`)
	if f := deliver(t, r, `{"n": "abc"}`, "", true); !strings.Contains(f, "for_each gave string, not a list") {
		t.Errorf("fate %q", f)
	}
}

// TestItemSlot: an item's Progress index is negative (no step's) and
// distinct for every step and item.
func TestItemSlot(t *testing.T) {
	seen := map[int]string{}
	for _, step := range []int{0, 1, 2, 63, 1 << 20} {
		for _, item := range []int{0, 1, 2, 9_999, 1<<32 - 1} {
			s := ItemSlot(step, item)
			if s >= 0 {
				t.Errorf("ItemSlot(%d, %d) = %d, want negative", step, item, s)
			}
			if o, dup := seen[s]; dup {
				t.Errorf("ItemSlot(%d, %d) = %d, as %s", step, item, s, o)
			}
			seen[s] = fmt.Sprint(step, ",", item)
		}
	}
}
