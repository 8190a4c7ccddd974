package bench

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/config"
	"github.com/eventfn/eventfn/event"
	"github.com/eventfn/eventfn/internal/creds"
	"github.com/eventfn/eventfn/publish"
	"github.com/eventfn/eventfn/runner"
	"github.com/eventfn/eventfn/runner/journal"
	"github.com/eventfn/eventfn/runner/mqtt"
	"github.com/eventfn/eventfn/runner/sources"
	"github.com/eventfn/eventfn/runner/stomp"
	sourcekit "github.com/eventfn/eventfn/source"
	"github.com/eventfn/eventfn/telemetry"
	"github.com/eventfn/eventfn/waldur"
)

// defaultRules is the rules file used without -c (read-only).
//
//go:embed rules.yaml
var defaultRules []byte

// EmbeddedRules returns the rules file the benchmark uses by default.
func EmbeddedRules() []byte { return append([]byte(nil), defaultRules...) }

// embeddedName names the embedded rules file in reports and errors.
const embeddedName = "embedded bench/rules.yaml"

func loadRules(path string) (*config.Config, error) {
	if path == "" {
		return config.Parse(embeddedName, defaultRules, config.Options{})
	}
	return config.Load(path, config.Options{})
}

// The measurement hooks. They sit where eventfn has extension points, so
// that the pipeline measured is the one `eventfn run` builds:
//
//   - meteredSource wraps the source: it notes each message's receipt,
//     copies the publish time from the payload into the
//     x-eventfn-published-at header when the transport has no headers
//     (MQTT), and wraps the message's Settler to count settlements;
//   - stampPropagator is the runner's Propagator (the default W3C one,
//     plus one header): it puts the publish time into the message's
//     context, which reaches every action;
//   - timedAction wraps every action kind: the first action to start for
//     a message records publish → action start, the end of the latency
//     measured.
//
// The latency hooks (the header copy, stampPropagator, timedAction) are
// installed in rate mode only (job.Latency): a drain reports no latency, so
// its CPU per message is the pipeline's alone, and the bare consumer skips
// its latency reading there too.

type stampKey struct{}

// stamp is a message's publish time; recorded makes only the first action
// of the message record it.
type stamp struct {
	ns       int64
	recorded atomic.Bool
}

type stampPropagator struct{ propagation.TextMapPropagator }

// Fields adds the publish time's header to the names the propagator reads:
// the runner hands a propagator only the headers it names.
func (p stampPropagator) Fields() []string {
	return append(p.TextMapPropagator.Fields(), publish.HeaderPublishedAt)
}

func (p stampPropagator) Extract(ctx context.Context, c propagation.TextMapCarrier) context.Context {
	ctx = p.TextMapPropagator.Extract(ctx, c)
	if v := c.Get(publish.HeaderPublishedAt); v != "" {
		if ns, err := strconv.ParseInt(v, 10, 64); err == nil {
			ctx = context.WithValue(ctx, stampKey{}, &stamp{ns: ns})
		}
	}
	return ctx
}

type timedAction struct {
	inner actions.Action
	m     *meter
	delay time.Duration
}

func (a timedAction) Run(ctx context.Context, req actions.Request) (actions.Result, error) {
	if s, ok := ctx.Value(stampKey{}).(*stamp); ok {
		if s.recorded.CompareAndSwap(false, true) {
			a.m.lat.record(time.Duration(time.Now().UnixNano() - s.ns))
		}
	}
	if a.delay > 0 && !sleep(ctx, a.delay) {
		return nil, ctx.Err()
	}
	return a.inner.Run(ctx, req)
}

type meteredSource struct {
	runner.Source
	m       *meter
	latency bool // copy the publish time into the headers (rate mode)
}

func (s meteredSource) Ready() bool {
	if r, ok := s.Source.(runner.Readier); ok {
		return r.Ready()
	}
	return true
}

func (s meteredSource) Run(ctx context.Context, deliver runner.Deliver) error {
	return s.Source.Run(ctx, func(ctx context.Context, msg *runner.Message) error {
		s.m.received(msg.Received)
		if s.latency && msg.Headers[publish.HeaderPublishedAt] == "" {
			if ns, ok := publishedAt(msg.Body); ok {
				if msg.Headers == nil {
					msg.Headers = map[string]string{}
				}
				msg.Headers[publish.HeaderPublishedAt] = strconv.FormatInt(ns, 10)
			}
		}
		msg.Settler = meteredSettler{inner: msg.Settler, m: s.m}
		return deliver(ctx, msg)
	})
}

