package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/rules"
	"github.com/eventfn/eventfn/telemetry"
)

// Helpers of the operations tests (tracing, shutdown, reload). Their names
// start with ops so that they do not collide with other tests' helpers.

// opsSettler records fates on a channel.
type opsSettler struct{ fates chan string }

func newOpsSettler() *opsSettler { return &opsSettler{fates: make(chan string, 8)} }

func (s *opsSettler) Ack(context.Context) error     { s.fates <- "ack"; return nil }
func (s *opsSettler) Requeue(context.Context) error { s.fates <- "requeue"; return nil }
func (s *opsSettler) DeadLetter(_ context.Context, reason string) error {
	s.fates <- "dead-letter"
	return nil
}

func (s *opsSettler) wait(t *testing.T) string {
	t.Helper()
	select {
	case f := <-s.fates:
		return f
	case <-time.After(20 * time.Second):
		t.Fatal("message never settled")
		return ""
	}
}

// opsSource delivers its messages, then (after its context ends) the
// late ones, recording what Deliver said to each.
type opsSource struct {
	msgs, late []*Message
	lateErrs   chan error
	// delivered, when set, is closed once msgs are handed over.
	delivered chan struct{}
}

func (s *opsSource) Name() string { return "ops" }
func (s *opsSource) Run(ctx context.Context, deliver Deliver) error {
	for _, m := range s.msgs {
		if err := deliver(ctx, m); err != nil {
			return err
		}
	}
	if s.delivered != nil {
		close(s.delivered)
	}
	<-ctx.Done()
	for _, m := range s.late {
		s.lateErrs <- deliver(ctx, m)
	}
	return nil
}

// syncBuffer is a bytes.Buffer safe for concurrent log writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func opsParse(t *testing.T, src string) *rules.Ruleset {
	t.Helper()
	rs, err := rules.Parse("ops.yaml", []byte(src), rules.Options{Actions: actions.Builtin()})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// runOnce runs a runner over msgs until every message is settled, then
