// Package runner takes messages from sources, matches them against the
// rules, executes the resulting plans on a bounded dispatcher and settles
// each message (ack, requeue or dead-letter) once its plans' outcome is
// decided.
package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/event"
	"github.com/eventfn/eventfn/rules"
	"github.com/eventfn/eventfn/telemetry"
)

// Settler settles a message with its broker.
//
// The runner calls them with a context that has no deadline, except
// DeadLetter's (SettleTimeout), which may wait for the broker's receipt:
// an Ack or Requeue that can block (a stalled connection) bounds its own
// wait, so that the common case, a frame queued for the connection's
// writer, costs no timer.
type Settler interface {
	// Ack tells the broker the message is handled.
	Ack(ctx context.Context) error
	// Requeue returns the message for redelivery (or leaves it
	// unacknowledged so the broker redelivers it).
	Requeue(ctx context.Context) error
	// DeadLetter moves the message to the source's dead-letter destination
	// and acknowledges it.
	DeadLetter(ctx context.Context, reason string) error
}

// SettleTimeout bounds how long settling one message may wait for the
// broker (a dead-lettering's receipt, an acknowledgement on a stalled
// connection).
const SettleTimeout = 10 * time.Second

// Message is what a source delivers: bytes, headers and a way to settle.
type Message struct {
	// Source is the name of the delivering source.
	Source string
	// Destination is the queue or topic it arrived on.
	Destination string
	Body        []byte
	Headers     map[string]string
	// ID identifies the message for de-duplication (x-message-id); empty
	// disables de-duplication for it.
	ID string
	// Type is the event type the source derived, if any.
	Type string
	// TypeField names a payload field holding the type, when Type is empty.
	TypeField string
	// Envelope is true when Body is an {"type","payload","headers"} envelope
	// (local sources), false when it is the payload itself (brokers).
	Envelope bool
	// Event, when set, is the already-decoded event (sources that validate
	// on receipt); Body is then ignored.
	Event *event.Event
	// DeadLetterOnFailure selects the fate of failed and undecodable
	// messages: dead-letter when true, ack with an error log when false.
	DeadLetterOnFailure bool
	Received            time.Time
	Settler             Settler

	// plan is the outcome of the message's one plan, when exactly one
	// ran: its line is the message's line (see apply), not a line of its
	// own. Set by finish before the message is settled.
	plan    PlanResult
	hasPlan bool
	// sid is SID(Source, the event's id), made once per message.
	sid string
	// emitted: an emit step of a running plan derived the message.
	emitted bool
}

// Deliver hands a message to the runner. It returns once the message is
// queued for execution (blocking while the runner is full); the runner
// settles the message later.
type Deliver func(ctx context.Context, m *Message) error

// Source produces messages until its context ends. A finite source (a file
// without follow) returns nil when it has delivered everything.
type Source interface {
	Name() string
	Run(ctx context.Context, deliver Deliver) error
}

// Readier is implemented by sources that can be down (brokers).
type Readier interface {
	Ready() bool
}

// Config holds what a Runner needs.
type Config struct {
	Rules   *rules.Ruleset
	Actions *actions.Registry
	Sources []Source
	Journal Journal
	Logger  *slog.Logger
	Metrics *Metrics
	// Secrets are the values of the rules' secrets.
	Secrets map[string]any
	// Redactor masks secrets in everything the runner lets out (default:
	// one built from Secrets); pass the process's one redactor here.
	Redactor *telemetry.Redactor
	// Concurrency bounds the plans running at once.
	Concurrency int
	// Limits bound decoded bodies.
	Limits event.Limits
	// ShutdownTimeout bounds how long in-flight plans may finish once the
	// runner's context ends.
	ShutdownTimeout time.Duration
	// TracerProvider makes the spans of messages, plans and step attempts
	// (nil: otel.GetTracerProvider(), a no-op unless one was installed).
	TracerProvider trace.TracerProvider
	// Propagator reads the trace context from message headers (nil: W3C
	// trace context and baggage).
	Propagator propagation.TextMapPropagator
	// Reporter, when set, is told of every plan that failed for good.
	Reporter telemetry.Reporter
}

