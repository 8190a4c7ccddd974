package runner

import (
	"context"
	"fmt"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/event"
)

// The journal's outbox: an emitted event lives in the runner only, and the
// plan that emitted it may be done and its message acknowledged before the
// event runs. So that a stop or a crash in between does not lose it, emit
// writes the event to the journal before delivering it (when it has an id),
// as a step record of the pseudo-rule outboxRule under the event's own id.
// The event's completion drops the record, as it drops every step record
// of its id; one still there when the runner starts is an event that was
// not handled, and is delivered again (outboxSource). Step records are kept
// for the journal's max age (7 days by default), and so are these.
const outboxRule = "\x00emitted"

// Outboxer is implemented by journals that list the emitted events they
// hold whose completion they have not recorded (see outboxRule).
type Outboxer interface {
	// Outbox returns the recorded events (outboxRecord's form).
	Outbox() []actions.Result
}

// outboxRecord is the journal's record of an emitted event.
func outboxRecord(ev *event.Event) actions.Result {
	headers := make(map[string]any, len(ev.Headers))
	for k, v := range ev.Headers {
		headers[k] = v
	}
	return actions.Result{"id": ev.ID, "type": ev.Type, "payload": ev.Payload, "headers": headers}
}

// outboxMessage is the message of a recorded emitted event, or an error
// when the record is not one.
func (r *Runner) outboxMessage(rec actions.Result) (*Message, error) {
	id, _ := rec["id"].(string)
	typ, _ := rec["type"].(string)
	if id == "" || typ == "" {
		return nil, fmt.Errorf("outbox record without id or type: %v", rec)
	}
	headers := map[string]string{}
	if h, ok := rec["headers"].(map[string]any); ok {
		for k, v := range h {
			if s, ok := v.(string); ok {
				headers[k] = s
			}
		}
	}
	payload, _ := rec["payload"].(map[string]any)
	ev := &event.Event{Type: typ, Payload: payload, Headers: headers, ID: id}
	return &Message{Source: EmitSource, Destination: "emit:" + headers[HeaderEmittedBy], ID: id, Type: typ,
		Event: ev, Headers: headers, Settler: emitSettler{r: r, id: id}}, nil
}

// dropOutbox removes emitted event id from the journal's outbox once it is
// settled as handled. Its completion did that already when it ran; a copy
// settled without a completion of its own (a duplicate, or one parked
// behind the copy in flight, whose completion may have come before this
// copy's record) is completed again, with no keys: the outbox record goes,
// the de-duplication state stays. It may run on the journal's goroutine,
// so it never waits for the journal.
func (r *Runner) dropOutbox(id string) {
	if id == "" {
		return
	}
	if _, held := r.cfg.Journal.Progress(EmitSource, id, outboxRule).Done(0); !held {
		return
	}
	c := Completion{Source: EmitSource, ID: id, Fate: FateAcked}
	if aj, ok := r.cfg.Journal.(AsyncCompleter); ok {
		aj.CompleteAsync(c, func(error) {}) // a failed write leaves the record: it is delivered and dropped again
		return
	}
	_ = r.cfg.Journal.Complete(c)
}

// outboxSource delivers, once, the emitted events a journal held
// unhandled when the runner started.
type outboxSource struct {
	r    *Runner
	recs []actions.Result
}

func (s *outboxSource) Name() string { return EmitSource }

func (s *outboxSource) Run(ctx context.Context, deliver Deliver) error {
	s.r.log.Info("delivering again the emitted events the last run left unhandled", "events", len(s.recs))
	for _, rec := range s.recs {
		m, err := s.r.outboxMessage(rec)
		if err != nil {
			s.r.log.Error("journal: skipping an unreadable emitted event", "error", err)
			continue
		}
		if err := deliver(ctx, m); err != nil {
			return nil // stopping: the record stays for the next start
		}
	}
	return nil
}