type meteredSettler struct {
	inner runner.Settler
	m     *meter
}

func (s meteredSettler) Ack(ctx context.Context) error {
	err := s.inner.Ack(ctx)
	s.m.settle(err == nil)
	return err
}

func (s meteredSettler) Requeue(ctx context.Context) error {
	err := s.inner.Requeue(ctx)
	s.m.settle(false)
	return err
}

func (s meteredSettler) DeadLetter(ctx context.Context, reason string) error {
	err := s.inner.DeadLetter(ctx, reason)
	s.m.settle(false)
	return err
}

// runEventfn runs eventfn's pipeline as `eventfn run` builds it, with the
// job's source instead of the rules file's sources.
func runEventfn(ctx context.Context, j job, passcode string, m *meter, ready func(), res *result, stderr io.Writer) error {
	cfg, err := loadRules(j.Rules)
	if err != nil {
		return err
	}
	rs := cfg.Rules
	res.Rules = len(rs.Rules)
	secrets, err := rs.ReadSecrets(os.LookupEnv)
	if err != nil {
		return err
	}
	// The runner logs one line per message at info, as `eventfn run` does:
	// formatted by a real JSON handler (run's format when its stderr is not
	// a terminal: under systemd and in a container), written to the log
	// file or dropped.
	logOut := io.Discard
	if j.LogFile != "" {
		f, err := os.Create(j.LogFile)
		if err != nil {
			return err
		}
		defer f.Close()
		logOut = f
	}
	// Warnings and errors (a refused login, a lost connection) also go to
	// stderr, which the benchmark shows when a run fails.
	logger := slog.New(alsoWarnings{
		main: slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: slog.LevelInfo}),
		warn: slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})})
	metrics := runner.NewMetrics()

	src, err := source(j, passcode, logger, metrics)
	if err != nil {
		return err
	}
	var wc actions.WaldurCaller
	if cfg.Waldur.APIURL != "" {
		token, err := creds.Secret(cfg.Waldur.TokenFile, cfg.Waldur.TokenEnv, nil)
		if err != nil {
			return fmt.Errorf("waldur: %w", err)
		}
		c, err := waldur.New(cfg.Waldur.APIURL, token)
		if err != nil {
			return fmt.Errorf("waldur: %w", err)
		}
		wc = actions.WaldurClient(c)
	}
	std := actions.Standard(actions.Options{Logger: logger, Slurm: cfg.Slurm, Waldur: wc})
	reg := actions.NewRegistry()
	for _, kind := range std.Kinds() {
		a, _ := std.Get(kind)
		if j.Latency || j.ActionDelay > 0 {
			a = actions.WithRun(a, timedAction{inner: a, m: m, delay: j.ActionDelay})
		}
		reg.Register(a)
	}
	jn, err := openJournal(j.StateDir, cfg.Runner, logger)
	if err != nil {
		return err
	}
	defer jn.Close()
	concurrency := j.Concurrency
	if concurrency <= 0 {
		concurrency = cfg.Runner.Concurrency
	}
	// The tracer provider `eventfn run` uses: a no-op one unless the
	// OTEL_* variables ask for an exporter.
	tp, shutdownTracing, err := telemetry.NewTracerProvider(ctx, telemetry.Options{ServiceVersion: "bench"})
	if err != nil {
		return err
	}
	defer func() { _ = shutdownTracing(context.WithoutCancel(ctx)) }()
	prop := telemetry.Propagator()
	if j.Latency {
		prop = stampPropagator{prop}
	}
	r := runner.New(runner.Config{
		Rules: rs, Actions: reg, Sources: []runner.Source{meteredSource{Source: src, m: m, latency: j.Latency}},
		Logger: logger, Metrics: metrics, Journal: jn, Secrets: secrets, Concurrency: concurrency,
		Limits: event.Limits{MaxBytes: cfg.Runner.MaxBody}, ShutdownTimeout: cfg.Runner.ShutdownTimeout,
		TracerProvider: tp, Propagator: prop,
	})
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	ran := make(chan error, 1)
	go func() { ran <- r.Run(rctx) }()
	failed := make(chan error, 1)
	tick := time.NewTicker(time.Millisecond)
	for !r.Ready() {
		select {
		case <-tick.C:
		case err := <-ran:
			tick.Stop()
			if err == nil {
				err = errors.New("the runner stopped before its source was ready")
			}
			return err
		case <-ctx.Done():
			tick.Stop()
			stop()
			<-ran
			return fmt.Errorf("not ready: %w", context.Cause(ctx))
		}
	}
	tick.Stop()
	ready()
	go func() { failed <- <-ran }()
	err = waitDone(ctx, m, failed)
	stop()
	if err == nil {
		err = <-failed
	}
	collect(metrics, res)
	return err
}