// Runner is the running pipeline.
type Runner struct {
	cfg     Config
	rules   atomic.Pointer[rules.Ruleset]
	exec    *Executor
	disp    *Dispatcher
	log     *slog.Logger
	m       *Metrics
	ready   atomic.Bool
	secrets map[string]any
	tracer  trace.Tracer
	// tracing is false with the no-op tracer: message spans are not made.
	tracing bool
	prop    propagation.TextMapPropagator
	fields  []string // prop.Fields(): the header names it reads
	red     *telemetry.Redactor

	// inflight holds, per source-scoped id (SID), the copies of a message
	// that arrived while it was being handled: they are settled with its
	// fate when it is, without holding up the source (see park).
	flightMu sync.Mutex
	inflight map[string]*flight
	// arrived holds, per de-duplication key, the last message (SID) that
	// arrived for it: a message is a copy (parked) or a duplicate (skipped)
	// only when nothing else arrived for its keys since (see arrive).
	arrMu   sync.Mutex
	arrived map[string]arrival
	// journalDown is set when a journal write failed: Deliver then takes
	// no message until a probe write succeeds, and Ready reports false.
	journalDown atomic.Bool
	probe       chan struct{} // one prober at a time

	// With a durable journal a message is settled (its completion synced,
	// then the ack) off the dispatcher's worker: the journal acks it once
	// the completion is written (AsyncCompleter), so that the worker starts
	// the next plan meanwhile and completions share syncs. settleRoom
	// bounds those settlements; barriers holds, per plan key, a channel
	// closed when the last such settlement of the key is done: the next
	// plan of the key waits for it, so that a crash cannot re-run a plan's
	// last step (its record rides on the completion) after its successor.
	asyncSettle bool
	settleRoom  chan struct{}
	settling    sync.WaitGroup
	barrierMu   sync.Mutex
	barriers    map[string]chan struct{}

	// work is the context plans run in: it outlives the sources' context
	// by up to ShutdownTimeout, so in-flight plans can finish.
	work       context.Context
	cancelWork context.CancelFunc
}

// New returns a runner; call Run to start it.
func New(cfg Config) *Runner {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	if cfg.Journal == nil {
		cfg.Journal = NewMemoryJournal(0, 0)
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 30 * time.Second
	}
	if cfg.TracerProvider == nil {
		cfg.TracerProvider = otel.GetTracerProvider()
	}
	if cfg.Propagator == nil {
		cfg.Propagator = telemetry.Propagator()
	}
	tracer := cfg.TracerProvider.Tracer(TracerName)
	red := cfg.Redactor
	if red == nil {
		red = telemetry.NewRedactor(telemetry.Values(cfg.Secrets)...)
	}
	r := &Runner{
		cfg: cfg,
		exec: &Executor{Actions: cfg.Actions, Logger: cfg.Logger, Metrics: cfg.Metrics,
			Tracer: tracer, Redactor: red},
		disp:     NewDispatcher(cfg.Concurrency, cfg.Concurrency*4),
		log:      cfg.Logger,
		m:        cfg.Metrics,
		secrets:  cfg.Secrets,
		tracer:   tracer,
		tracing:  !telemetry.IsNoop(tracer),
		prop:     cfg.Propagator,
		fields:   cfg.Propagator.Fields(),
		red:      red,
		inflight: map[string]*flight{},
		arrived:  map[string]arrival{},
		probe:    make(chan struct{}, 1),
		barriers: map[string]chan struct{}{},
	}
	if _, durable := cfg.Journal.(AsyncCompleter); durable {
		r.asyncSettle = true
		r.settleRoom = make(chan struct{}, 4*cfg.Concurrency)
	}
	r.m.JournalWritable.Set(1)
	r.work, r.cancelWork = context.WithCancel(context.Background())
	r.exec.Emit = r.emit
	r.rules.Store(cfg.Rules)
	return r
}

// Rules returns the rules in force.
func (r *Runner) Rules() *rules.Ruleset { return r.rules.Load() }

// SetRules swaps the rules atomically: plans already started finish on the
// rules they started with.
func (r *Runner) SetRules(rs *rules.Ruleset) { r.rules.Store(rs) }

// Metrics returns the runner's metrics.
func (r *Runner) Metrics() *Metrics { return r.m }

// Ready reports whether the rules are loaded, the journal can be written
// and every source is up.
func (r *Runner) Ready() bool {
	if !r.ready.Load() || r.journalDown.Load() {
		return false
	}
	for _, s := range r.cfg.Sources {
		if rd, ok := s.(Readier); ok && !rd.Ready() {
			return false
		}
	}
	return true
}

