package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/event"
	"github.com/eventfn/eventfn/rules"
	"github.com/eventfn/eventfn/runner"
	"github.com/eventfn/eventfn/runner/local"
	"github.com/eventfn/eventfn/waldur"
)

const runUsage = `usage: eventfn run [-c FILE] [--listen ADDR] [--log-format text|json]

Runs the sources of the rules file (its sources: section) through the rules
until SIGINT or SIGTERM, then lets in-flight plans finish (runner.
shutdown_timeout) before exiting. A file source without follow ends when
its events are done, and then so does run. The rules file comes from -c or
$EVENTFN_CONFIG.

example:
  eventfn run -c examples/quickstart/eventfn.yaml
`

// deps are what building sources needs besides their spec.
type deps struct {
	logger *slog.Logger
	limits event.Limits
	stdin  io.Reader
	// dir is the rules file's directory: relative file paths start there.
	dir string
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
	d := deps{logger: logger, limits: limits, stdin: stdin, dir: filepath.Dir(rs.Files[0])}
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
	metrics := runner.NewMetrics()
	r := runner.New(runner.Config{
		Rules: rs, Actions: reg, Sources: sources, Logger: logger, Metrics: metrics,
		Secrets: secrets, Concurrency: rs.Runner.Concurrency, Limits: limits,
		ShutdownTimeout: rs.Runner.ShutdownTimeout,
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
	scheme, rest, _ := strings.Cut(spec.URL, ":")
	switch scheme {
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
	return nil, fmt.Errorf("unsupported url %q (want file:, http://)", spec.URL)
}

// waldurCaller adapts the Waldur client to the waldur action: errors the
// client does not call retryable are marked permanent.
type waldurCaller struct{ c *waldur.Client }

func (w waldurCaller) Call(ctx context.Context, method, path string, query url.Values, body any) (int, any, error) {
	resp, err := w.c.Do(ctx, method, path, query, body)
	status := 0
	var js any
	if resp != nil {
		status, js = resp.Status, resp.JSON
	}
	if err != nil && !waldur.Retryable(err) {
		err = actions.Permanent(err)
	}
	return status, js, err
}

// newWaldurCaller builds the Waldur client from the waldur: section, or
// returns nil when it is not configured.
func newWaldurCaller(spec rules.WaldurSpec) (actions.WaldurCaller, error) {
	if spec.APIURL == "" {
		return nil, nil
	}
	token, err := readSecret(spec.TokenFile, spec.TokenEnv)
	if err != nil {
		return nil, fmt.Errorf("waldur: %w", err)
	}
	c, err := waldur.New(spec.APIURL, token, waldur.WithVersion(version))
	if err != nil {
		return nil, fmt.Errorf("waldur: %w", err)
	}
	return waldurCaller{c}, nil
}

// readSecret reads a secret from a file (trailing newline dropped) or an
// environment variable; exactly one should be given.
func readSecret(file, env string) (string, error) {
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", err
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	case env != "":
		v, ok := os.LookupEnv(env)
		if !ok {
			return "", fmt.Errorf("environment variable %s is not set", env)
		}
		return v, nil
	}
	return "", errors.New("no secret given: set a *_file or *_env")
}
