package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/config"
	"github.com/eventfn/eventfn/event"
	"github.com/eventfn/eventfn/internal/creds"
	"github.com/eventfn/eventfn/runner"
	"github.com/eventfn/eventfn/runner/journal"
	"github.com/eventfn/eventfn/runner/local"
	"github.com/eventfn/eventfn/source"
	"github.com/eventfn/eventfn/telemetry"
	"github.com/eventfn/eventfn/waldur"
)

const runUsage = `usage: eventfn run [-c FILE] [--env-file FILE] [--listen ADDR] [--log-format auto|text|json] [--log-level LEVEL]

Runs the sources of the rules file (its sources: section) through the rules
until SIGINT or SIGTERM, then lets in-flight plans finish (runner.
shutdown_timeout) before exiting. A file source without follow ends when
its events are done, and then so does run. The rules file comes from -c or
$EVENTFN_CONFIG.

SIGHUP, or saving a rules file, reloads the rules: a file with errors is
logged and the rules in force stay. --listen serves /healthz, /readyz and
/metrics. Traces go where OTEL_TRACES_EXPORTER (otlp, console; none by
default) and the other standard OTEL_* variables say; runner.sentry_dsn
reports failed plans to Sentry. Logs are text on a terminal, JSON
otherwise; at --log-level debug every step attempt is logged. A second
SIGINT exits at once, saying how many plans were in flight.

examples:
  eventfn run -c examples/quickstart/eventfn.yaml
  OTEL_TRACES_EXPORTER=otlp OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 \
    eventfn run -c eventfn.yaml --listen :9090 --log-format json
`

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("run", runUsage, stderr)
	cfg := fs.String("c", "", "rules file (default $EVENTFN_CONFIG)")
	listen := fs.String("listen", "", "address for /healthz, /readyz and /metrics (overrides runner.listen; off when empty)")
	logFormat := fs.String("log-format", "auto", "log format: auto (text on a terminal, JSON otherwise), text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	envFile := fs.String("env-file", "", "read unset environment variables from FILE (NAME=value lines)")
	if _, code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if !applyEnvFile(*envFile, stderr) {
		return 1
	}
	logger, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "eventfn:", err)
		return 2
	}
	c, ok := load(configPath(*cfg), stderr)
	if !ok {
		return 1
	}
	if err := run(ctx, c, *listen, logger, os.Stdin); err != nil {
		logger.Error("eventfn stopped", "error", err)
		return 1
	}
	return 0
}

func run(ctx context.Context, c *config.Config, listen string, logger *slog.Logger, stdin io.Reader) error {
	rs := c.Rules
	secrets, err := rs.ReadSecrets(os.LookupEnv)
	if err != nil {
		return err
	}
	// One redactor for everything that leaves the process: logs, spans,
	// Sentry, dead-letter reasons, {{ error }} and step results.
	red := processRedactor(c, secrets)
	logger = slog.New(telemetry.NewRedactingHandler(logger.Handler(), red))
	limits := event.Limits{MaxBytes: c.Runner.MaxBody}
	metrics := runner.NewMetrics()
	d := source.Deps{Logger: logger, Limits: limits, Stdin: stdin, Dir: c.Dir(),
		Metrics: metrics, DrainTimeout: c.Runner.ShutdownTimeout, Version: version, StateDir: c.Runner.StateDir}
	var sources []runner.Source
	for _, e := range c.Sources {
		s, err := buildSource(e, d)
		if err != nil {
			return fmt.Errorf("%s: source %q: %w", e.Pos, e.Name, err)
		}
		sources = append(sources, s)
	}
	if len(sources) == 0 {
		return errors.New("no sources: add a sources: section to the rules file (e.g. - {name: local, url: \"file:events.jsonl\"})")
	}
	wc, err := newWaldurCaller(c.Waldur)
	if err != nil {
		return err
	}
	reg := actions.Standard(actions.Options{Logger: logger, Slurm: c.Slurm, Waldur: wc})
	jn, err := openJournal(c.Runner, c.Dir(), logger)
	if err != nil {
		return err
	}
	defer jn.Close()
	o, err := startOps(ctx, c, red, logger)
	if err != nil {
		return err
	}
	defer o.close(logger)
	r := runner.New(runner.Config{
		Rules: rs, Actions: reg, Sources: sources, Logger: logger, Metrics: metrics, Journal: jn,
		Secrets: secrets, Redactor: red, Concurrency: c.Runner.Concurrency, Limits: limits,
		ShutdownTimeout: c.Runner.ShutdownTimeout,
		TracerProvider:  o.tracing, Reporter: o.reporter,
	})
	setInFlight(ctx, func() string { return plansInFlight(metrics) })
	if listen == "" {
		listen = c.Runner.Listen
	}
	if listen != "" {
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			return fmt.Errorf("--listen: %w", err)
		}
		srv := &http.Server{Handler: healthHandler(r, sources), ReadHeaderTimeout: local.DefaultReadHeaderTimeout,
			ReadTimeout: local.DefaultReadTimeout, WriteTimeout: local.DefaultWriteTimeout, IdleTimeout: local.DefaultIdleTimeout}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		logger.Info("serving health and metrics", "addr", ln.Addr().String())
	}
	defer startReload(ctx, r, c, logger)()
	logger.Info("eventfn running", "version", version, "rules", len(rs.Rules), "sources", len(sources))
	return r.Run(ctx)
}