// Run runs every source until ctx ends or every source has finished, then
// waits up to ShutdownTimeout for in-flight plans. Plans still running then
// are cancelled and their messages left for redelivery. The deadline
// starts when ctx ends (or the sources finish), not when the sources have
// drained: broker sources keep their connections open while the runner
// settles what it has, and the whole stop takes about ShutdownTimeout.
func (r *Runner) Run(ctx context.Context) error {
	defer r.cancelWork()
	r.ready.Store(true)
	defer r.ready.Store(false)

	sources := r.cfg.Sources
	if ob, ok := r.cfg.Journal.(Outboxer); ok {
		if recs := ob.Outbox(); len(recs) > 0 {
			sources = append(slices.Clip(sources), &outboxSource{r: r, recs: recs})
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(sources))
	for _, s := range sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Run(ctx, r.Deliver); err != nil && ctx.Err() == nil {
				errs <- fmt.Errorf("source %s: %w", s.Name(), err)
			}
		}()
	}
	sourcesDone := make(chan struct{})
	go func() { wg.Wait(); close(sourcesDone) }()
	select {
	case <-ctx.Done():
	case <-sourcesDone:
	}
	r.ready.Store(false) // stopping: take no new work (/readyz fails)

	drained := make(chan struct{})
	go func() {
		<-sourcesDone // no Submit after this: the dispatcher can be waited for
		r.disp.Wait()
		r.settling.Wait()
		close(drained)
	}()
	deadline := time.NewTimer(r.cfg.ShutdownTimeout)
	defer deadline.Stop()
	select {
	case <-drained:
	case <-deadline.C:
		r.log.Warn("shutdown timeout: cancelling plans still running; their messages stay unacknowledged", "timeout", r.cfg.ShutdownTimeout)
		r.cancelWork()
		<-drained
	}
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// Deliver implements the Deliver func sources call. While the journal
// cannot be written it blocks (so the source pauses, its messages left
// with the broker) until a probe write succeeds or ctx ends.
func (r *Runner) Deliver(ctx context.Context, m *Message) error {
	if r.journalDown.Load() {
		if err := r.awaitJournal(ctx); err != nil {
			return err
		}
	}
	_ = r.deliver(ctx, m) // a message not taken is settled (requeued) by deliver
	return nil
}

