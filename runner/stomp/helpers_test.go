package stomp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/internal/brokertest"
	"github.com/eventfn/eventfn/rules"
	"github.com/eventfn/eventfn/runner"
	"github.com/eventfn/eventfn/runner/stomp"
	"github.com/eventfn/eventfn/waldur"
	"github.com/eventfn/eventfn/waldur/waldurtest"
)

// logBuf collects a test's logs and prints them if the test fails.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func newLogger(t *testing.T) (*slog.Logger, *logBuf) {
	lb := &logBuf{}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("EVENTFN_TEST_LOGS") != "" {
			t.Logf("logs:\n%s", lb.String())
		}
	})
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

// recorder is an action kind ("record") that remembers what it was given.
type recorder struct {
	mu      sync.Mutex
	got     []string
	count   map[string]int
	delay   time.Duration
	ch      chan string
	started chan string
}

func newRecorder() *recorder {
	return &recorder{count: map[string]int{}, ch: make(chan string, 10000), started: make(chan string, 10000)}
}

func (r *recorder) Run(ctx context.Context, req actions.Request) (actions.Result, error) {
	v := fmt.Sprint(req.Params["value"])
	r.started <- v
	if r.delay > 0 {
		select {
		case <-time.After(r.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	r.mu.Lock()
	r.got = append(r.got, v)
	r.count[v]++
	r.mu.Unlock()
	r.ch <- v
	return actions.Result{"value": v}, nil
}

func (r *recorder) counts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.count))
	for k, v := range r.count {
		out[k] = v
	}
	return out
}

// waitN waits for n recordings and returns them.
func (r *recorder) waitN(t *testing.T, n int, timeout time.Duration) []string {
	t.Helper()
	var out []string
	deadline := time.After(timeout)
	for len(out) < n {
		select {
		case v := <-r.ch:
			out = append(out, v)
		case <-deadline:
			t.Fatalf("got %d of %d actions after %s: %v", len(out), n, timeout, out)
		}
	}
	return out
}

// failer is an action kind ("fail") that always fails for good.
type failer struct{}

func (failer) Run(context.Context, actions.Request) (actions.Result, error) {
	return nil, actions.Permanent(errors.New("provisioning exploded"))
}

// registry returns the standard actions plus record and fail.
func registry(logger *slog.Logger, rec *recorder) *actions.Registry {
	reg := actions.Standard(actions.Options{Logger: logger})
	reg.Register(actions.FromSpec("record", actions.Spec{Keys: []string{"value"}, Shorthand: "value", Required: []string{"value"}}, rec))
	reg.Register(actions.FromSpec("fail", actions.Spec{Keys: []string{"value"}, Shorthand: "value"}, failer{}))
	return reg
}

func parseRules(t *testing.T, reg *actions.Registry, yaml string) *rules.Ruleset {
	t.Helper()
	rs, err := rules.Parse("inline.yaml", []byte(yaml), rules.Options{Actions: reg})
	if err != nil {
		t.Fatalf("rules: %v", err)
	}
	return rs
}

// running is a runner running in the background.
type running struct {
	r      *runner.Runner
	m      *runner.Metrics
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func startRunner(t *testing.T, cfg runner.Config) *running {
	t.Helper()
	if cfg.Metrics == nil {
		cfg.Metrics = runner.NewMetrics()
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	r := runner.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	rr := &running{r: r, m: cfg.Metrics, cancel: cancel, done: make(chan error, 1)}
	go func() { rr.done <- r.Run(ctx) }()
	t.Cleanup(func() { rr.stop(t) })
	return rr
}

func (rr *running) stop(t *testing.T) {
	t.Helper()
	rr.once.Do(func() {
		rr.cancel()
		select {
		case err := <-rr.done:
			if err != nil {
				t.Errorf("runner: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("runner did not stop within 30s")
		}
	})
}

func (rr *running) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	brokertest.WaitFor(t, timeout, "runner ready (sources connected and subscribed)", rr.r.Ready)
}

// settled waits until n messages have been settled with fate.
func (rr *running) settled(t *testing.T, source, fate string, n int, timeout time.Duration) {
	t.Helper()
	brokertest.WaitFor(t, timeout, fmt.Sprintf("%d messages %s", n, fate), func() bool {
		return sumSettled(rr.m, source, fate) >= float64(n)
	})
}

func sumSettled(m *runner.Metrics, source, fate string) float64 {
	total := 0.0
	for _, typ := range append(waldur.ObjectTypes(), "", "test") {
		total += testutil.ToFloat64(m.Settled.WithLabelValues(source, typ, fate))
	}
	return total
}

// site is a per-test vhost with a Waldur-style subscription: a user whose
// login is the subscription UUID and queues named like Waldur's.
type site struct {
	b        *brokertest.Broker
	vhost    string
	login    string
	pass     string
	offering string
	queues   map[string]string // type → queue name
}

func newSite(t *testing.T, types ...string) *site {
	t.Helper()
	b := brokertest.New(t)
	s := &site{b: b, vhost: b.VHost(brokertest.Unique("eventfn-test-")), login: waldurtest.NewUUID(),
		pass: brokertest.Unique("pw-"), offering: waldurtest.NewUUID(), queues: map[string]string{}}
	b.User(s.vhost, s.login, s.pass)
	for _, typ := range types {
		q := waldur.QueueName(s.login, s.offering, typ)
		b.WaldurQueue(s.vhost, q)
		s.queues[typ] = q
	}
	return s
}

func (s *site) destinations() []string {
	var out []string
	for _, typ := range waldur.ObjectTypes() {
		if q, ok := s.queues[typ]; ok {
			out = append(out, waldur.Destination(q))
		}
	}
	return out
}

// srcSpec is a STOMP source as the tests write it: its url and settings.
type srcSpec struct {
	URL string
	stomp.Settings
}

// spec is a source for the site over url.
func (s *site) spec(url string) srcSpec {
	return srcSpec{URL: url, Settings: stomp.Settings{VHost: s.vhost, Login: s.login,
		PasscodeEnv: "TEST_PASSCODE", Subscribe: s.destinations()}}
}

// fromSpec builds the STOMP source "broker" of spec.
func fromSpec(spec srcSpec, d stomp.Deps) (*stomp.Source, error) {
	return stomp.FromSettings("broker", spec.URL, spec.Settings, d)
}

// deps returns source deps whose environment holds the site's passcode.
func (s *site) deps(logger *slog.Logger, m *runner.Metrics) stomp.Deps {
	return stomp.Deps{Logger: logger, Metrics: m, DrainTimeout: 5 * time.Second,
		Backoff: stomp.Backoff{Initial: 100 * time.Millisecond, Max: time.Second},
		LookupEnv: func(k string) (string, bool) {
			if k == "TEST_PASSCODE" {
				return s.pass, true
			}
			return "", false
		}}
}

func tcpURL() string { return "stomp://" + brokertest.STOMPAddr }
func wsURL() string  { return "stomp+ws://" + brokertest.WebSTOMPAddr + "/ws" }