// stops it and waits for it to return; it returns the runner (its metrics).
func runOnce(t *testing.T, cfg Config, msgs ...*Message) *Runner {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg.Sources = []Source{&opsSource{msgs: msgs}}
	r := New(cfg)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	for _, m := range msgs {
		m.Settler.(*opsSettler).wait(t)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return r
}

// jsonLines decodes the lines of a JSON log.
func jsonLines(t *testing.T, log string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func testCounterOps(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

const secretToken = "s3cr3t-T0ken-value"

func attrMap(kvs []attribute.KeyValue) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	return m
}

func TestSpanTree(t *testing.T) {
	otel.SetTextMapPropagator(telemetry.Propagator()) // what `eventfn run` installs; webhooks inject with it
	var fails atomic.Int32
	hookHeaders := make(chan http.Header, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hookHeaders <- r.Header.Clone()
		if fails.Add(1) == 1 {
			http.Error(w, "try again", http.StatusBadGateway)
			return
		}
		fmt.Fprint(w, `{"ok": true}`)
	}))
	defer hook.Close()

	rs := opsParse(t, fmt.Sprintf(`
version: 1
secrets:
  api_token: {env: EVENTFN_TEST_UNUSED}
rules:
  - name: provision
    on: order
    steps:
      - id: hook
        webhook: {url: "%s/orders?token={{ secrets.api_token }}&order={{ payload.uuid }}", body: {a: 1}}
        retry: {attempts: 3, backoff: constant, initial: 5ms}
      - id: cmd
        exec: [sh, -c, 'exit 0', sh, "{{ secrets.api_token }}", "two words"]
  - name: doomed
    on: order
    steps:
      - id: boom
        exec: [sh, -c, 'echo "token $1 rejected" >&2; exit 7', sh, "{{ secrets.api_token }}"]
        retry: {attempts: 1}
    on_failure:
      - log: {message: "doomed failed", level: warn}
`, hook.URL))
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	var logs syncBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))

	const remoteTrace, remoteSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	s := newOpsSettler()
	msg := &Message{Source: "broker", Destination: "queue.order", Type: "order", ID: "msg-1",
		Body:    []byte(`{"uuid": "u-1"}`),
		Headers: map[string]string{"Traceparent": "00-" + remoteTrace + "-" + remoteSpan + "-01"},
		Settler: s, DeadLetterOnFailure: true}
	runOnce(t, Config{Rules: rs, Actions: actions.Standard(actions.Options{Logger: logger}), Logger: logger,
		TracerProvider: tp, Secrets: map[string]any{"api_token": secretToken}}, msg)

	spans := rec.Ended()
	byName := map[string][]sdktrace.ReadOnlySpan{}
	for _, sp := range spans {
		byName[sp.Name()] = append(byName[sp.Name()], sp)
	}
	one := func(name string) sdktrace.ReadOnlySpan {
		t.Helper()
		if len(byName[name]) != 1 {
			names := make([]string, 0, len(spans))
			for _, sp := range spans {
				names = append(names, sp.Name())
			}
			t.Fatalf("want one span %q, spans: %v", name, names)
		}
		return byName[name][0]
	}

	// The message: a child of the trace context in its headers.
	msgSpan := one("process order")
	if got := msgSpan.Parent(); got.TraceID().String() != remoteTrace || got.SpanID().String() != remoteSpan || !got.IsRemote() {
		t.Errorf("message span parent = %v, want the remote %s/%s", got, remoteTrace, remoteSpan)
	}
	if msgSpan.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("message span kind = %v", msgSpan.SpanKind())
	}
	ma := attrMap(msgSpan.Attributes())
	for k, want := range map[attribute.Key]string{AttrSource: "broker", AttrDestination: "queue.order",
		AttrType: "order", AttrMessageID: "msg-1", AttrOutcome: "dead_lettered"} {
		if got := ma[k].AsString(); got != want {
			t.Errorf("message span %s = %q, want %q", k, got, want)
		}
	}
	if ma[AttrPlans].AsInt64() != 2 {
		t.Errorf("message span plans = %v", ma[AttrPlans])
	}
	if msgSpan.Status().Code != codes.Error {
		t.Errorf("message span status = %v, want error (a plan failed)", msgSpan.Status())
	}

	// A child per matched rule.
	prov, doomed := one("rule provision"), one("rule doomed")
	for _, sp := range []sdktrace.ReadOnlySpan{prov, doomed} {
		if sp.Parent().SpanID() != msgSpan.SpanContext().SpanID() {
			t.Errorf("%s: parent is not the message span", sp.Name())
		}
	}
	if got := attrMap(prov.Attributes())[AttrPlanOutcome].AsString(); got != "success" || prov.Status().Code == codes.Error {
		t.Errorf("rule provision outcome = %q, status %v", got, prov.Status())
	}
	if got := attrMap(doomed.Attributes())[AttrPlanOutcome].AsString(); got != "failed" || doomed.Status().Code != codes.Error {
		t.Errorf("rule doomed outcome = %q, status %v", got, doomed.Status())
	}

	// A child per step attempt: the webhook failed once, then succeeded.
	hooks := byName["step hook"]
	if len(hooks) != 2 {
		t.Fatalf("step hook attempts = %d, want 2", len(hooks))
	}
	for i, sp := range hooks {
		a := attrMap(sp.Attributes())
		if sp.Parent().SpanID() != prov.SpanContext().SpanID() {
			t.Errorf("hook attempt %d: parent is not the rule span", i+1)
		}
		if a[AttrAttempt].AsInt64() != int64(i+1) || a[AttrKind].AsString() != "webhook" || a[AttrMethod].AsString() != "POST" {
			t.Errorf("hook attempt %d attributes: %v", i+1, sp.Attributes())
		}
		url := a[AttrURL].AsString()
		if !strings.Contains(url, "token=***") || !strings.Contains(url, "order=u-1") || !strings.HasPrefix(url, hook.URL+"/orders?") {
			t.Errorf("hook url = %q, want the token masked and the rest kept", url)
		}
	}
	if a := attrMap(hooks[0].Attributes()); a[AttrStatus].AsInt64() != 502 || hooks[0].Status().Code != codes.Error || !a[AttrRetryable].AsBool() {
		t.Errorf("first hook attempt: %v %v", hooks[0].Attributes(), hooks[0].Status())
	}
	if a := attrMap(hooks[1].Attributes()); a[AttrStatus].AsInt64() != 200 || hooks[1].Status().Code == codes.Error {
		t.Errorf("second hook attempt: %v %v", hooks[1].Attributes(), hooks[1].Status())
	}
	// The webhook received the trace context of its attempt span.
	for i := range 2 {
		h := <-hookHeaders
		want := fmt.Sprintf("00-%s-%s-01", remoteTrace, hooks[i].SpanContext().SpanID())
		if got := h.Get("Traceparent"); got != want {
			t.Errorf("webhook attempt %d traceparent = %q, want %q", i+1, got, want)
		}
	}
	cmd := attrMap(one("step cmd").Attributes())
	if got := cmd[AttrCommand].AsString(); got != `sh -c "exit 0" sh *** "two words"` {
		t.Errorf("command line = %q", got)
	}
	if cmd[AttrExitCode].AsInt64() != 0 || cmd[AttrAttempt].AsInt64() != 1 {
		t.Errorf("step cmd attributes: %v", cmd)
	}
	boom := one("step boom")
	if a := attrMap(boom.Attributes()); a[AttrExitCode].AsInt64() != 7 || boom.Status().Code != codes.Error {
		t.Errorf("step boom: %v %v", boom.Attributes(), boom.Status())
	}
	if !strings.Contains(boom.Status().Description, "token *** rejected") {
		t.Errorf("step boom status = %q, want the stderr with the token masked", boom.Status().Description)
	}
	onFail := byName["step log@"+fmt.Sprint(rs.Rules[1].OnFailure[0].Pos.Line)]
	if len(onFail) != 1 || !attrMap(onFail[0].Attributes())[AttrOnFailure].AsBool() || onFail[0].Parent().SpanID() != doomed.SpanContext().SpanID() {
		t.Errorf("on_failure step span missing or misplaced: %v", onFail)
	}

	// No secret anywhere in what is exported.
	for _, sp := range spans {
		dump := fmt.Sprint(sp.Name(), sp.Attributes(), sp.Events(), sp.Status())
		if strings.Contains(dump, secretToken) {
			t.Errorf("span %s carries the secret: %s", sp.Name(), dump)
		}
	}

	// One log line for the message's outcome, with the trace id, and no secret.
	var outcome map[string]any
	for _, m := range jsonLines(t, logs.String()) {
		if m["msg"] == "message failed" {
			if outcome != nil {
				t.Error("two outcome lines for one message")
			}
			outcome = m
		}
	}
	if outcome == nil || outcome["trace_id"] != remoteTrace || outcome["id"] != "msg-1" || outcome["fate"] != "dead_lettered" {
		t.Errorf("outcome log line = %v", outcome)
	}
	if strings.Contains(logs.String(), secretToken) {
		t.Errorf("the logs carry the secret:\n%s", logs.String())
	}
}