// deliver is Deliver, returning the error of a plan that could not be
// queued (ctx ended first): emit steps report it.
func (r *Runner) deliver(ctx context.Context, m *Message) error {
	if m.Received.IsZero() {
		m.Received = time.Now()
	}
	rs := r.rules.Load()
	ev := m.Event
	var decodeErr error
	if ev == nil {
		if m.Envelope {
			ev, decodeErr = event.DecodeEnvelope(m.Body, r.cfg.Limits)
		} else {
			ev, decodeErr = event.DecodePayload(m.Body, m.Type, m.TypeField, r.cfg.Limits)
		}
	}
	// work carries the message's span; plans run in it, and it outlives
	// the source's ctx by up to ShutdownTimeout.
	work := r.startMessage(r.work, m, ev)
	if decodeErr != nil {
		r.reject(work, m, decodeErr)
		return nil
	}
	ev.Source, ev.Received = m.Source, m.Received
	if ev.ID == "" {
		ev.ID = m.ID
	}
	if len(m.Headers) > 0 && ev.Headers == nil {
		ev.Headers = m.Headers
	}
	typ := r.m.TypeLabel(rs, ev.Type)
	r.m.Received.WithLabelValues(m.Source, typ).Inc()
	env := rs.Environment(ev, r.secrets)
	// Only the keys are evaluated here; each rule's condition is evaluated
	// by the dispatcher's workers, under the rule's key, so an expensive
	// when holds up only the events of its own key, never the delivery of
	// the events behind it.
	cands := rs.Candidates(ev, env)
	// De-duplication keys: those of the rules that may run (a rule whose
	// condition turns out false only makes a skip less likely).
	keys := dedupKeys(ev, cands)
	repeat := false
	if ev.ID != "" {
		m.sid = SID(m.Source, ev.ID)
		repeat = r.arrive(m.sid, keys)
		if r.park(work, m, ev, repeat) {
			return nil
		}
	}
	if repeat {
		if fate, dup := r.cfg.Journal.Duplicate(m.Source, ev.ID, keys); dup {
			r.m.Duplicates.WithLabelValues(m.Source, typ).Inc()
			trace.SpanFromContext(work).SetAttributes(AttrDuplicate.Bool(true))
			if fate == FateDeadLettered && m.DeadLetterOnFailure {
				// Back after being dead-lettered: the dead-lettering did not
				// reach the broker. Acknowledging it would lose it.
				r.log.Warn("message dead-lettered before is back (its dead-lettering did not reach the broker): dead-lettering it again",
					"source", m.Source, "id", ev.ID, "type", ev.Type)
				r.settle(work, m, ev, nil, FateDeadLettered, errDeadLetteredBefore)
				return nil
			}
			r.log.Info("duplicate message skipped", "source", m.Source, "id", ev.ID, "type", ev.Type)
			r.settle(work, m, ev, nil, FateAcked, nil)
			return nil
		}
	}
	if len(cands) == 0 {
		r.unmatched(work, m, ev, keys, nil)
		return nil
	}
	var submitErr error
	// One dispatcher job per key: the rules of one key would run one after
	// the other anyway, and a job per rule doubled the cost per rule of the
	// type (BenchmarkDeliverRules).
	groups := byKey(cands)
	t := &tracker{pending: int32(len(groups)), keys: keys}
	for _, g := range groups {
		key := g[0].Key
		r.m.InFlight.Inc()
		job := func() {
			defer r.m.InFlight.Dec()
			r.awaitBarrier(key)
			var prog *planProgress
			for _, c := range g {
				if p := r.runCandidate(work, m, ev, env, c, t); p != nil {
					prog.flush(work) // an earlier plan of this job: not the message's last
					prog = p
				}
			}
			if t.done() {
				r.finishPlan(work, m, ev, t, prog, key)
			} else {
				prog.flush(work)
			}
		}
		if m.emitted {
			// Emitted by a running plan, which holds a worker: no
			// waiting for room (see Dispatcher).
			r.disp.SubmitNested(key, job)
			continue
		}
		err := r.disp.Submit(ctx, key, job)
		if err != nil { // the source is stopping: leave the message to the broker
			r.m.InFlight.Dec()
			submitErr = err
			t.setErr(errInterrupted, Interrupted)
			if t.done() {
				r.finish(work, m, ev, t, nil, nil)
			}
		}
	}
	return submitErr
}

// byKey groups candidates by key, keeping file order within a group and
// the order of first appearance between groups.
func byKey(cands []rules.Candidate) [][]rules.Candidate {
	same := true // the common case: every candidate under one key
	for _, c := range cands[1:] {
		if c.Key != cands[0].Key {
			same = false
			break
		}
	}
	if same {
		return [][]rules.Candidate{cands}
	}
	var groups [][]rules.Candidate
	index := map[string]int{}
	for _, c := range cands {
		if i, ok := index[c.Key]; ok {
			groups[i] = append(groups[i], c)
			continue
		}
		index[c.Key] = len(groups)
		groups = append(groups, []rules.Candidate{c})
	}
	return groups
}

// runCandidate evaluates one rule's condition for ev and, when it holds,
// runs its plan; the outcome goes to t. It returns the plan's progress in
// the journal (nil when the rule did not run or the message has no id).
// The plan's info line is left to finish (see logPlans).
func (r *Runner) runCandidate(work context.Context, m *Message, ev *event.Event, env map[string]any, c rules.Candidate, t *tracker) *planProgress {
	p, matched, err := c.Match(ev, env)
	if err != nil {
		r.m.RuleErrors.WithLabelValues(c.Rule.Name).Inc()
		r.log.Error("rule could not be evaluated", "source", m.Source, "id", ev.ID, "type", ev.Type, "rule", c.Rule.Name, "error", r.red.Error(err))
		t.setErr(fmt.Errorf("rule %s: %w", c.Rule.Name, err), Failed)
		return nil
	}
	if !matched {
		return nil
	}
	t.matched.Add(1)
	r.m.RuleMatches.WithLabelValues(p.Rule.Name).Inc()
	var prog *planProgress
	if ev.ID != "" {
		prog = &planProgress{r: r, p: r.cfg.Journal.Progress(m.Source, ev.ID, p.Rule.Name), last: len(p.Rule.Steps) - 1}
	}
	res := r.exec.execute(work, p, prog.progress(), false)
	t.addPlan(res)
	if res.Resumed > 0 {
		r.m.Resumed.WithLabelValues(m.Source).Inc()
		r.log.Info("plan resumed after its completed steps", "id", ev.ID, "rule", p.Rule.Name, "skipped_steps", res.Resumed)
	}
	r.m.Plans.WithLabelValues(p.Rule.Name, res.Outcome.String()).Inc()
	if res.Outcome != Success {
		t.setErr(res.Err, res.Outcome)
	}
	if res.Outcome == Failed && r.cfg.Reporter != nil {
		r.cfg.Reporter.Report(work, telemetry.Failure{Source: m.Source, Type: ev.Type, MessageID: ev.ID,
			Rule: p.Rule.Name, Key: p.Key, Err: res.Err})
	}
	return prog
}

