// Package telemetry builds eventfn's OpenTelemetry tracer provider from the
// standard OTEL_* environment variables, scrubs secrets out of what is
// exported (spans, logs, error reports) and reports failed plans to Sentry.
//
// Tracing is off unless OTEL_TRACES_EXPORTER selects an exporter:
//
//	OTEL_TRACES_EXPORTER          none (default), otlp, console; a comma-separated list sends to several
//	OTEL_EXPORTER_OTLP_PROTOCOL   http/protobuf (default) or grpc
//	OTEL_EXPORTER_OTLP_TRACES_PROTOCOL  the same, for traces only (wins over the above)
//	OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS,
//	OTEL_EXPORTER_OTLP_CERTIFICATE, OTEL_EXPORTER_OTLP_TIMEOUT, OTEL_EXPORTER_OTLP_COMPRESSION, ...
//	                              read by the OTLP exporters themselves
//	OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES  the resource (service.name defaults to eventfn)
//	OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG, OTEL_BSP_*  read by the SDK
//	OTEL_SDK_DISABLED=true        turns tracing off whatever else is set
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Options tune NewTracerProvider.
type Options struct {
	// ServiceName is service.name unless OTEL_SERVICE_NAME or
	// OTEL_RESOURCE_ATTRIBUTES set one (default "eventfn").
	ServiceName string
	// ServiceVersion is service.version.
	ServiceVersion string
	// Console receives the spans of the console exporter (default stdout).
	Console io.Writer
	// Getenv reads the variables that select the exporters (default
	// os.Getenv). The exporters and the SDK read their own settings from the
	// process environment.
	Getenv func(string) string
	// Redactor masks secrets in every span before it is exported.
	Redactor *Redactor
}

// Shutdown flushes and stops a tracer provider.
type Shutdown func(ctx context.Context) error

// NewTracerProvider returns the tracer provider the environment asks for and
// the function that flushes it at exit. With no exporter selected it returns
// a no-op provider: spans cost next to nothing, yet a trace context read
// from a message still flows on to webhook and Waldur calls.
func NewTracerProvider(ctx context.Context, opts Options) (trace.TracerProvider, Shutdown, error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	noShutdown := func(context.Context) error { return nil }
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return noop.NewTracerProvider(), noShutdown, nil
	}
	names := exporterNames(getenv("OTEL_TRACES_EXPORTER"))
	if len(names) == 0 {
		return noop.NewTracerProvider(), noShutdown, nil
	}
	var exporters []sdktrace.SpanExporter
	closeAll := func() {
		for _, e := range exporters {
			_ = e.Shutdown(context.WithoutCancel(ctx))
		}
	}
	for _, name := range names {
		exp, err := newExporter(ctx, name, getenv, opts)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		exporters = append(exporters, NewRedactingExporter(exp, opts.Redactor))
	}
	res, err := newResource(ctx, opts)
	if err != nil {
		closeAll()
		return nil, nil, fmt.Errorf("tracing: resource: %w", err)
	}
	popts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	for _, e := range exporters {
		popts = append(popts, sdktrace.WithBatcher(e))
	}
	tp := sdktrace.NewTracerProvider(popts...)
	return tp, tp.Shutdown, nil
}

// exporterNames splits OTEL_TRACES_EXPORTER; "none" alone means no exporter.
func exporterNames(v string) []string {
	var out []string
	for _, n := range strings.Split(v, ",") {
		n = strings.ToLower(strings.TrimSpace(n))
		if n == "" || n == "none" || slices.Contains(out, n) {
			continue
		}
		out = append(out, n)
	}
	return out
}

func newExporter(ctx context.Context, name string, getenv func(string) string, opts Options) (sdktrace.SpanExporter, error) {
	switch name {
	case "otlp":
		proto := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
		if proto == "" {
			proto = strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_PROTOCOL"))
		}
		switch proto {
		case "", "http/protobuf":
			exp, err := otlptracehttp.New(ctx)
			if err != nil {
				return nil, fmt.Errorf("tracing: otlp http exporter: %w", err)
			}
			return exp, nil
		case "grpc":
			exp, err := otlptracegrpc.New(ctx)
			if err != nil {
				return nil, fmt.Errorf("tracing: otlp grpc exporter: %w", err)
			}
			return exp, nil
		}
		return nil, fmt.Errorf("tracing: OTEL_EXPORTER_OTLP_PROTOCOL %q: want http/protobuf or grpc", proto)
	case "console", "stdout":
		w := opts.Console
		if w == nil {
			w = os.Stdout
		}
		exp, err := stdouttrace.New(stdouttrace.WithWriter(w))
		if err != nil {
			return nil, fmt.Errorf("tracing: console exporter: %w", err)
		}
		return exp, nil
	case "zipkin", "jaeger":
		return nil, fmt.Errorf("tracing: OTEL_TRACES_EXPORTER %q is not built in: use otlp (Jaeger and Zipkin accept OTLP)", name)
	}
	return nil, fmt.Errorf("tracing: OTEL_TRACES_EXPORTER %q: want otlp, console or none", name)
}

func newResource(ctx context.Context, opts Options) (*resource.Resource, error) {
	name := opts.ServiceName
	if name == "" {
		name = "eventfn"
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", name)}
	if opts.ServiceVersion != "" {
		attrs = append(attrs, attribute.String("service.version", opts.ServiceVersion))
	}
	// Later options win: the environment overrides the defaults above.
	res, err := resource.New(ctx,
		resource.WithAttributes(attrs...),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithFromEnv(),
	)
	if errors.Is(err, resource.ErrPartialResource) { // a bad OTEL_RESOURCE_ATTRIBUTES entry: keep the rest
		return res, nil
	}
	return res, err
}

// Propagator is the W3C trace context and baggage propagator eventfn reads
// from message headers and writes into webhook and Waldur requests.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// IsNoop reports whether t is OpenTelemetry's no-op tracer, the one
// NewTracerProvider's provider gives when no exporter is selected. Its
// spans record nothing and carry only their parent's span context, so a
// caller may skip making them (and the attributes they would be given)
// when the context it starts them in holds no recording span.
func IsNoop(t trace.Tracer) bool {
	switch t.(type) {
	case noop.Tracer, *noop.Tracer:
		return true
	}
	return false
}

// TraceID returns the trace id of the span in ctx, or "" when there is none.
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}