func TestSpanWithoutTraceContextStartsATrace(t *testing.T) {
	rs := opsParse(t, `
version: 1
rules:
  - name: r
    on: order
    steps:
      - log: hi
`)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	logger := slog.New(slog.DiscardHandler)
	// An envelope with a traceparent in its headers (local sources), and a
	// payload that cannot be decoded.
	good := &Message{Source: "file", Envelope: true, Settler: newOpsSettler(),
		Body: []byte(`{"type": "order", "payload": {}, "headers": {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}`)}
	bad := &Message{Source: "file", Envelope: true, Settler: newOpsSettler(), Body: []byte(`{"type":`)}
	runOnce(t, Config{Rules: rs, Actions: actions.Standard(actions.Options{Logger: logger}), Logger: logger, TracerProvider: tp}, good, bad)
	var names []string
	for _, sp := range rec.Ended() {
		names = append(names, sp.Name())
		switch sp.Name() {
		case "process order":
			if sp.SpanContext().TraceID().String() != "0af7651916cd43dd8448eb211c80319c" {
				t.Errorf("envelope traceparent not used: %v", sp.SpanContext())
			}
		case "process":
			if sp.Parent().IsValid() || sp.Status().Code != codes.Error {
				t.Errorf("rejected message span: parent %v status %v", sp.Parent(), sp.Status())
			}
		}
	}
	if len(names) != 4 { // process order, rule r, step log@N, process
		t.Errorf("spans = %v", names)
	}
}

// fakeReporter records failures.
type fakeReporter struct {
	mu   sync.Mutex
	got  []telemetry.Failure
	tids []string
}