// unmatched settles a message no rule matched; then, when set, runs once it
// is settled (see settle).
func (r *Runner) unmatched(ctx context.Context, m *Message, ev *event.Event, keys []string, then func()) {
	r.m.Unmatched.WithLabelValues(m.Source, r.m.TypeLabel(r.rules.Load(), ev.Type)).Inc()
	r.log.Debug("no rule matched", "source", m.Source, "id", ev.ID, "type", ev.Type)
	r.settleThen(ctx, m, ev, keys, "", nil, then)
}

// finishPlan settles the message whose last plan (keyed key) just ended:
// at once with an in-memory journal; with a durable one, without waiting
// for the disk (see asyncSettle): the journal settles the message when
// its completion is written, with key's barrier up until then.
func (r *Runner) finishPlan(ctx context.Context, m *Message, ev *event.Event, t *tracker, prog *planProgress, key string) {
	if !r.asyncSettle {
		r.finish(ctx, m, ev, t, prog, nil)
		return
	}
	r.settleRoom <- struct{}{} // bounded: waits in the worker when full
	var ch chan struct{}
	if key != "" {
		ch = make(chan struct{})
		r.barrierMu.Lock()
		r.barriers[key] = ch
		r.barrierMu.Unlock()
	}
	r.settling.Add(1)
	r.finish(ctx, m, ev, t, prog, func() {
		if ch != nil {
			r.barrierMu.Lock()
			if r.barriers[key] == ch {
				delete(r.barriers, key)
			}
			r.barrierMu.Unlock()
			close(ch)
		}
		<-r.settleRoom
		r.settling.Done()
	})
}

// awaitBarrier waits until the last settlement of a plan of key is done.
func (r *Runner) awaitBarrier(key string) {
	if !r.asyncSettle || key == "" {
		return
	}
	r.barrierMu.Lock()
	ch := r.barriers[key]
	r.barrierMu.Unlock()
	if ch != nil {
		<-ch
	}
}

// parked is a copy of a message that arrived while the message was in
// flight.
type parked struct {
	ctx context.Context
	m   *Message
}

// flight is a message id being handled: by n deliveries at once (the same
// id can come back as a new state change while an earlier one still
// runs), with the copies parked behind them.
type flight struct {
	n      int
	copies []parked
}

// arrival is the last message that arrived for a key, and when.
type arrival struct {
	sid string
	at  time.Time
}

// maxArrivals bounds the arrived map; beyond it entries older than the
// de-duplication window go, and if that is not enough, all of them (the
// journal's verdict then stands alone, as after a restart).
const maxArrivals = 100_000

// arrive records sid as the last message to arrive for each of keys, and
// reports whether it was already the last for all of them: a repeat, that
// is, the same delivery again with nothing between. Waldur's ids are
// hashes of payloads, so grant, revoke, grant of one user carry one id
// twice: the second grant is no repeat (the revoke arrived between) even
// while the first grant or the revoke is still queued or running, which
// the journal, knowing only completed messages, cannot tell. A key never
// seen (or forgotten) leaves the verdict to the journal.
func (r *Runner) arrive(sid string, keys []string) bool {
	now := time.Now()
	r.arrMu.Lock()
	defer r.arrMu.Unlock()
	repeat := true
	for _, k := range keys {
		if a, ok := r.arrived[k]; ok && a.sid != sid {
			repeat = false
		}
		r.arrived[k] = arrival{sid: sid, at: now}
	}
	if len(r.arrived) > maxArrivals {
		window := DefaultDedupWindow
		if w, ok := r.cfg.Journal.(interface{ Window() time.Duration }); ok && w.Window() > 0 {
			window = w.Window()
		}
		for k, a := range r.arrived {
			if now.Sub(a.at) > window {
				delete(r.arrived, k)
			}
		}
		if len(r.arrived) > maxArrivals {
			clear(r.arrived)
		}
	}
	return repeat
}

