package telemetry

import (
	"context"
	"fmt"
	"log/slog"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// NewRedactingHandler returns a slog handler that masks r's secrets in the
// message and in every attribute (strings, errors, values that print as
// text, inside groups) before passing the record to next.
func NewRedactingHandler(next slog.Handler, r *Redactor) slog.Handler {
	if r == nil || r.rep == nil {
		return next
	}
	return &redactingHandler{next: next, red: r}
}

type redactingHandler struct {
	next slog.Handler
	red  *Redactor
}

func (h *redactingHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *redactingHandler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, h.red.String(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h *redactingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i] = h.attr(a)
	}
	return &redactingHandler{next: h.next.WithAttrs(red), red: h.red}
}

func (h *redactingHandler) WithGroup(name string) slog.Handler {
	return &redactingHandler{next: h.next.WithGroup(name), red: h.red}
}

func (h *redactingHandler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, h.red.String(v.String()))
	case slog.KindGroup:
		g := v.Group()
		out := make([]any, len(g))
		for i, c := range g {
			out[i] = h.attr(c)
		}
		return slog.Group(a.Key, out...)
	case slog.KindAny:
		x := v.Any()
		if err, ok := x.(error); ok {
			return slog.String(a.Key, h.red.Error(err))
		}
		if s := fmt.Sprint(x); h.red.String(s) != s {
			return slog.String(a.Key, h.red.String(s))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// NewRedactingExporter returns a span exporter that masks r's secrets in
// every span's name, attributes, status description, events and links
// before passing the spans to next.
func NewRedactingExporter(next sdktrace.SpanExporter, r *Redactor) sdktrace.SpanExporter {
	if r == nil || r.rep == nil {
		return next
	}
	return &redactingExporter{next: next, red: r}
}

type redactingExporter struct {
	next sdktrace.SpanExporter
	red  *Redactor
}

func (e *redactingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	out := make([]sdktrace.ReadOnlySpan, len(spans))
	for i, s := range spans {
		out[i] = &redactedSpan{ReadOnlySpan: s, red: e.red}
	}
	return e.next.ExportSpans(ctx, out)
}

func (e *redactingExporter) Shutdown(ctx context.Context) error { return e.next.Shutdown(ctx) }

// redactedSpan is a span as exported: every text masked.
type redactedSpan struct {
	sdktrace.ReadOnlySpan
	red *Redactor
}

func (s *redactedSpan) Name() string { return s.red.String(s.ReadOnlySpan.Name()) }

func (s *redactedSpan) Attributes() []attribute.KeyValue {
	return redactAttrs(s.red, s.ReadOnlySpan.Attributes())
}

func (s *redactedSpan) Status() sdktrace.Status {
	st := s.ReadOnlySpan.Status()
	st.Description = s.red.String(st.Description)
	return st
}

func (s *redactedSpan) Events() []sdktrace.Event {
	evs := s.ReadOnlySpan.Events()
	out := make([]sdktrace.Event, len(evs))
	for i, ev := range evs {
		ev.Name = s.red.String(ev.Name)
		ev.Attributes = redactAttrs(s.red, ev.Attributes)
		out[i] = ev
	}
	return out
}

func (s *redactedSpan) Links() []sdktrace.Link {
	ls := s.ReadOnlySpan.Links()
	out := make([]sdktrace.Link, len(ls))
	for i, l := range ls {
		l.Attributes = redactAttrs(s.red, l.Attributes)
		out[i] = l
	}
	return out
}

func redactAttrs(r *Redactor, attrs []attribute.KeyValue) []attribute.KeyValue {
	out := make([]attribute.KeyValue, len(attrs))
	for i, kv := range attrs {
		switch kv.Value.Type() {
		case attribute.STRING:
			kv = kv.Key.String(r.String(kv.Value.AsString()))
		case attribute.STRINGSLICE:
			ss := kv.Value.AsStringSlice()
			for j := range ss {
				ss[j] = r.String(ss[j])
			}
			kv = kv.Key.StringSlice(ss)
		}
		out[i] = kv
	}
	return out
}