func (f *fakeReporter) Report(ctx context.Context, fl telemetry.Failure) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, fl)
	f.tids = append(f.tids, telemetry.TraceID(ctx))
}

func TestFailedPlansAreReported(t *testing.T) {
	rs := opsParse(t, `
version: 1
rules:
  - name: ok
    on: order
    steps:
      - log: fine
  - name: broken
    on: order
    key: payload.k
    steps:
      - exec: [sh, -c, 'exit 1']
        retry: {attempts: 1}
`)
	rep := &fakeReporter{}
	tp := sdktrace.NewTracerProvider()
	logger := slog.New(slog.DiscardHandler)
	msg := &Message{Source: "s", Type: "order", ID: "m-9", Body: []byte(`{"k": "key-1"}`), Settler: newOpsSettler()}
	runOnce(t, Config{Rules: rs, Actions: actions.Standard(actions.Options{Logger: logger}), Logger: logger,
		TracerProvider: tp, Reporter: rep}, msg)
	rep.mu.Lock()
	defer rep.mu.Unlock()
	if len(rep.got) != 1 {
		t.Fatalf("reports = %+v, want one (only the failed plan)", rep.got)
	}
	f := rep.got[0]
	if f.Rule != "broken" || f.Key != "key-1" || f.MessageID != "m-9" || f.Type != "order" || f.Source != "s" || f.Err == nil {
		t.Errorf("report = %+v", f)
	}
	if len(rep.tids[0]) != 32 {
		t.Errorf("report context carries no trace: %q", rep.tids[0])
	}
}

func TestAttemptRecordsTheCommandsRun(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	_, span := tp.Tracer("t").Start(context.Background(), "step")
	red := telemetry.NewRedactor(secretToken)
	slurm, _ := actions.Builtin().Get("slurm")
	x := &Executor{Redactor: red}
	x.endAttempt(context.Background(), span, &rules.Step{Kind: "slurm"}, slurm, actions.Request{Params: map[string]any{"args": []any{"show", "assoc"}}}, 1, actions.Result{"exit_code": 0, "commands": []any{
		[]any{"sacctmgr", "-i", "add", "account", "a1"},
		[]any{"sacctmgr", "-i", "modify", "account", "a1", "set", "description=" + secretToken},
	}}, nil, time.Millisecond)
	got := attrMap(rec.Ended()[0].Attributes())[AttrCommand].AsString()
	if want := "sacctmgr -i add account a1; sacctmgr -i modify account a1 set description=***"; got != want {
		t.Errorf("command line = %q, want %q", got, want)
	}
}

// TestStepAndPlanLogLines: at debug, one line per step attempt with the
// kind, command, exit code and duration; at info, one line per plan naming
// the rule (a message's only plan on the message's line, see
// TestOnePlanOneLine); secrets masked in both.
func TestStepAndPlanLogLines(t *testing.T) {
	rs := opsParse(t, `
version: 1
secrets:
  api_token: {env: EVENTFN_TEST_UNUSED}
rules:
  - name: provision
    on: order
    key: '"a"'
    steps:
      - id: cmd
        exec: {argv: [sh, -c, 'exit 3', sh, "{{ secrets.api_token }}"], ok_exit_codes: [3]}
  - name: other
    on: order
    key: '"b"'
    steps:
      - log: {level: debug, message: other}
`)
	var logs syncBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	msg := &Message{Source: "s", Type: "order", ID: "m-1", Body: []byte(`{}`), Settler: newOpsSettler()}
	runOnce(t, Config{Rules: rs, Actions: actions.Standard(actions.Options{Logger: logger}), Logger: logger,
		Secrets: map[string]any{"api_token": secretToken}}, msg)
	var step, plan map[string]any
	for _, m := range jsonLines(t, logs.String()) {
		switch m["msg"] {
		case "step attempt":
			if m["rule"] == "provision" { // rule other's step logs one too, in either order
				step = m
			}
		case "plan done":
			if m["rule"] == "provision" {
				plan = m
			}
		}
	}
	if step == nil || step["level"] != "DEBUG" || step["kind"] != "exec" || step["rule"] != "provision" || step["step"] != "cmd" ||
		step["command"] != "sh -c \"exit 3\" sh ***" || step["exit_code"] != float64(3) || step["duration"] == nil {
		t.Errorf("step line: %v", step)
	}
	if plan == nil || plan["level"] != "INFO" || plan["rule"] != "provision" || plan["outcome"] != "success" || plan["key"] != "a" {
		t.Errorf("plan line: %v", plan)
	}
	if strings.Contains(logs.String(), secretToken) {
		t.Error("a secret reached the log")
	}
}

