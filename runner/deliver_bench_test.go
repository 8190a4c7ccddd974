package runner

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel/trace/noop"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/rules"
)

// benchRules is a small site's rules for orders: one rule that matches
// (a debug log step, discarded: the no-op action of the benchmarks) and one
// whose condition is evaluated and fails.
const benchRules = `version: 1
vars: {allocation_prefix: hpc_}
rules:
  - name: order-done
    on: order
    when: payload.order_state == "done"
    steps:
      - log: {level: debug, message: "order {{ payload.order_uuid }} done"}
  - name: order
    on: order
    when: (payload?.order_state ?? "") not in ["done", "erred", "canceled", "rejected"]
    key: payload.order_uuid
    steps:
      - id: note
        log:
          level: debug
          message: "order {{ payload.order_uuid }} is {{ payload.order_state }}"
          fields: {allocation: "{{ vars.allocation_prefix + payload.order_uuid }}"}
`

// countingSettler acks by counting; done is closed at the want-th ack.
type countingSettler struct {
	acked  *atomic.Int64
	failed *atomic.Int64
	want   *atomic.Int64
	done   chan struct{}
}

func (s countingSettler) settled(ok bool) {
	if !ok {
		s.failed.Add(1)
	}
	if n := s.acked.Add(1); n == s.want.Load() {
		close(s.done)
	}
}

func (s countingSettler) Ack(context.Context) error                { s.settled(true); return nil }
func (s countingSettler) Requeue(context.Context) error            { s.settled(false); return nil }
func (s countingSettler) DeadLetter(context.Context, string) error { s.settled(false); return nil }

// BenchmarkDeliver measures Runner.Deliver end to end for one order message
// as a broker source hands it over: decode, de-duplication check, match,
// dispatch, the plan (render plus a log step that logs nothing), the
// journal, metrics, the settle and the runner's one log line per message.
//
//   - pipelined: messages are delivered back to back (concurrency 8), as a
//     source with a full prefetch window does; ns/op is the cost per
//     message, i.e. 1e9/ns msg/s on this machine's two cores.
//   - one-at-a-time: each message is settled before the next is
//     delivered: the latency added by eventfn to one message.
//
// The runner's log line goes to a real text handler writing to io.Discard
// (formatting counted, I/O not), or to slog.DiscardHandler ("nolog").
//
// Allocation budget, per message: ~63 allocations, ~5.2 KiB (85 and 6.9
// KiB before this round of issue 15's cuts, ~122 and 9.4 KiB before the
// first, ~190 and 14 KiB before the one-pass decoder), for a message with
// two headers:
//   - decoding: ~12 (see event.BenchmarkDecodePayload);
//   - the expression environment: its map and three boxed strings (no
//     steps map: a plan whose rule reads step results makes its own, see
//     Rule.NeedsStepResults; headers only when an expression reads them,
//     see rules.BenchmarkEnvironment);
//   - match and render: plain paths (payload.x, a ?? 'd', a == 'c') by map
//     lookups without allocating (rules.BenchmarkFastPath); the VM's
//     argument slices for the rest; a buffer and a string per template;
//   - the plan: the step's result map, the log step's result (no
//     attributes when its level is dropped); no environment copy, no
//     emitter context (the rule has no emit step), no timer (a log step
//     has no default timeout, see actions.BenchmarkDo);
//   - the journal's progress record and completion, dedup keys (4);
//   - settling: no timer (only a dead-lettering waits for the broker);
//   - the log line: its attribute slice (none when the level is off); a
//     message with one plan logs one line, not two.
//
// No spans, span names or attributes (the no-op provider, see
// TestNoopTracingStillPropagates): before, they cost ~30 allocations and
// ~5 µs. None of it is retained once the message is settled except the
// journal's completed id. The benchmark itself adds one allocation per
// message (the id string).
func BenchmarkDeliver(b *testing.B) {
	body := []byte(`{"offering_uuid":"0f2c1e6b5d2a4c39a8e7f1b2c3d4e5f6","order_uuid":"5c1f0a9e8d7b4c3a9f2e1d0c8b7a6f51","order_state":"executing"}`)
	rs, err := rules.Parse("bench.yaml", []byte(benchRules), rules.Options{Actions: actions.Builtin()})
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name       string
		handler    slog.Handler
		sequential bool
	}{
		{"pipelined", slog.NewTextHandler(io.Discard, nil), false},
		{"pipelined-nolog", slog.DiscardHandler, false},
		{"one-at-a-time", slog.NewTextHandler(io.Discard, nil), true},
	} {
		b.Run(c.name, func(b *testing.B) {
			logger := slog.New(c.handler)
			// The no-op provider, as `eventfn run` has without OTEL_*:
			// no span is made (see TestNoopTracingStillPropagates).
			r := New(Config{Rules: rs, Logger: logger, Concurrency: 8, TracerProvider: noop.NewTracerProvider(),
				Actions: actions.Standard(actions.Options{Logger: slog.New(slog.DiscardHandler)})})
			ctx := context.Background()
			var acked, failed, want atomic.Int64
			want.Store(-1)
			st := countingSettler{acked: &acked, failed: &failed, want: &want, done: make(chan struct{})}
			headers := map[string]string{"destination": "/amq/queue/q", "persistent": "true"}
			n := 0
			b.ReportAllocs()
			for b.Loop() {
				n++
				m := &Message{Source: "bench", Destination: "/amq/queue/q", Body: body, Headers: headers,
					ID: strconv.Itoa(n), Type: "order", Settler: st}
				if err := r.Deliver(ctx, m); err != nil {
					b.Fatal(err)
				}
				if c.sequential {
					for acked.Load() < int64(n) { // a channel per message would add its own cost
						runtime.Gosched()
					}
				}
			}
			want.Store(int64(n))
			if acked.Load() < int64(n) {
				<-st.done
			}
			b.StopTimer()
			if failed.Load() != 0 {
				b.Fatalf("%d messages failed", failed.Load())
			}
		})
	}
}