// park registers ev's id as in flight and reports false; or, when it is in
// flight already and m is a repeat of it (nothing else arrived for its keys
// since), parks m to be settled with the first copy's fate and reports
// true. Parking never blocks: the source goes on delivering.
func (r *Runner) park(ctx context.Context, m *Message, ev *event.Event, repeat bool) bool {
	sid := m.sid
	r.flightMu.Lock()
	defer r.flightMu.Unlock()
	f := r.inflight[sid]
	if f != nil && repeat {
		f.copies = append(f.copies, parked{ctx: ctx, m: m})
		r.m.Parked.WithLabelValues(m.Source).Inc()
		r.log.Info("copy of a message in flight parked until it settles", "source", m.Source, "id", ev.ID, "type", ev.Type)
		return true
	}
	if f == nil {
		f = &flight{}
		r.inflight[sid] = f
	}
	f.n++
	return false
}

// land ends one delivery of ev's id and, when it was the last in flight,
// returns the copies parked behind them.
func (r *Runner) land(m *Message, ev *event.Event) []parked {
	sid := m.sid
	if sid == "" {
		sid = SID(m.Source, ev.ID)
	}
	r.flightMu.Lock()
	defer r.flightMu.Unlock()
	f := r.inflight[sid]
	if f == nil {
		return nil
	}
	if f.n--; f.n > 0 {
		return nil
	}
	delete(r.inflight, sid)
	return f.copies
}

// unpark settles parked copies with the fate of the message they copy.
func (r *Runner) unpark(copies []parked, ev *event.Event, fate string, cause error) {
	for _, c := range copies {
		if fate != "requeued" {
			r.m.Duplicates.WithLabelValues(c.m.Source, r.m.TypeLabel(r.rules.Load(), ev.Type)).Inc()
			trace.SpanFromContext(c.ctx).SetAttributes(AttrDuplicate.Bool(true))
		}
		f := fate
		if f == FateDeadLettered && !c.m.DeadLetterOnFailure {
			f = FateAcked
		}
		r.apply(c.ctx, c.m, ev, f, cause, "copy of a message in flight settled with its fate")
	}
}

// awaitJournal blocks until a probe write to the journal succeeds (or ctx
// ends), then clears journalDown.
func (r *Runner) awaitJournal(ctx context.Context) error {
	select {
	case r.probe <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-r.probe }()
	p, ok := r.cfg.Journal.(Prober)
	delay := 50 * time.Millisecond
	for ok && r.journalDown.Load() {
		err := p.Probe(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.m.JournalWriteFailures.Inc()
		r.log.Debug("journal still cannot be written; taking no messages", "error", r.red.Error(err))
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		delay = min(2*delay, 5*time.Second)
	}
	if r.journalDown.CompareAndSwap(true, false) {
		r.m.JournalWritable.Set(1)
		r.log.Warn("journal can be written again; taking messages")
	}
	return nil
}

// journalFailed marks the journal down after a failed write.
func (r *Runner) journalFailed(err error) {
	r.m.JournalWriteFailures.Inc()
	if r.journalDown.CompareAndSwap(false, true) {
		r.m.JournalWritable.Set(0)
		r.log.Error("journal write failed: taking no messages until it can be written; messages in flight are left for redelivery",
			"error", r.red.Error(err))
	}
}

// planProgress is the journal's Progress of one plan, as the runner gives
// it to the executor: it reports write failures, and it holds the record
// of the plan's last step instead of writing it, because the message's
// completion, written next, supersedes it: one journal write per plan
// instead of two. It writes the held record (flush) when the message is
// not completed after all (another plan still runs, or the message is
// requeued). A nil *planProgress is no Progress.
type planProgress struct {
	r    *Runner
	p    Progress
	last int
	held actions.Result
	has  bool
}

func (pp *planProgress) progress() Progress {
	if pp == nil {
		return nil
	}
	return pp
}

// Done implements Progress.
func (pp *planProgress) Done(i int) (actions.Result, bool) { return pp.p.Done(i) }

// Record implements Progress.
func (pp *planProgress) Record(i int, res actions.Result) error {
	if i == pp.last {
		pp.held, pp.has = res, true
		return nil
	}
	if err := pp.p.Record(i, res); err != nil {
		pp.r.journalFailed(err)
		return err
	}
	return nil
}

// flush writes the held record of the last step, if any.
func (pp *planProgress) flush(ctx context.Context) {
	if pp == nil || !pp.has {
		return
	}
	pp.has = false
	if err := pp.p.Record(pp.last, pp.held); err != nil {
		pp.r.journalFailed(err)
		pp.r.log.ErrorContext(ctx, "journal write failed", "error", pp.r.red.Error(err))
	}
}

// tracker collects the outcomes of one message's plans.
type tracker struct {
	pending int32
	// matched counts the rules whose condition held.
	matched atomic.Int32
	keys    []string
	mu      sync.Mutex
	err     error
	worst   Outcome
	plans   []PlanResult // of the rules that ran
	first   [1]PlanResult
}

func (t *tracker) setErr(err error, o Outcome) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if o > t.worst || t.err == nil {
		t.worst, t.err = max(o, t.worst), err
	}
}

