package journal

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/rules"
	"github.com/eventfn/eventfn/runner"
)

// itemAction is a non-idempotent effect per item: it counts each item it
// completes. While blocking, item block waits (reporting on blocked) until
// its context ends.
type itemAction struct {
	mu       sync.Mutex
	done     []int
	block    int
	blocking bool
	blocked  chan int
}

func (a *itemAction) Run(ctx context.Context, req actions.Request) (actions.Result, error) {
	n := req.Params["n"].(int)
	a.mu.Lock()
	block := a.blocking && n == a.block
	a.mu.Unlock()
	if block {
		a.blocked <- n
		<-ctx.Done()
		return nil, ctx.Err()
	}
	a.mu.Lock()
	a.done = append(a.done, n)
	a.mu.Unlock()
	return actions.Result{"n": n}, nil
}

// captured keeps what the step after the for_each saw of its items.
type captured struct {
	mu    sync.Mutex
	items []any
}

func (c *captured) Run(_ context.Context, req actions.Request) (actions.Result, error) {
	c.mu.Lock()
	c.items = append(c.items, req.Params["items"])
	c.mu.Unlock()
	return actions.Result{}, nil
}

// TestInterruptedForEachRunsOnlyTheItemsNotDone: a plan cut off in the
// middle of a for_each resumes there when its message comes again, with the
// in-memory journal and with the durable one (closed and replayed in
// between, as after a restart): the items that completed do not run again,
// their recorded results stand in for them in the step's result, and the
// item that was cut off and those after it run once.
func TestInterruptedForEachRunsOnlyTheItemsNotDone(t *testing.T) {
	for _, kind := range []string{"memory", "durable"} {
		t.Run(kind, func(t *testing.T) {
			restart := newRestarts(t, kind)
			items := &itemAction{block: 3, blocking: true, blocked: make(chan int, 1)}
			capt := &captured{}
			reg := actions.Standard(actions.Options{Logger: slog.New(slog.DiscardHandler)})
			reg.Register(actions.FromSpec("item", actions.Spec{Keys: []string{"n"}}, items))
			reg.Register(actions.FromSpec("capture", actions.Spec{Keys: []string{"items"}}, capt))
			rs, err := rules.Parse("t.yaml", []byte(`
version: 1
rules:
  - name: each
    on: order
    steps:
      - id: users
        for_each: payload.n
        item: {n: "{{ item }}"}
      - capture: {items: "{{ map(steps.users.items, .n) }}"}
`), rules.Options{Actions: reg})
			if err != nil {
				t.Fatal(err)
			}
			run := func(ctx context.Context, j runner.Journal) string {
				return runOnce(ctx, t, rs, reg, j, `{"n": [1, 2, 3, 4]}`)
			}

			// First delivery: items 1 and 2 complete, 3 is cut off.
			ctx, cancel := context.WithCancel(context.Background())
			go func() { <-items.blocked; cancel() }()
			j := restart.open()
			if fate := run(ctx, j); fate != "requeue" {
				t.Fatalf("first delivery: fate %q, want requeue", fate)
			}
			restart.close(j)
			items.mu.Lock()
			items.blocking = false
			items.mu.Unlock()

			// Redelivery: only 3 and 4 run.
			j = restart.open()
			defer j.Close()
			if fate := run(context.Background(), j); fate != "ack" {
				t.Fatalf("redelivery: fate %q, want ack", fate)
			}
			items.mu.Lock()
			done := slices.Clone(items.done)
			items.mu.Unlock()
			if !slices.Equal(done, []int{1, 2, 3, 4}) {
				t.Errorf("items completed %v over both deliveries, want each once: [1 2 3 4]", done)
			}
			capt.mu.Lock()
			defer capt.mu.Unlock()
			if got := fmt.Sprint(capt.items); got != "[[1 2 3 4]]" {
				t.Errorf("the next step saw items %s, want [[1 2 3 4]] (recorded results for 1 and 2)", got)
			}
		})
	}
}
