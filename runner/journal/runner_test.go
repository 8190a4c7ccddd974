package journal

import (
	"context"
	"log/slog"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/rules"
	"github.com/eventfn/eventfn/runner"
)

// chanSource delivers what is sent on its channel.
type chanSource struct{ msgs chan *runner.Message }

func (s *chanSource) Name() string { return "chan" }
func (s *chanSource) Run(ctx context.Context, deliver runner.Deliver) error {
	for {
		select {
		case m := <-s.msgs:
			if err := deliver(ctx, m); err != nil {
				return nil
			}
		case <-ctx.Done():
			return nil
		}
	}
}

type fateSettler chan string

func (s fateSettler) Ack(context.Context) error                { s <- "ack"; return nil }
func (s fateSettler) Requeue(context.Context) error            { s <- "requeue"; return nil }
func (s fateSettler) DeadLetter(context.Context, string) error { s <- "dead-letter"; return nil }

type runs struct {
	mu  sync.Mutex
	ids []string
}

func (r *runs) Run(_ context.Context, req actions.Request) (actions.Result, error) {
	r.mu.Lock()
	r.ids = append(r.ids, req.MessageID)
	r.mu.Unlock()
	return actions.Result{}, nil
}

func (r *runs) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ids...)
}

func gauge(g prometheus.Gauge) float64 {
	var m dto.Metric
	_ = g.Write(&m)
	return m.GetGauge().GetValue()
}

// signallingWriter is a failingWriter that reports each failed write.
type signallingWriter struct {
	failingWriter
	failed chan struct{}
}

func (s *signallingWriter) WriteAt(p []byte, off int64) (int, error) {
	n, err := s.failingWriter.WriteAt(p, off)
	if err != nil {
		select {
		case s.failed <- struct{}{}:
		default:
		}
	}
	return n, err
}

// TestFullJournalLeavesMessagesForRedeliveryAndPausesTheSource: on a full
// disk a message is not acknowledged as if its completion were recorded:
// it is requeued; the runner reports not ready, counts the failures, and
// takes no further message until the journal can be written again.
func TestFullJournalLeavesMessagesForRedeliveryAndPausesTheSource(t *testing.T) {
	sw := &signallingWriter{failed: make(chan struct{}, 1)}
	j := open(t, t.TempDir(), Options{wrap: func(w writeSyncer) writeSyncer { sw.w = w; return sw }})
	logger := slog.New(slog.DiscardHandler)
	rec := &runs{}
	reg := actions.Standard(actions.Options{Logger: logger})
	reg.Register("note", actions.Spec{Keys: []string{"n"}, Shorthand: "n"}, rec)
	rs, err := rules.Parse("r.yaml", []byte("version: 1\nrules:\n  - {name: r, on: order, steps: [{note: x}]}\n"), rules.Options{Kinds: reg.Specs()})
	if err != nil {
		t.Fatal(err)
	}
	src := &chanSource{msgs: make(chan *runner.Message)}
	metrics := runner.NewMetrics()
	r := runner.New(runner.Config{Rules: rs, Actions: reg, Logger: logger, Journal: j, Metrics: metrics, Sources: []runner.Source{src}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	msg := func(id string) (*runner.Message, fateSettler) {
		s := make(fateSettler, 1)
		return &runner.Message{Source: "chan", Type: "order", ID: id, Body: []byte(`{"order_uuid": "` + id + `"}`), Settler: s}, s
	}

	a, as := msg("a")
	src.msgs <- a
	if f := <-as; f != "ack" {
		t.Fatalf("with a writable journal: %s", f)
	}
	if !r.Ready() {
		t.Fatal("not ready with a writable journal")
	}

	sw.set(true)
	b, bs := msg("b")
	src.msgs <- b
	if f := <-bs; f != "requeue" {
		t.Fatalf("journal full: fate %q, want requeue (not acked as if recorded)", f)
	}
	if r.Ready() {
		t.Error("ready while the journal cannot be written")
	}
	if v := gauge(metrics.JournalWritable); v != 0 {
		t.Errorf("eventfn_journal_writable = %v, want 0", v)
	}
	select { // b's own failure
	case <-sw.failed:
	default:
	}
	c, cs := msg("c")
	src.msgs <- c // taken by the source, held by the runner
	<-sw.failed   // a probe failed after c arrived...
	<-sw.failed   // ...and another: the runner is waiting, not running c
	if got := rec.list(); len(got) != 2 || got[1] != "b" {
		t.Fatalf("runs while the journal was full: %v, want [a b] (c must wait)", got)
	}
	select {
	case f := <-cs:
		t.Fatalf("c settled (%s) while the journal could not be written", f)
	default:
	}
	sw.set(false)
	if f := <-cs; f != "ack" {
		t.Fatalf("after the journal recovered: c %s", f)
	}
	if !r.Ready() || gauge(metrics.JournalWritable) != 1 {
		t.Error("not ready after the journal recovered")
	}
	var m dto.Metric
	_ = metrics.JournalWriteFailures.Write(&m)
	if m.GetCounter().GetValue() < 3 {
		t.Errorf("eventfn_journal_write_failures_total = %v, want ≥ 3", m.GetCounter().GetValue())
	}
	// b, redelivered by the broker, runs (nothing recorded it handled).
	b2, bs2 := msg("b")
	src.msgs <- b2
	if f := <-bs2; f != "ack" {
		t.Fatalf("redelivered b: %s", f)
	}
	if got := rec.list(); len(got) != 4 {
		t.Errorf("runs: %v, want a b c b", got)
	}
}
