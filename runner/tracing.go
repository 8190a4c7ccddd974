package runner

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"unicode"

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
	AttrCommand     = attribute.Key("process.command_line")
	AttrExitCode    = attribute.Key("process.exit.code")
	AttrMethod      = attribute.Key("http.request.method")
	AttrURL         = attribute.Key("url.full")
	AttrPath        = attribute.Key("url.path")
	AttrStatus      = attribute.Key("http.response.status_code")
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
	for k, v := range h {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

func (h headerCarrier) Set(string, string) {} // read-only: messages are not re-sent

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
	ctx = r.prop.Extract(ctx, headerCarrier(m.Headers))
	if !trace.SpanContextFromContext(ctx).IsValid() && ev != nil && len(ev.Headers) > 0 {
		ctx = r.prop.Extract(ctx, headerCarrier(ev.Headers))
	}
	name, typ, id := "process", m.Type, m.ID
	if ev != nil {
		typ = ev.Type
		if ev.ID != "" {
			id = ev.ID
		}
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

// endPlan records a plan's outcome on its span and ends it.
func (x *Executor) endPlan(span trace.Span, res PlanResult) {
	span.SetAttributes(AttrPlanOutcome.String(res.Outcome.String()))
	if res.Resumed > 0 {
		span.SetAttributes(AttrResumed.Int(res.Resumed))
	}
	if res.Outcome != Success {
		span.SetStatus(codes.Error, x.Redactor.Error(res.Err))
	}
	span.End()
}

// stepAttrs describes a rendered step: what it is and what it runs, with
// secrets masked.
func stepAttrs(s *rules.Step, params map[string]any, onFailure bool, red *telemetry.Redactor) []attribute.KeyValue {
	attrs := []attribute.KeyValue{AttrStep.String(s.Label()), AttrKind.String(s.Kind)}
	if onFailure {
		attrs = append(attrs, AttrOnFailure.Bool(true))
	}
	str := func(k string) string { v, _ := params[k].(string); return v }
	switch s.Kind {
	case "exec":
		attrs = append(attrs, AttrCommand.String(clip(red.String(commandLine(params["argv"])))))
	case "script":
		attrs = append(attrs, AttrCommand.String(clip(red.String(commandLine(append([]any{str("path")}, list(params["args"])...))))))
	case "slurm":
		var argv []any
		if c := str("command"); c != "" {
			argv = append(argv, c)
		}
		attrs = append(attrs, AttrCommand.String(clip(red.String(commandLine(append(argv, list(params["args"])...))))))
	case "webhook":
		method := strings.ToUpper(str("method"))
		if method == "" {
			method = "POST"
		}
		attrs = append(attrs, AttrMethod.String(method), AttrURL.String(clip(red.URL(str("url")))))
	case "waldur":
		method := strings.ToUpper(str("method"))
		if method == "" {
			method = "GET"
			if params["body"] != nil {
				method = "POST"
			}
		}
		attrs = append(attrs, AttrMethod.String(method), AttrPath.String(clip(red.String(str("path")))))
	}
	return attrs
}

// endAttempt records what one attempt returned on its span and ends it.
func endAttempt(span trace.Span, res actions.Result, err error, red *telemetry.Redactor) {
	if cmds, ok := res["commands"].([]any); ok && len(cmds) > 0 { // the argvs a slurm step ran
		lines := make([]string, len(cmds))
		for i, c := range cmds {
			lines[i] = commandLine(c)
		}
		span.SetAttributes(AttrCommand.String(clip(red.String(strings.Join(lines, "; ")))))
	}
	if code, ok := res["exit_code"].(int); ok {
		span.SetAttributes(AttrExitCode.Int(code))
	}
	if st, ok := res["status"].(int); ok && st != 0 {
		span.SetAttributes(AttrStatus.Int(st))
	}
	if err != nil {
		msg := red.Error(err)
		span.SetAttributes(AttrRetryable.Bool(actions.Retryable(err)))
		span.AddEvent("exception", trace.WithAttributes(
			attribute.String("exception.type", fmt.Sprintf("%T", err)),
			attribute.String("exception.message", msg)))
		span.SetStatus(codes.Error, msg)
	}
	span.End()
}

func list(v any) []any {
	switch t := v.(type) {
	case []any:
		return t
	case []string:
		out := make([]any, len(t))
		for i, s := range t {
			out[i] = s
		}
		return out
	case nil:
		return nil
	}
	return []any{v}
}

// commandLine formats an argv for people: words joined by spaces, quoted
// where they hold spaces or quotes.
func commandLine(argv any) string {
	words := list(argv)
	parts := make([]string, len(words))
	for i, w := range words {
		s := rules.Stringify(w)
		if s == "" || strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || r == '"' || r == '\'' }) >= 0 {
			s = strconv.Quote(s)
		}
		parts[i] = s
	}
	return strings.Join(parts, " ")
}

func clip(s string) string {
	if len(s) <= maxAttrLen {
		return s
	}
	return s[:maxAttrLen] + "…"
}

// noopTracer is the tracer of an Executor without one (stateless).
var noopTracer = noop.NewTracerProvider().Tracer(TracerName)
