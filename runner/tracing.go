package runner

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/event"
	"github.com/eventfn/eventfn/rules"
	"github.com/eventfn/eventfn/telemetry"
)

// TracerName is the instrumentation scope of the runner's spans.
const TracerName = "github.com/eventfn/eventfn/runner"

// Span attribute keys. Where OpenTelemetry's semantic conventions name a
// thing (messaging, HTTP, process) their names are used.
const (
	AttrSource      = attribute.Key("eventfn.source")
	AttrDestination = attribute.Key("messaging.destination.name")
	AttrMessageID   = attribute.Key("messaging.message.id")
	AttrType        = attribute.Key("eventfn.event.type")
	AttrOutcome     = attribute.Key("eventfn.outcome") // acked, dead_lettered, requeued
	AttrPlans       = attribute.Key("eventfn.plans")
	AttrDuplicate   = attribute.Key("eventfn.duplicate")
	AttrRule        = attribute.Key("eventfn.rule")
	AttrKey         = attribute.Key("eventfn.key")
	AttrPlanOutcome = attribute.Key("eventfn.plan.outcome") // success, failed, interrupted
	AttrResumed     = attribute.Key("eventfn.plan.resumed_steps")
	AttrStep        = attribute.Key("eventfn.step")
	AttrKind        = attribute.Key("eventfn.action.kind")
	AttrAttempt     = attribute.Key("eventfn.step.attempt")
	AttrOnFailure   = attribute.Key("eventfn.step.on_failure")
	AttrCommand     = actions.AttrCommand
	AttrExitCode    = actions.AttrExitCode
	AttrMethod      = actions.AttrMethod
	AttrURL         = actions.AttrURL
	AttrPath        = actions.AttrPath
	AttrStatus      = actions.AttrStatus
	AttrRetryable   = attribute.Key("eventfn.error.retryable")
)

// maxAttrLen bounds a rendered command or URL recorded on a span.
const maxAttrLen = 2048

// headerCarrier reads message headers for the propagator, matching names
// without regard to case (brokers and gateways differ in what they keep).
type headerCarrier map[string]string

func (h headerCarrier) Get(key string) string {
	if v, ok := h[key]; ok {
		return v
	}
	// The propagators ask for a few names (traceparent, tracestate,
	// baggage) that most messages lack: compare lengths before folding.
	// The names asked for are ASCII, and so is any spelling of them that
	// matters.
	for k, v := range h {
		if len(k) == len(key) && strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

func (h headerCarrier) Set(string, string) {} // read-only: messages are not re-sent

// carrier returns h as the propagator's carrier, or nil when h holds none
// of the names the propagator reads (its Fields), in any case. Most
// messages carry none: finding that takes one pass over the headers here,
// where the propagator's Gets would take one per name (a name missing as
// spelt is looked for without regard to case).
func (r *Runner) carrier(h map[string]string) headerCarrier {
	for k := range h {
		for _, f := range r.fields {
			if len(k) == len(f) && strings.EqualFold(k, f) {
				return h
			}
		}
	}
	return nil
}

func (h headerCarrier) Keys() []string {
	out := make([]string, 0, len(h))
	for k := range h {
		out = append(out, k)
	}
	return out
}

// startMessage starts the span of one message, a child of the trace context
// its headers carry (the transport's, else the envelope's), timed from
// the message's receipt.
func (r *Runner) startMessage(ctx context.Context, m *Message, ev *event.Event) context.Context {
	ctx = r.prop.Extract(ctx, r.carrier(m.Headers))
	if !trace.SpanContextFromContext(ctx).IsValid() && ev != nil && len(ev.Headers) > 0 {
		ctx = r.prop.Extract(ctx, r.carrier(ev.Headers))
	}
	name, typ, id := "process", m.Type, m.ID
	if ev != nil {
		typ = ev.Type
		if ev.ID != "" {
			id = ev.ID
		}
	}
	if !r.tracing && !trace.SpanFromContext(ctx).IsRecording() {
		// The no-op tracer's span would be the extracted parent's (or
		// none): the same span context, nothing recorded. The trace
		// context read from the headers still flows on to the actions.
		return ctx
	}
	if typ != "" {
		name += " " + typ
	}
	attrs := []attribute.KeyValue{AttrSource.String(m.Source), AttrType.String(typ)}
	if m.Destination != "" {
		attrs = append(attrs, AttrDestination.String(m.Destination))
	}
	if id != "" {
		attrs = append(attrs, AttrMessageID.String(id))
	}
	ctx, _ = r.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithTimestamp(m.Received), trace.WithAttributes(attrs...))
	return ctx
}

// endMessage records the fate of a message on its span and ends it.
func (r *Runner) endMessage(ctx context.Context, fate string, cause, settleErr error) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() { // no-op tracing: nothing to record (or end)
		return
	}
	span.SetAttributes(AttrOutcome.String(fate))
	switch {
	case settleErr != nil:
		span.SetStatus(codes.Error, "settling failed: "+r.red.Error(settleErr))
	case cause != nil:
		span.SetStatus(codes.Error, r.red.Error(cause))
	}
	span.End()
}

