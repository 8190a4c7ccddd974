package telemetry_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/rules"
	"github.com/eventfn/eventfn/runner"
	"github.com/eventfn/eventfn/telemetry"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestTracingIsOffByDefault(t *testing.T) {
	for _, e := range []map[string]string{
		{},
		{"OTEL_TRACES_EXPORTER": "none"},
		{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"},
	} {
		tp, shutdown, err := telemetry.NewTracerProvider(context.Background(), telemetry.Options{Getenv: env(e)})
		if err != nil {
			t.Fatal(err)
		}
		_, span := tp.Tracer("t").Start(context.Background(), "x")
		if span.IsRecording() {
			t.Errorf("%v: spans are recorded", e)
		}
		span.End()
		if err := shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	}
}

func TestBadExporterSettings(t *testing.T) {
	for _, e := range []map[string]string{
		{"OTEL_TRACES_EXPORTER": "zipkin"},
		{"OTEL_TRACES_EXPORTER": "carrier-pigeon"},
		{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
		{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "smtp"},
	} {
		if _, _, err := telemetry.NewTracerProvider(context.Background(), telemetry.Options{Getenv: env(e)}); err == nil {
			t.Errorf("%v: no error", e)
		}
	}
}

func TestConsoleExporter(t *testing.T) {
	var buf bytes.Buffer
	tp, shutdown, err := telemetry.NewTracerProvider(context.Background(), telemetry.Options{
		Console: &buf, ServiceVersion: "1.2.3", Getenv: env(map[string]string{"OTEL_TRACES_EXPORTER": "console"})})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tp.Tracer("t").Start(context.Background(), "console-span")
	span.End()
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"Name":"console-span"`, `"service.name"`, `"eventfn"`, `"1.2.3"`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("console output lacks %s:\n%s", want, buf.String())
		}
	}
}

// receiver collects the spans of OTLP export requests.
type receiver struct {
	mu    sync.Mutex
	reqs  []*collectortrace.ExportTraceServiceRequest
	paths []string
}

func (rc *receiver) add(path string, req *collectortrace.ExportTraceServiceRequest) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.reqs = append(rc.reqs, req)
	rc.paths = append(rc.paths, path)
}

// spans returns every span received, by name, with its resource's attributes.
func (rc *receiver) spans() (map[string][]*tracepb.Span, map[string]string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out, res := map[string][]*tracepb.Span{}, map[string]string{}
	for _, req := range rc.reqs {
		for _, rs := range req.GetResourceSpans() {
			for _, kv := range rs.GetResource().GetAttributes() {
				res[kv.GetKey()] = kv.GetValue().GetStringValue()
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, sp := range ss.GetSpans() {
					out[sp.GetName()] = append(out[sp.GetName()], sp)
				}
			}
		}
	}
	return out, res
}

// ServeHTTP is an OTLP/HTTP receiver: protobuf ExportTraceServiceRequests on /v1/traces.
func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "want a protobuf POST", http.StatusUnsupportedMediaType)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req := &collectortrace.ExportTraceServiceRequest{}
	if err := proto.Unmarshal(b, req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.add(r.URL.Path, req)
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// grpcReceiver is an OTLP/gRPC receiver.
type grpcReceiver struct {
	collectortrace.UnimplementedTraceServiceServer
	rc *receiver
}

func (g grpcReceiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	g.rc.add("grpc", req)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

type settler struct{ fates chan string }

func (s settler) Ack(context.Context) error                { s.fates <- "ack"; return nil }
func (s settler) Requeue(context.Context) error            { s.fates <- "requeue"; return nil }
func (s settler) DeadLetter(context.Context, string) error { s.fates <- "dead-letter"; return nil }

type oneMessage struct{ m *runner.Message }

func (o oneMessage) Name() string { return "test" }
func (o oneMessage) Run(ctx context.Context, deliver runner.Deliver) error {
	if err := deliver(ctx, o.m); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// runMessage runs one message through a real runner and returns its fate.
func runMessage(t *testing.T, cfg runner.Config, rulesSrc string, m *runner.Message) string {
	t.Helper()
	rs, err := rules.Parse("t.yaml", []byte(rulesSrc), rules.Options{Actions: actions.Builtin()})
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	s := settler{fates: make(chan string, 1)}
	m.Settler = s
	cfg.Rules, cfg.Logger, cfg.Sources = rs, logger, []runner.Source{oneMessage{m}}
	cfg.Actions = actions.Standard(actions.Options{Logger: logger})
	r := runner.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var fate string
	select {
	case fate = <-s.fates:
	case <-time.After(20 * time.Second):
		t.Fatal("message never settled")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return fate
}

const traceRules = `
version: 1
rules:
  - name: handle
    on: order
    steps:
      - id: say
        exec: [echo, "{{ payload.uuid }}"]
`

func strAttr(kvs []*commonpb.KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.GetKey() == key {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

func checkExported(t *testing.T, rc *receiver, remoteTrace string) {
	t.Helper()
	spans, res := rc.spans()
	if res["service.name"] != "eventfn" || res["service.version"] != "test-1" || res["deployment.environment"] != "ci" {
		t.Errorf("resource = %v", res)
	}
	msg, rule, step := spans["process order"], spans["rule handle"], spans["step say"]
	if len(msg) != 1 || len(rule) != 1 || len(step) != 1 {
		t.Fatalf("exported spans: %v", spans)
	}
	if got := hex.EncodeToString(msg[0].GetTraceId()); got != remoteTrace {
		t.Errorf("trace id = %s, want the message's %s", got, remoteTrace)
	}
	if !bytes.Equal(rule[0].GetParentSpanId(), msg[0].GetSpanId()) || !bytes.Equal(step[0].GetParentSpanId(), rule[0].GetSpanId()) {
		t.Error("exported spans do not form message → rule → step")
	}
	if msg[0].GetKind() != tracepb.Span_SPAN_KIND_CONSUMER {
		t.Errorf("message span kind = %v", msg[0].GetKind())
	}
	if got := strAttr(msg[0].GetAttributes(), "messaging.message.id"); got != "m-1" {
		t.Errorf("message id = %q", got)
	}
	if got := strAttr(msg[0].GetAttributes(), "eventfn.outcome"); got != "acked" {
		t.Errorf("outcome = %q", got)
	}
	if got := strAttr(step[0].GetAttributes(), "process.command_line"); got != "echo u-7" {
		t.Errorf("command = %q", got)
	}
}

func TestOTLPOverHTTP(t *testing.T) {
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=ci")
	tp, shutdown, err := telemetry.NewTracerProvider(context.Background(), telemetry.Options{ServiceVersion: "test-1"})
	if err != nil {
		t.Fatal(err)
	}
	const remote = "11111111111111111111111111111111"
	fate := runMessage(t, runner.Config{TracerProvider: tp}, traceRules, &runner.Message{
		Source: "test", Type: "order", ID: "m-1", Body: []byte(`{"uuid": "u-7"}`),
		Headers: map[string]string{"traceparent": "00-" + remote + "-2222222222222222-01"}})
	if fate != "ack" {
		t.Fatalf("fate %q", fate)
	}
	if err := shutdown(context.Background()); err != nil { // flushes the batch
		t.Fatal(err)
	}
	if len(rc.paths) == 0 || rc.paths[0] != "/v1/traces" {
		t.Fatalf("requests to %v, want /v1/traces", rc.paths)
	}
	checkExported(t, rc, remote)
}

func TestOTLPOverGRPC(t *testing.T) {
	rc := &receiver{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(gs, grpcReceiver{rc: rc})
	go func() { _ = gs.Serve(ln) }()
	defer gs.Stop()
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+ln.Addr().String())
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=ci")
	tp, shutdown, err := telemetry.NewTracerProvider(context.Background(), telemetry.Options{ServiceVersion: "test-1"})
	if err != nil {
		t.Fatal(err)
	}
	const remote = "33333333333333333333333333333333"
	fate := runMessage(t, runner.Config{TracerProvider: tp}, traceRules, &runner.Message{
		Source: "test", Type: "order", ID: "m-1", Body: []byte(`{"uuid": "u-7"}`),
		Headers: map[string]string{"traceparent": "00-" + remote + "-4444444444444444-01"}})
	if fate != "ack" {
		t.Fatalf("fate %q", fate)
	}
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkExported(t, rc, remote)
}
