package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventfn/eventfn/config"
	"github.com/eventfn/eventfn/internal/creds"
	"github.com/eventfn/eventfn/rules"
	"github.com/eventfn/eventfn/runner"
	"github.com/eventfn/eventfn/source"
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
func startOps(ctx context.Context, c *config.Config, red *telemetry.Redactor, logger *slog.Logger) (*ops, error) {
	otel.SetTextMapPropagator(telemetry.Propagator())
	tp, shutdown, err := telemetry.NewTracerProvider(ctx, telemetry.Options{ServiceVersion: version, Redactor: red})
	if err != nil {
		return nil, err
	}
	o := &ops{tracing: tp, shutdown: shutdown}
	if exp := os.Getenv("OTEL_TRACES_EXPORTER"); exp != "" && exp != "none" {
		logger.Info("tracing on", "exporters", exp)
	}
	if dsn := c.Runner.SentryDSN; dsn != "" {
		s, err := telemetry.NewSentry(telemetry.SentryOptions{
			DSN: dsn, Release: "eventfn@" + version,
			Redactor: red,
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
// start is the configuration in force since start: a reload that changes
// its sections read only at start says so.
func startReload(ctx context.Context, r *runner.Runner, start *config.Config, logger *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	var static []string // set by Load, read by Static: the Reloader runs one reload at a time
	rl := &runner.Reloader{Runner: r, Logger: logger,
		Load: func() (*rules.Ruleset, error) {
			c, err := config.Load(start.Rules.Files[0], config.Options{})
			if err != nil {
				return nil, err
			}
			static = c.StaticChanges(start)
			return c.Rules, nil
		},
		Static: func() []string { return static }}
	stopReload := rl.Start(ctx, hup)
	return func() {
		signal.Stop(hup)
		stopReload()
	}
}

// processRedactor returns the one redactor of `run`: it masks the rules'
// secrets and every credential the configuration names (the Waldur token,
// broker passcodes, HTTP source tokens and HMAC secrets), wherever they
// would leave the process. Credentials that cannot be read are skipped
// here: reading them fails later with its own error.
func processRedactor(c *config.Config, secrets map[string]any) *telemetry.Redactor {
	values := telemetry.Values(secrets)
	read := func(file, env string) {
		if file == "" && env == "" {
			return
		}
		if file != "" && !filepath.IsAbs(file) {
			file = filepath.Join(c.Dir(), file)
		}
		if v, err := creds.Secret(file, env, nil); err == nil {
			values = append(values, v)
		}
	}
	read(c.Waldur.TokenFile, c.Waldur.TokenEnv)
	for _, e := range c.Sources {
		if cr, ok := e.Settings.(source.Credentials); ok {
			for _, ref := range cr.CredentialRefs() {
				read(ref.File, ref.Env)
			}
		}
	}
	return telemetry.NewRedactor(values...)
}