// healthHandler serves /healthz (200 while the process runs: a broker that
// is down is not cured by a restart), /readyz (503 until every source is
// up) and /metrics. Both health pages list each source that is down, with
// why when it says.
func healthHandler(r *runner.Runner, sources []runner.Source) http.Handler {
	down := func() []string {
		var out []string
		for _, s := range sources {
			rd, ok := s.(runner.Readier)
			if !ok || rd.Ready() {
				continue
			}
			line := fmt.Sprintf("source %s: down", s.Name())
			if le, ok := s.(interface{ LastError() error }); ok {
				if err := le.LastError(); err != nil {
					line += ": " + err.Error()
				}
			}
			out = append(out, line)
		}
		return out
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
		for _, l := range down() {
			fmt.Fprintln(w, l)
		}
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !r.Ready() {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready")
			for _, l := range down() {
				fmt.Fprintln(w, l)
			}
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(r.Metrics().Registry, promhttp.HandlerOpts{}))
	return mux
}

// buildSource makes a source with the kind its URL's scheme chose at load.
func buildSource(e *source.Entry, d source.Deps) (runner.Source, error) {
	return e.Kind.Build(e, d)
}

// openJournal opens the de-duplication journal: durable in runner.state_dir
// (relative to dir, the rules file's) when set, else in memory (forgotten on
// restart).
func openJournal(spec config.RunnerSpec, dir string, logger *slog.Logger) (runner.Journal, error) {
	if spec.StateDir == "" {
		logger.Info("journal in memory (set runner.state_dir to keep it across restarts)")
		return runner.NewMemoryJournal(spec.DedupWindow, spec.JournalMaxEntries), nil
	}
	stateDir := spec.StateDir
	if !filepath.IsAbs(stateDir) {
		stateDir = filepath.Join(dir, stateDir)
	}
	j, err := journal.Open(stateDir, journal.Options{Window: spec.DedupWindow, MaxAge: spec.JournalMaxAge,
		MaxEntries: spec.JournalMaxEntries, Logger: logger})
	if err != nil {
		return nil, err
	}
	logger.Info("journal opened", "path", j.Path())
	return j, nil
}

// newWaldurCaller builds the Waldur client from the waldur: section, or
// returns nil when it is not configured.
func newWaldurCaller(spec config.WaldurSpec) (actions.WaldurCaller, error) {
	if spec.APIURL == "" {
		return nil, nil
	}
	token, err := creds.Secret(spec.TokenFile, spec.TokenEnv, nil)
	if err != nil {
		return nil, fmt.Errorf("waldur: %w", err)
	}
	c, err := waldur.New(spec.APIURL, token, waldur.WithVersion(version), waldur.WithInsecureHTTP(spec.InsecureHTTP))
	if err != nil {
		return nil, fmt.Errorf("waldur: %w", err)
	}
	return actions.WaldurClient(c), nil
}