// TestOnePlanOneLine: a message that only one rule could take logs one
// info line, the message's, naming the rule and the plan's outcome; a
// failed plan's error is on it, masked.
func TestOnePlanOneLine(t *testing.T) {
	rs := opsParse(t, `
version: 1
secrets:
  api_token: {env: EVENTFN_TEST_UNUSED}
rules:
  - name: provision
    on: order
    key: payload.uuid
    steps:
      - exec: {argv: [sh, -c, 'exit 4', sh, "{{ secrets.api_token }}"]}
        retry: {attempts: 1}
`)
	var logs syncBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	msg := &Message{Source: "s", Type: "order", ID: "m-1", Body: []byte(`{"uuid":"u1"}`), Settler: newOpsSettler()}
	runOnce(t, Config{Rules: rs, Actions: actions.Standard(actions.Options{Logger: logger}), Logger: logger,
		Secrets: map[string]any{"api_token": secretToken}}, msg)
	var lines []map[string]any
	for _, m := range jsonLines(t, logs.String()) {
		if m["msg"] == "plan done" || m["msg"] == "message failed" || m["msg"] == "message handled" {
			lines = append(lines, m)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("got %d plan/message lines, want 1: %v", len(lines), lines)
	}
	l := lines[0]
	if l["msg"] != "message failed" || l["rule"] != "provision" || l["outcome"] != "failed" || l["key"] != "u1" ||
		l["id"] != "m-1" || !strings.Contains(fmt.Sprint(l["error"]), "exit") {
		t.Errorf("message line: %v", l)
	}
	if strings.Contains(logs.String(), secretToken) {
		t.Error("a secret reached the log")
	}
}

// ctxAction records the span context its ctx carries.
type ctxAction struct{ got chan trace.SpanContext }

func (a ctxAction) Run(ctx context.Context, _ actions.Request) (actions.Result, error) {
	a.got <- trace.SpanContextFromContext(ctx)
	return actions.Result{}, nil
}

// With the no-op provider (no exporter: what `eventfn run` uses) no span is
// made, yet the trace context of a message still reaches its actions and
// its log lines, as with spans.
func TestNoopTracingStillPropagates(t *testing.T) {
	rs := opsParse(t, `
version: 1
rules:
  - name: r
    on: order
    steps:
      - log: hi
`)
	var logs syncBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	got := make(chan trace.SpanContext, 1)
	std := actions.Standard(actions.Options{Logger: slog.New(slog.DiscardHandler)})
	reg := actions.NewRegistry()
	for _, kind := range std.Kinds() {
		a, _ := std.Get(kind)
		reg.Register(actions.WithRun(a, ctxAction{got: got}))
	}
	const tid = "0af7651916cd43dd8448eb211c80319c"
	msg := &Message{Source: "s", Type: "order", ID: "m-1", Body: []byte(`{}`), Settler: newOpsSettler(),
		Headers: map[string]string{"Traceparent": "00-" + tid + "-b7ad6b7169203331-01"}}
	tp, _, err := telemetry.NewTracerProvider(context.Background(), telemetry.Options{Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	if !telemetry.IsNoop(tp.Tracer(TracerName)) {
		t.Fatal("no exporter: want the no-op tracer")
	}
	runOnce(t, Config{Rules: rs, Actions: reg, Logger: logger, TracerProvider: tp}, msg)
	if sc := <-got; sc.TraceID().String() != tid || !sc.IsRemote() {
		t.Errorf("the action's span context = %v, want the message's (remote, trace %s)", sc, tid)
	}
	var handled, plan map[string]any
	for _, m := range jsonLines(t, logs.String()) {
		switch m["msg"] {
		case "message handled":
			handled = m
		case "plan done":
			plan = m
		}
	}
	if handled["trace_id"] != tid || handled["rule"] != "r" {
		t.Errorf("the message's line (its only plan's too) without the trace id or the rule: %v", handled)
	}
	if plan != nil {
		t.Errorf("a message's only plan logged a line of its own: %v", plan)
	}
}
