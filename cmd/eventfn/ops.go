package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/rules"
	"github.com/eventfn/eventfn/runner"
	"github.com/eventfn/eventfn/telemetry"
)

// ops is what `run` starts for operators besides the pipeline: the tracer
// provider (OTEL_* variables) and the Sentry reporter (runner.sentry_dsn).
type ops struct {
	tracing  trace.TracerProvider
	shutdown telemetry.Shutdown
	// reporter is nil unless Sentry is configured.
	reporter telemetry.Reporter
	sentry   *telemetry.Sentry
}

// startOps sets up tracing and Sentry. It installs the W3C propagator
// globally: webhook and Waldur steps inject the trace context with it.
func startOps(ctx context.Context, rs *rules.Ruleset, secrets map[string]any, logger *slog.Logger) (*ops, error) {
	otel.SetTextMapPropagator(telemetry.Propagator())
	tp, shutdown, err := telemetry.NewTracerProvider(ctx, telemetry.Options{ServiceVersion: version})
	if err != nil {
		return nil, err
	}
	o := &ops{tracing: tp, shutdown: shutdown}
	if exp := os.Getenv("OTEL_TRACES_EXPORTER"); exp != "" && exp != "none" {
		logger.Info("tracing on", "exporters", exp)
	}
	if dsn := rs.Runner.SentryDSN; dsn != "" {
		s, err := telemetry.NewSentry(telemetry.SentryOptions{
			DSN: dsn, Release: "eventfn@" + version,
			Redactor: telemetry.NewRedactor(telemetry.Values(secrets)...),
		})
		if err != nil {
			_ = shutdown(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("runner.sentry_dsn: %w", err)
		}
		o.sentry, o.reporter = s, s
		logger.Info("reporting failed plans to Sentry")
	}
	return o, nil
}

// close flushes the spans and Sentry events not yet sent, for up to 5s.
func (o *ops) close(logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := o.shutdown(ctx); err != nil {
		logger.Warn("flushing traces failed", "error", err)
	}
	if o.sentry != nil {
		o.sentry.Close(5 * time.Second)
	}
}

// startReload reloads r's rules from path on SIGHUP and when a rules file
// changes. The returned function stops it and waits until it has.
func startReload(ctx context.Context, r *runner.Runner, path string, logger *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	rl := &runner.Reloader{Runner: r, Logger: logger,
		Load: func() (*rules.Ruleset, error) { return rules.Load(path, rules.Options{Actions: actions.Builtin()}) }}
	stopReload := rl.Start(ctx, hup)
	return func() {
		signal.Stop(hup)
		stopReload()
	}
}
