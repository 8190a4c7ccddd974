package runner

import (
	"context"
	"fmt"
	"reflect"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/event"
	"github.com/eventfn/eventfn/rules"
)

// EmitSource is the source name of events derived by emit steps.
const EmitSource = "emit"

// Headers of emitted events.
const (
	// HeaderParentID is the id of the event whose plan emitted this one.
	HeaderParentID = "x-eventfn-parent-id"
	// HeaderEmittedBy is the rule whose emit step emitted it.
	HeaderEmittedBy = "x-eventfn-emitted-by"
	// HeaderEmitDepth counts the emits from the delivered event to this
	// one (1 for an event emitted by a delivered one).
	HeaderEmitDepth = "x-eventfn-emit-depth"
)

// MaxEmitDepth bounds chains of emitted events (a rule that emits the type
// it handles would otherwise loop forever).
const MaxEmitDepth = 8

// emit feeds e, derived from plan's event, back into the runner: it runs
// through the same de-duplication, rules, journal and metrics as a
// delivered event, under the source "emit". It returns once the event's
// plans are queued (with no wait for room: see Dispatcher), so the
// emitting step succeeds only once the event is accepted; the event is in
// the journal's outbox first (see outboxRule). Emit steps are never
// recorded done: a plan resumed after a stop emits its events again, under
// the same ids, which the journal skips when they had completed. The
// event's id is "<parent id>:emit:<key>" (none when the parent has none);
// its headers carry the trace context of the step, so its span is a child
// of the emitting step's.
func (r *Runner) emit(ctx context.Context, plan rules.Plan, e actions.Emitted) (string, error) {
	parent := plan.Event
	depth := 1
	if d, err := strconv.Atoi(parent.Headers[HeaderEmitDepth]); err == nil && parent.Source == EmitSource {
		depth = d + 1
	}
	if depth > MaxEmitDepth {
		return "", actions.Permanent(fmt.Errorf("emit: %d emits deep (the limit is %d): does a rule emit the type it handles?", depth, MaxEmitDepth))
	}
	id := ""
	if parent.ID != "" {
		id = parent.ID + ":emit:" + e.Key
	}
	headers := map[string]string{HeaderEmittedBy: plan.Rule.Name, HeaderEmitDepth: strconv.Itoa(depth)}
	if parent.ID != "" {
		headers[HeaderParentID] = parent.ID
	}
	r.prop.Inject(ctx, propagation.MapCarrier(headers))
	ev := &event.Event{Type: e.Type, Payload: e.Payload, Headers: headers, ID: id}
	if id != "" {
		// In the outbox before it is delivered: its completion drops it.
		// Not an event holding a secret: secrets stay off the disk.
		rec := outboxRecord(ev)
		if !reflect.DeepEqual(r.red.Value(map[string]any(rec)), map[string]any(rec)) {
			r.log.Warn("emitted event holds a secret, so it is not written to the journal: it is lost if eventfn stops before it runs",
				"id", id, "rule", plan.Rule.Name)
		} else if err := r.cfg.Journal.Progress(EmitSource, id, outboxRule).Record(0, rec); err != nil {
			r.journalFailed(err)
			return "", fmt.Errorf("emit: recording the event in the journal: %w", err)
		}
	}
	m := &Message{Source: EmitSource, Destination: "emit:" + plan.Rule.Name, ID: id, Type: e.Type,
		Event: ev, Headers: headers, Received: time.Now(), Settler: emitSettler{r: r, id: id},
		DeadLetterOnFailure: false, emitted: true}
	if err := r.deliver(ctx, m); err != nil {
		return "", fmt.Errorf("emit: the runner did not take the event: %w", err)
	}
	return id, nil
}

// emitSettler settles emitted events: there is no broker to tell; a
// failed one is logged and counted like any failed message. An event
// settled as handled leaves the journal's outbox (see dropOutbox); one
// requeued stays there, to be delivered again at the next start.
type emitSettler struct {
	r  *Runner
	id string
}

func (s emitSettler) Ack(context.Context) error                { s.r.dropOutbox(s.id); return nil }
func (emitSettler) Requeue(context.Context) error              { return nil }
func (s emitSettler) DeadLetter(context.Context, string) error { s.r.dropOutbox(s.id); return nil }