func (t *tracker) done() bool { return atomic.AddInt32(&t.pending, -1) == 0 }

func (t *tracker) addPlan(res PlanResult) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.plans == nil {
		t.plans = t.first[:0] // most messages run one plan: no allocation
	}
	t.plans = append(t.plans, res)
}

// logPlans logs the plans of m that ran: one, on the message's line (see
// apply); several, a line each ("plan done", naming the rule).
func (r *Runner) logPlans(ctx context.Context, m *Message, ev *event.Event, plans []PlanResult) {
	if len(plans) == 1 {
		m.plan, m.hasPlan = plans[0], true
		return
	}
	if len(plans) == 0 || !r.log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	tid := telemetry.TraceID(ctx)
	for _, res := range plans {
		logPlanLine(r.log, r.red, res, messageID(m, ev), tid)
	}
}

// finish settles a message once its last plan ended; prog is that plan's
// progress, whose held record is written when the message is requeued.
// then, when set, runs once the message is settled: it may be later, on
// the journal's goroutine (see settleThen).
func (r *Runner) finish(ctx context.Context, m *Message, ev *event.Event, t *tracker, prog *planProgress, then func()) {
	t.mu.Lock()
	worst, err, plans := t.worst, t.err, t.plans
	t.mu.Unlock()
	r.logPlans(ctx, m, ev, plans)
	trace.SpanFromContext(ctx).SetAttributes(AttrPlans.Int(int(t.matched.Load())))
	if worst == Interrupted {
		prog.flush(ctx)
		r.settleThen(ctx, m, ev, t.keys, "requeued", err, then)
		return
	}
	if err == nil && t.matched.Load() == 0 {
		r.unmatched(ctx, m, ev, t.keys, then)
		return
	}
	r.settleThen(ctx, m, ev, t.keys, "", err, then)
}

// settle applies the message's fate and logs one line about it, then
// settles the copies parked behind it with the same fate. fate "" means:
// acked on success, per the source's policy on failure. keys are the
// entity keys the message is recorded under in the journal; nil records
// nothing (duplicates: nothing changed).
func (r *Runner) settle(ctx context.Context, m *Message, ev *event.Event, keys []string, fate string, cause error) {
	r.settleThen(ctx, m, ev, keys, fate, cause, nil)
}

// settleThen is settle, then then (when set). With a journal that
// completes asynchronously and then set, the caller does not wait for the
// disk: the broker hears of the fate, and then runs, on the journal's
// goroutine once the completion is written; a batch of completions then
// costs one write and no goroutine per message.
func (r *Runner) settleThen(ctx context.Context, m *Message, ev *event.Event, keys []string, fate string, cause error, then func()) {
	if fate == "" {
		fate = FateAcked
		if cause != nil && m.DeadLetterOnFailure {
			fate = FateDeadLettered
		}
	}
	// The journal records the message as handled, with its fate, before
	// the broker hears of it: a redelivery (after a lost ack, or a quick
	// resend) is then recognised as a duplicate and not run again, and a
	// dead-lettered one is dead-lettered again. When the record cannot be
	// written the message is not acknowledged as if it had been: it is
	// left for redelivery, and the runner takes no more messages until
	// the journal can be written (awaitJournal).
	if fate != "requeued" && keys != nil && ev != nil && ev.ID != "" {
		c := Completion{Source: m.Source, ID: ev.ID, Keys: keys, Fate: fate}
		if aj, ok := r.cfg.Journal.(AsyncCompleter); ok && then != nil {
			aj.CompleteAsync(c, func(jerr error) {
				fate, cause := fate, cause
				if jerr != nil {
					r.journalFailed(jerr)
					fate, cause = "requeued", fmt.Errorf("journal write failed, left for redelivery: %w", jerr)
				}
				r.settled(ctx, m, ev, fate, cause)
				then()
			})
			return
		}
		if jerr := r.cfg.Journal.Complete(c); jerr != nil {
			r.journalFailed(jerr)
			fate, cause = "requeued", fmt.Errorf("journal write failed, left for redelivery: %w", jerr)
		}
	}
	r.settled(ctx, m, ev, fate, cause)
	if then != nil {
		then()
	}
}