// source builds the job's source from its settings, with the kind the
// source registry gives the URL, as `eventfn run` builds the sources of a
// rules file.
func source(j job, passcode string, logger *slog.Logger, metrics *runner.Metrics) (runner.Source, error) {
	lookup := func(k string) (string, bool) {
		if k == PasscodeEnv {
			return passcode, true
		}
		return os.LookupEnv(k)
	}
	var settings any
	family, err := familyOf(j.URL)
	if err != nil {
		return nil, err
	}
	if family == familyMQTT {
		s := mqtt.Settings{VHost: j.VHost, Login: j.Login, Subscribe: []string{j.Destination}, TLS: j.TLS,
			ClientID: j.ClientID, QoS: 1}
		if j.Login != "" {
			s.PasscodeEnv = PasscodeEnv
		}
		settings = &s
	} else {
		s := stomp.Settings{VHost: j.VHost, Login: j.Login, Subscribe: []string{j.Destination}, TLS: j.TLS,
			Prefetch: j.Prefetch}
		if j.Login != "" {
			s.PasscodeEnv = PasscodeEnv
		}
		settings = &s
	}
	kind, err := sources.Standard().ForURL(j.URL)
	if err != nil {
		return nil, err
	}
	e := &sourcekit.Entry{Name: "bench", URL: j.URL, Kind: kind, Settings: settings}
	return kind.Build(e, sourcekit.Deps{Logger: logger, Metrics: metrics, DrainTimeout: 10 * time.Second,
		Version: "bench", LookupEnv: lookup})
}

// openJournal opens the de-duplication journal as `eventfn run` does: in
// memory, or durable in dir.
func openJournal(dir string, spec config.RunnerSpec, logger *slog.Logger) (runner.Journal, error) {
	if dir == "" {
		return runner.NewMemoryJournal(spec.DedupWindow, spec.JournalMaxEntries), nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return journal.Open(filepath.Clean(dir), journal.Options{Window: spec.DedupWindow, MaxAge: spec.JournalMaxAge,
		MaxEntries: spec.JournalMaxEntries, Logger: logger})
}

// collect reads the runner's counters into r.
func collect(m *runner.Metrics, r *result) {
	families, err := m.Registry.Gather()
	if err != nil {
		return
	}
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			v := int(mt.GetCounter().GetValue())
			switch f.GetName() {
			case "eventfn_plans_total":
				for _, l := range mt.GetLabel() {
					if l.GetName() == "outcome" {
						if r.Plans == nil {
							r.Plans = map[string]int{}
						}
						r.Plans[l.GetValue()] += v
					}
				}
			case "eventfn_messages_unmatched_total":
				r.Unmatched += v
			case "eventfn_messages_rejected_total":
				r.Rejected += v
			case "eventfn_messages_duplicate_total":
				r.Duplicates += v
			case "eventfn_rule_errors_total":
				r.RuleErrors += v
			}
		}
	}
}

// alsoWarnings is the benchmark's log handler: main is eventfn run's (one
// handler), and the warnings and errors go to warn as well. Unlike
// slog.MultiHandler it gives main each record as it is, uncopied
// (MultiHandler clones every record for every handler): the benchmark
// measures the line eventfn run writes, not a fan-out of its own.
type alsoWarnings struct{ main, warn slog.Handler }

func (h alsoWarnings) Enabled(ctx context.Context, l slog.Level) bool {
	return h.main.Enabled(ctx, l) || h.warn.Enabled(ctx, l)
}

func (h alsoWarnings) Handle(ctx context.Context, r slog.Record) error {
	var err error
	if h.main.Enabled(ctx, r.Level) {
		err = h.main.Handle(ctx, r)
	}
	if h.warn.Enabled(ctx, r.Level) {
		err = errors.Join(err, h.warn.Handle(ctx, r))
	}
	return err
}

func (h alsoWarnings) WithAttrs(attrs []slog.Attr) slog.Handler {
	return alsoWarnings{main: h.main.WithAttrs(attrs), warn: h.warn.WithAttrs(attrs)}
}

func (h alsoWarnings) WithGroup(name string) slog.Handler {
	return alsoWarnings{main: h.main.WithGroup(name), warn: h.warn.WithGroup(name)}
}
