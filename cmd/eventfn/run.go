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
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/event"
	"github.com/eventfn/eventfn/internal/creds"
	"github.com/eventfn/eventfn/rules"
	"github.com/eventfn/eventfn/runner"
	"github.com/eventfn/eventfn/runner/journal"
	"github.com/eventfn/eventfn/runner/local"
	"github.com/eventfn/eventfn/runner/mqtt"
	"github.com/eventfn/eventfn/runner/stomp"
	"github.com/eventfn/eventfn/waldur"
)

const runUsage = `usage: eventfn run [-c FILE] [--listen ADDR] [--log-format text|json]

Runs the sources of the rules file (its sources: section) through the rules
until SIGINT or SIGTERM, then lets in-flight plans finish (runner.
shutdown_timeout) before exiting. A file source without follow ends when
its events are done, and then so does run. The rules file comes from -c or
$EVENTFN_CONFIG.

SIGHUP, or saving a rules file, reloads the rules: a file with errors is
logged and the rules in force stay. --listen serves /healthz, /readyz and
/metrics. Traces go where OTEL_TRACES_EXPORTER (otlp, console; none by
default) and the other standard OTEL_* variables say; runner.sentry_dsn
reports failed plans to Sentry.

examples:
  eventfn run -c examples/quickstart/eventfn.yaml
  OTEL_TRACES_EXPORTER=otlp OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 \
    eventfn run -c eventfn.yaml --listen :9090 --log-format json
`

// deps are what building sources needs besides their spec.
type deps struct {
	logger *slog.Logger
	limits event.Limits
	stdin  io.Reader
	// dir is the rules file's directory: relative file paths start there.
	dir string
	// metrics receive broker sources' connection gauges; shutdownTimeout is
	// how long they keep connections for in-flight acknowledgements.
	metrics         *runner.Metrics
	shutdownTimeout time.Duration
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("run", runUsage, stderr)
	cfg := fs.String("c", "", "rules file (default $EVENTFN_CONFIG)")
	listen := fs.String("listen", "", "address for /healthz, /readyz and /metrics (overrides runner.listen; off when empty)")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if _, code := parseFlags(fs, args); code >= 0 {
		return code
	}
	logger, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "eventfn:", err)
		return 2
	}
	rs, ok := load(configPath(*cfg), stderr)
	if !ok {
		return 1
	}
	if err := run(ctx, rs, *listen, logger, os.Stdin); err != nil {
		logger.Error("eventfn stopped", "error", err)
		return 1
	}
	return 0
}

func run(ctx context.Context, rs *rules.Ruleset, listen string, logger *slog.Logger, stdin io.Reader) error {
	secrets, err := rs.ReadSecrets(os.LookupEnv)
	if err != nil {
		return err
	}
	limits := event.Limits{MaxBytes: rs.Runner.MaxBody}
	metrics := runner.NewMetrics()
	d := deps{logger: logger, limits: limits, stdin: stdin, dir: filepath.Dir(rs.Files[0]),
		metrics: metrics, shutdownTimeout: rs.Runner.ShutdownTimeout}
	var sources []runner.Source
	for _, spec := range rs.Sources {
		s, err := buildSource(spec, d)
		if err != nil {
			return fmt.Errorf("%s: source %q: %w", spec.Pos, spec.Name, err)
		}
		sources = append(sources, s)
	}
	if len(sources) == 0 {
		return errors.New("no sources: add a sources: section to the rules file (e.g. - {name: local, url: \"file:events.jsonl\"})")
	}
	wc, err := newWaldurCaller(rs.Waldur)
	if err != nil {
		return err
	}
	reg := actions.Standard(actions.Options{Logger: logger, Slurm: rs.Slurm, Waldur: wc})
	jn, err := openJournal(rs.Runner, filepath.Dir(rs.Files[0]), logger)
	if err != nil {
		return err
	}
	defer jn.Close()
	o, err := startOps(ctx, rs, secrets, logger)
	if err != nil {
		return err
	}
	defer o.close(logger)
	r := runner.New(runner.Config{
		Rules: rs, Actions: reg, Sources: sources, Logger: logger, Metrics: metrics, Journal: jn,
		Secrets: secrets, Concurrency: rs.Runner.Concurrency, Limits: limits,
		ShutdownTimeout: rs.Runner.ShutdownTimeout,
		TracerProvider:  o.tracing, Reporter: o.reporter,
	})
	if listen == "" {
		listen = rs.Runner.Listen
	}
	if listen != "" {
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			return fmt.Errorf("--listen: %w", err)
		}
		srv := &http.Server{Handler: healthHandler(r), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		logger.Info("serving health and metrics", "addr", ln.Addr().String())
	}
	defer startReload(ctx, r, rs.Files[0], logger)()
	logger.Info("eventfn running", "version", version, "rules", len(rs.Rules), "sources", len(sources))
	return r.Run(ctx)
}