// tracer returns the executor's tracer, a no-op one when unset.
func (x *Executor) tracer() trace.Tracer {
	if x.Tracer == nil {
		return noopTracer
	}
	return x.Tracer
}

// tracing reports whether spans started in ctx would record anything:
// not with the no-op tracer (or none) under a non-recording parent, when
// the spans, their names and attributes are not made at all.
func (x *Executor) tracing(ctx context.Context) bool {
	return x.Tracer != nil && !telemetry.IsNoop(x.Tracer) || trace.SpanFromContext(ctx).IsRecording()
}

// endPlan records a plan's outcome on its span (nil: not tracing; ctx
// then holds the parent's span context), logs it (info, naming the rule)
// when logPlan is set, and ends the span.
func (x *Executor) endPlan(ctx context.Context, span trace.Span, res PlanResult, logPlan bool) {
	sc := trace.SpanContextFromContext(ctx)
	if span != nil {
		span.SetAttributes(AttrPlanOutcome.String(res.Outcome.String()))
		if res.Resumed > 0 {
			span.SetAttributes(AttrResumed.Int(res.Resumed))
		}
		sc = span.SpanContext()
		if res.Outcome != Success {
			span.SetStatus(codes.Error, x.Redactor.Error(res.Err))
		}
		defer span.End()
	}
	if !logPlan || x.Logger == nil || !x.Logger.Enabled(ctx, slog.LevelInfo) {
		return
	}
	tid := ""
	if sc.TraceID().IsValid() {
		tid = sc.TraceID().String()
	}
	logPlanLine(x.Logger, x.Redactor, res, "", tid)
}

// logPlanLine logs a plan's info line, "plan done": its rule, outcome and key
// (planAttrs), the message id and trace id when known, and the redacted
// error of a plan that did not succeed.
func logPlanLine(log *slog.Logger, red *telemetry.Redactor, res PlanResult, id, tid string) {
	attrs := planAttrs(make([]slog.Attr, 0, 8), res)
	if id != "" {
		attrs = append(attrs, slog.String("id", id))
	}
	if tid != "" {
		attrs = append(attrs, slog.String("trace_id", tid))
	}
	if res.Outcome != Success {
		attrs = append(attrs, slog.String("error", red.Error(res.Err)))
	}
	logAttrs(log, slog.LevelInfo, "plan done", attrs)
}

// logAttrs logs one record as slog.Logger.LogAttrs does, less the caller's
// program counter: nothing in eventfn sets slog's AddSource, and the
// runtime.Callers that LogAttrs pays for it is ~1% of a message's CPU in
// `eventfn bench`. The message's and the plans' lines go through here.
func logAttrs(log *slog.Logger, level slog.Level, msg string, attrs []slog.Attr) {
	ctx := context.Background()
	h := log.Handler()
	if !h.Enabled(ctx, level) {
		return
	}
	rec := slog.NewRecord(time.Now(), level, msg, 0)
	rec.AddAttrs(attrs...)
	_ = h.Handle(ctx, rec)
}