// BenchmarkDeliverRules: n rules of the event's type, one of which matches.
// rules=N: none with a key and none guarded by an indexed equality. The
// rules of one key share one dispatcher job (byKey), so a rule costs its
// condition and little more: 100 rules 28.7 µs and 165 allocations per
// message, where a job per rule cost 54 µs and 260 (one shared 2-core
// machine, same run). rules=N/guarded: bench/collect.sh's rules section,
// every rule under one key and one indexed guard that the event passes,
// then `payload.n < 0` (false but for the last rule). Budget: no
// allocation per rule (the fast path compares, dedupKeys builds the shared
// key once): 1,000 rules 37 allocations and ~44 KB (the candidate list),
// 215-305 µs; before, 2,069 allocations, the VM's comparison and a key
// string per rule.
func BenchmarkDeliverRules(b *testing.B) {
	body := []byte(`{"order_uuid":"5c1f0a9e8d7b4c3a9f2e1d0c8b7a6f51","order_state":"executing","n":0}`)
	for _, c := range []struct {
		shape string
		n     int
	}{{"eq", 1}, {"eq", 10}, {"eq", 100}, {"lt", 100}, {"lt", 1000}} {
		n := c.n
		var src strings.Builder
		src.WriteString("version: 1\nrules:\n")
		for i := range n {
			when, key := fmt.Sprintf("payload.n == %d", i), ""
			if c.shape == "lt" { // bench/collect.sh's rules section: one indexed guard for all
				when, key = `payload.order_state == "executing" && payload.n < 0`, "\n    key: payload.order_uuid"
				if i == n-1 {
					when = `payload.order_state == "executing"`
				}
			}
			fmt.Fprintf(&src, "  - name: r%d\n    on: order\n    when: %s%s\n    steps: [{log: {level: debug, message: x}}]\n", i, when, key)
		}
		rs, err := rules.Parse("bench.yaml", []byte(src.String()), rules.Options{Actions: actions.Builtin()})
		if err != nil {
			b.Fatal(err)
		}
		name := fmt.Sprintf("rules=%d", n)
		if c.shape == "lt" {
			name += "/guarded"
		}
		b.Run(name, func(b *testing.B) {
			r := New(Config{Rules: rs, Logger: slog.New(slog.DiscardHandler), Concurrency: 8, TracerProvider: noop.NewTracerProvider(),
				Actions: actions.Standard(actions.Options{Logger: slog.New(slog.DiscardHandler)})})
			var acked, failed, want atomic.Int64
			want.Store(-1)
			st := countingSettler{acked: &acked, failed: &failed, want: &want, done: make(chan struct{})}
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				i++
				if err := r.Deliver(context.Background(), &Message{Source: "bench", Body: body, ID: strconv.Itoa(i), Type: "order", Settler: st}); err != nil {
					b.Fatal(err)
				}
			}
			want.Store(int64(i))
			if acked.Load() < int64(i) {
				<-st.done
			}
			b.StopTimer()
			if failed.Load() != 0 {
				b.Fatalf("%d messages failed", failed.Load())
			}
		})
	}
}
