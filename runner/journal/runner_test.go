package journal

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
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
	reg.Register(actions.FromSpec("note", actions.Spec{Keys: []string{"n"}, Shorthand: "n"}, rec))
	rs, err := rules.Parse("r.yaml", []byte("version: 1\nrules:\n  - {name: r, on: order, steps: [{note: x}]}\n"), rules.Options{Actions: reg})
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

// gatedWriter holds syncs until its gate opens, reporting each one that
// waits, and counts the syncs done.
type gatedWriter struct {
	w       writeSyncer
	waiting chan struct{}
	gate    chan struct{}
	once    sync.Once
	synced  atomic.Int32
}

func (g *gatedWriter) open() { g.once.Do(func() { close(g.gate) }) }

func (g *gatedWriter) WriteAt(p []byte, off int64) (int, error) { return g.w.WriteAt(p, off) }
func (g *gatedWriter) Sync() error {
	select {
	case g.waiting <- struct{}{}:
	default:
	}
	<-g.gate
	err := g.w.Sync()
	g.synced.Add(1)
	return err
}

// orderedRuns reports each run with the syncs done before it.
type orderedRuns struct {
	gw  *gatedWriter
	ran chan [2]string
}

func (o *orderedRuns) Run(_ context.Context, req actions.Request) (actions.Result, error) {
	o.ran <- [2]string{req.MessageID, fmt.Sprint(o.gw.synced.Load())}
	return actions.Result{}, nil
}

// TestNextPlanOfAKeyWaitsForTheCompletionOfThePrevious: with the durable
// journal a message's completion is synced off the dispatcher's worker, so
// that other plans run meanwhile; but the next plan of the same key waits
// for it (else a crash could re-run the first one's last step, whose record
// rides on the completion, after its successor ran).
func TestNextPlanOfAKeyWaitsForTheCompletionOfThePrevious(t *testing.T) {
	gw := &gatedWriter{waiting: make(chan struct{}, 1), gate: make(chan struct{})}
	j := open(t, t.TempDir(), Options{wrap: func(w writeSyncer) writeSyncer { gw.w = w; return gw }})
	t.Cleanup(gw.open) // before the journal's Close (cleanups run last first)
	logger := slog.New(slog.DiscardHandler)
	rec := &orderedRuns{gw: gw, ran: make(chan [2]string, 3)}
	reg := actions.Standard(actions.Options{Logger: logger})
	reg.Register(actions.FromSpec("note", actions.Spec{Keys: []string{"n"}, Shorthand: "n"}, rec))
	rs, err := rules.Parse("r.yaml", []byte("version: 1\nrules:\n  - {name: r, on: order, key: payload.k, steps: [{note: x}]}\n"), rules.Options{Actions: reg})
	if err != nil {
		t.Fatal(err)
	}
	r := runner.New(runner.Config{Rules: rs, Actions: reg, Logger: logger, Journal: j, Concurrency: 1})
	msg := func(id, key string) (*runner.Message, fateSettler) {
		s := make(fateSettler, 1)
		return &runner.Message{Source: "s", Type: "order", ID: id, Body: []byte(`{"k": "` + key + `"}`), Settler: s}, s
	}
	a, as := msg("a", "k1")
	b, bs := msg("b", "k1")
	c, cs := msg("c", "k2")
	ctx := context.Background()
	if err := r.Deliver(ctx, a); err != nil {
		t.Fatal(err)
	}
	if got := <-rec.ran; got[0] != "a" {
		t.Fatalf("ran %v", got)
	}
	<-gw.waiting // a's completion waits for its sync
	// With one worker, c (another key) runs while a's completion syncs.
	if err := r.Deliver(ctx, c); err != nil {
		t.Fatal(err)
	}
	if got := <-rec.ran; got != [2]string{"c", "0"} {
		t.Fatalf("ran %v, want c before any sync", got)
	}
	if err := r.Deliver(ctx, b); err != nil {
		t.Fatal(err)
	}
	gw.open()
	if got := <-rec.ran; got[0] != "b" || got[1] == "0" {
		t.Fatalf("ran %v: b (a's key) must wait for a's completion to be synced", got)
	}
	for _, s := range []fateSettler{as, cs, bs} {
		if f := <-s; f != "ack" {
			t.Fatalf("fate %s", f)
		}
	}
}