// planAttrs appends what a log line says of a plan: its rule, outcome and
// key, and the steps it skipped as done before.
func planAttrs(attrs []slog.Attr, res PlanResult) []slog.Attr {
	attrs = append(attrs, slog.String("rule", res.Rule), slog.String("outcome", res.Outcome.String()))
	if res.Key != "" {
		attrs = append(attrs, slog.String("key", res.Key))
	}
	if res.Resumed > 0 {
		attrs = append(attrs, slog.Int("resumed_steps", res.Resumed))
	}
	return attrs
}

// stepAttrs describes a rendered step: what it is, and what its kind says
// it runs (Kind.Attributes), with secrets masked.
func stepAttrs(s *rules.Step, k actions.Kind, req actions.Request, onFailure bool, red *telemetry.Redactor) []attribute.KeyValue {
	attrs := []attribute.KeyValue{AttrStep.String(s.Label()), AttrKind.String(s.Kind)}
	if onFailure {
		attrs = append(attrs, AttrOnFailure.Bool(true))
	}
	return append(attrs, masked(k.Attributes(req, nil), red)...)
}

// endAttempt records what one attempt returned on its span (the kind's
// attributes of the result; span nil: not tracing), logs it at debug
// (kind, command or URL, exit code or status, duration) and ends the span.
func (x *Executor) endAttempt(ctx context.Context, span trace.Span, s *rules.Step, k actions.Kind, req actions.Request, attempt int, res actions.Result, err error, took time.Duration) {
	debug := x.Logger != nil && x.Logger.Enabled(ctx, slog.LevelDebug)
	if span == nil && !debug {
		return
	}
	attrs := masked(k.Attributes(req, res), x.Redactor)
	if span != nil {
		x.endAttemptSpan(span, attrs, res, err)
	}
	if !debug {
		return
	}
	line := []slog.Attr{slog.String("rule", req.Rule), slog.String("step", s.Label()), slog.String("kind", s.Kind), slog.Int("attempt", attempt)}
	for _, a := range attrs {
		if name, ok := logNames[a.Key]; ok {
			line = append(line, slog.Any(name, a.Value.AsInterface()))
		}
	}
	line = append(line, slog.Duration("duration", took))
	if err != nil {
		line = append(line, slog.String("error", x.Redactor.Error(err)))
	}
	x.Logger.LogAttrs(ctx, slog.LevelDebug, "step attempt", line...)
}

// endAttemptSpan records an attempt's attributes and error on its span and
// ends it.
func (x *Executor) endAttemptSpan(span trace.Span, attrs []attribute.KeyValue, res actions.Result, err error) {
	if res != nil {
		span.SetAttributes(attrs...)
	}
	if err != nil {
		msg := x.Redactor.Error(err)
		span.SetAttributes(AttrRetryable.Bool(actions.Retryable(err)))
		span.AddEvent("exception", trace.WithAttributes(
			attribute.String("exception.type", fmt.Sprintf("%T", err)),
			attribute.String("exception.message", msg)))
		span.SetStatus(codes.Error, msg)
	}
	span.End()
}

// logNames are the log keys of the attributes kinds give.
var logNames = map[attribute.Key]string{
	AttrCommand: "command", AttrExitCode: "exit_code", AttrMethod: "method",
	AttrURL: "url", AttrPath: "path", AttrStatus: "status",
}

// masked masks secrets in string attributes (URLs as URLs) and bounds
// their length.
func masked(attrs []attribute.KeyValue, red *telemetry.Redactor) []attribute.KeyValue {
	for i, a := range attrs {
		if a.Value.Type() != attribute.STRING {
			continue
		}
		v := a.Value.AsString()
		if a.Key == AttrURL {
			v = red.URL(v)
		} else {
			v = red.String(v)
		}
		attrs[i] = a.Key.String(clip(v))
	}
	return attrs
}

func clip(s string) string {
	if len(s) <= maxAttrLen {
		return s
	}
	return s[:maxAttrLen] + "…"
}

// noopTracer is the tracer of an Executor without one (stateless).
var noopTracer = noop.NewTracerProvider().Tracer(TracerName)