// settled tells the broker m's fate (its completion, if any, is recorded)
// and settles the copies parked behind it.
func (r *Runner) settled(ctx context.Context, m *Message, ev *event.Event, fate string, cause error) {
	// The flight ends before the broker hears of the fate: a copy arriving
	// from now on finds the completion in the journal.
	var copies []parked
	if ev != nil && ev.ID != "" {
		copies = r.land(m, ev)
	}
	r.apply(ctx, m, ev, fate, cause, "")
	r.unpark(copies, ev, fate, cause)
}

// apply settles m with the broker, counts it and logs one line; handled,
// when set, replaces the "message handled" of a successful one.
func (r *Runner) apply(ctx context.Context, m *Message, ev *event.Event, fate string, cause error, handled string) {
	var err error
	if m.Settler != nil {
		sctx := context.WithoutCancel(ctx) // settled even when the runner stops
		switch fate {
		case FateAcked:
			err = m.Settler.Ack(sctx)
		case FateDeadLettered:
			reason := "failed"
			if cause != nil { // it travels in a header (x-eventfn-error): no secrets
				reason = r.red.Error(cause)
			}
			dctx, cancel := context.WithTimeout(sctx, SettleTimeout)
			err = m.Settler.DeadLetter(dctx, reason)
			cancel()
		case "requeued":
			err = m.Settler.Requeue(sctx)
		}
	}
	typ := ""
	if ev != nil {
		typ = ev.Type
	}
	r.m.Settled.WithLabelValues(m.Source, r.m.TypeLabel(r.rules.Load(), typ), fate).Inc()
	r.m.EndToEnd.WithLabelValues(m.Source).Observe(time.Since(m.Received).Seconds())
	r.endMessage(ctx, fate, cause, err)
	level, msg := slog.LevelInfo, "message handled"
	switch {
	case err != nil:
		level, msg = slog.LevelError, "settling message failed; the broker will redeliver it"
	case cause != nil && fate == "requeued":
		level, msg = slog.LevelWarn, "message left for redelivery"
	case cause != nil:
		level, msg = slog.LevelError, "message failed"
	case handled != "":
		msg = handled
	}
	if !r.log.Enabled(context.Background(), level) {
		return
	}
	// One line per message: typed attributes, no boxing of each into an
	// any and back (see BenchmarkDeliver's log/nolog pair for its cost).
	attrs := make([]slog.Attr, 0, 12)
	attrs = append(attrs, slog.String("source", m.Source), slog.String("id", messageID(m, ev)), slog.String("type", typ),
		slog.String("fate", fate), slog.Int64("duration_ms", time.Since(m.Received).Milliseconds()))
	if m.hasPlan && handled == "" {
		attrs = planAttrs(attrs, m.plan)
	}
	if tid := telemetry.TraceID(ctx); tid != "" {
		attrs = append(attrs, slog.String("trace_id", tid))
	}
	switch {
	case err != nil:
		attrs = append(attrs, slog.String("error", r.red.Error(err)))
	case cause != nil:
		attrs = append(attrs, slog.String("error", r.red.Error(cause)))
	}
	logAttrs(r.log, level, msg, attrs)
}

func messageID(m *Message, ev *event.Event) string {
	if ev != nil && ev.ID != "" {
		return ev.ID
	}
	return m.ID
}

// reject handles a message that could not be decoded.
func (r *Runner) reject(ctx context.Context, m *Message, err error) {
	r.m.Rejected.WithLabelValues(m.Source, event.Reason(err)).Inc()
	r.log.Error("message rejected: cannot decode", "source", m.Source, "id", m.ID,
		"destination", m.Destination, "reason", event.Reason(err), "error", err)
	r.settle(ctx, m, nil, nil, "", fmt.Errorf("rejected: %w", err))
}