func healthHandler(r *runner.Runner) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !r.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(r.Metrics().Registry, promhttp.HandlerOpts{}))
	return mux
}

// buildSource makes a source from its spec, by the URL's scheme.
func buildSource(spec rules.SourceSpec, d deps) (runner.Source, error) {
	if stomp.IsSpec(spec) { // stomp://, stomp+ssl://, stomp+ws://, stomp+wss://, waldur
		return stomp.FromSpec(spec, stomp.Deps{Logger: d.logger, Metrics: d.metrics,
			DrainTimeout: d.shutdownTimeout, Version: version, Dir: d.dir})
	}
	scheme, rest, _ := strings.Cut(spec.URL, ":")
	switch scheme {
	case "mqtt", "mqtts", "mqtt+ws", "mqtt+wss":
		return mqtt.FromSpec(spec, mqtt.Deps{Logger: d.logger, Metrics: d.metrics,
			DrainTimeout: d.shutdownTimeout, Dir: d.dir})
	case "file":
		path := strings.TrimPrefix(rest, "//")
		if path == "" {
			return nil, errors.New("file source needs a path: file:events.jsonl or file:- for stdin")
		}
		if path != "-" && !filepath.IsAbs(path) {
			path = filepath.Join(d.dir, path)
		}
		return &local.File{SourceName: spec.Name, Path: path, Follow: spec.Follow, Stdin: d.stdin,
			DeadLetterOnFailure: spec.OnFailure == "dead-letter"}, nil
	case "http":
		addr, path := strings.TrimPrefix(rest, "//"), "/events"
		if i := strings.IndexByte(addr, '/'); i >= 0 {
			addr, path = addr[:i], addr[i:]
		}
		return &local.HTTP{SourceName: spec.Name, Addr: addr, Path: path, Limits: d.limits, Logger: d.logger}, nil
	}
	return nil, fmt.Errorf("unsupported url %q (want file:, http://, stomp://, stomp+ssl://, stomp+ws://, stomp+wss://, mqtt://, mqtts://, mqtt+ws://, mqtt+wss:// or waldur)", spec.URL)
}

// openJournal opens the de-duplication journal: durable in runner.state_dir
// (relative to dir, the rules file's) when set, else in memory (forgotten on
// restart).
func openJournal(spec rules.RunnerSpec, dir string, logger *slog.Logger) (runner.Journal, error) {
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
func newWaldurCaller(spec rules.WaldurSpec) (actions.WaldurCaller, error) {
	if spec.APIURL == "" {
		return nil, nil
	}
	token, err := creds.Secret(spec.TokenFile, spec.TokenEnv, nil)
	if err != nil {
		return nil, fmt.Errorf("waldur: %w", err)
	}
	c, err := waldur.New(spec.APIURL, token, waldur.WithVersion(version))
	if err != nil {
		return nil, fmt.Errorf("waldur: %w", err)
	}
	return actions.WaldurClient(c), nil
}
