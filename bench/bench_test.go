package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary be a benchmark's consumer process: Run
// re-executes it with ChildEnv set, as `eventfn bench` re-executes itself.
func TestMain(m *testing.M) {
	if spec := os.Getenv(ChildEnv); spec != "" {
		os.Exit(RunChild(context.Background(), spec, os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// loopback returns the loopback broker's addresses (scripts/test-env.sh),
// overridable like internal/brokertest's.
func loopback(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// TestTinyBench runs a small drain over STOMP against the loopback
// RabbitMQ, both consumers, and checks the report holds together. An
// unreachable broker fails the test.
func TestTinyBench(t *testing.T) {
	o := tinyOptions()
	o.Count, o.Prefetch = 200, 50
	rep := runTiny(t, o)
	if len(rep.Runs) != 2 || rep.Bare == nil || rep.Eventfn == nil {
		t.Fatalf("runs: %+v", rep.Runs)
	}
	for _, run := range rep.Runs {
		if run.Messages != 200 || run.Throughput <= 0 || run.CPUSeconds <= 0 || run.RSSPeakMiB <= 0 || run.StartupMS <= 0 {
			t.Errorf("%s run incomplete: %+v", run.Role, run)
		}
		if run.AllocsPerMsg <= 0 || run.AllocBytesPerMsg <= 0 {
			t.Errorf("%s run: allocations per message not reported: %+v", run.Role, run)
		}
		// Every message is acknowledged by a write to the broker's socket
		// (several share one when coalesced): some, and at most about one
		// per message besides the log's.
		if run.WritesPerMsg <= 0 || run.WritesPerMsg > 3 {
			t.Errorf("%s run: %.2f write system calls per message", run.Role, run.WritesPerMsg)
		}
		if run.Role == RoleEventfn {
			if run.Plans["success"] != 200 || run.Unmatched+run.Rejected+run.RuleErrors+run.SettleErrors != 0 {
				t.Errorf("eventfn did not run the order rule once per message: %+v", run)
			}
		}
		if run.Latency != nil && run.Latency.Samples != 0 {
			t.Errorf("%s: a drain measured latency (its hooks are for rate mode): %+v", run.Role, run.Latency)
		}
	}
	if e := rep.Eventfn; e.ThroughputMin > e.Throughput || e.Throughput > e.ThroughputMax || e.CPUPerMsgUSMin > e.CPUPerMsgUSMax {
		t.Errorf("summary: median outside [min, max]: %+v", e)
	}
	if rep.Ratio <= 0 || rep.Machine.Broker == "" || rep.RuleCount == 0 {
		t.Errorf("report: ratio %v, broker %q, rules %d", rep.Ratio, rep.Machine.Broker, rep.RuleCount)
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil || !strings.Contains(text.String(), "ratio") || !strings.Contains(text.String(), "allocs/msg") {
		t.Errorf("text report (%v):\n%s", err, text.String())
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Error(err)
	}
}

// TestTinyRate runs rate mode briefly over STOMP: both consumers measure
// the latency of every message, eventfn at the start of its action.
func TestTinyRate(t *testing.T) {
	o := tinyOptions()
	o.Rate, o.Duration = 200, time.Second
	rep := runTiny(t, o)
	if len(rep.Runs) != 2 {
		t.Fatalf("runs: %+v", rep.Runs)
	}
	for _, run := range rep.Runs {
		if run.Latency == nil || run.Latency.Samples != run.Messages || run.Messages != 200 {
			t.Errorf("%s: latency of %d messages measured, want all 200: %+v", run.Role, run.Messages, run.Latency)
		}
	}
}

// tinyOptions are the tiny runs' options: both consumers over STOMP
// against the loopback broker.
func tinyOptions() Options {
	return Options{
		URL:        "stomp://" + loopback("EVENTFN_TEST_STOMP_ADDR", "127.0.0.1:61613"),
		Login:      loopback("EVENTFN_TEST_RABBITMQ_USER", "guest"),
		Passcode:   loopback("EVENTFN_TEST_RABBITMQ_PASS", "guest"),
		Management: loopback("EVENTFN_TEST_RABBITMQ_MGMT", "http://127.0.0.1:15672"),
		Baseline:   true,
		Timeout:    30 * time.Second,
		Command:    []string{os.Args[0]},
	}
}

// runTiny runs the benchmark with o; an unreachable broker fails the test.
func runTiny(t *testing.T, o Options) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("bench (is RabbitMQ up? scripts/test-env.sh starts it): %v", err)
	}
	return rep
}

func TestHistogramPercentiles(t *testing.T) {
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	l := h.summary()
	near := func(got, want float64) bool { return got > want*0.97 && got < want*1.03 }
	if l.Samples != 1000 || !near(l.P50, 0.5) || !near(l.P90, 0.9) || !near(l.P99, 0.99) || l.Max != 1 {
		t.Errorf("summary = %+v", l)
	}
	if (&histogram{}).summary() != nil {
		t.Error("an empty histogram has no summary")
	}
}

func TestPublishedAt(t *testing.T) {
	g := newGenerator(benchOffering)
	now := time.Unix(1700000000, 123456789)
	body := g.body(7, now)
	var obj map[string]any
	if err := json.Unmarshal(body, &obj); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	if obj["order_state"] != "executing" || obj[fieldSeq] != float64(7) || len(obj["order_uuid"].(string)) != 32 {
		t.Errorf("payload %s", body)
	}
	if ns, ok := publishedAt(body); !ok || ns != now.UnixNano() {
		t.Errorf("publishedAt = %d, %v", ns, ok)
	}
	if _, ok := publishedAt([]byte(`{"order_uuid":"x"}`)); ok {
		t.Error("publishedAt of a payload without it")
	}
}

// The padded payload is valid JSON of about the size asked for, with the
// order's own fields first.
func TestPaddedBody(t *testing.T) {
	for _, n := range []int{0, 250, 10 << 10, 1_000_000} {
		b := newGenerator(benchOffering).withPad(n).body(7, time.Now())
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("pad %d: %v", n, err)
		}
		if v["order_state"] != "executing" || v[fieldSeq] != float64(7) {
			t.Errorf("pad %d: order fields lost: %.80s", n, b)
		}
		if n > 0 && (len(b) > n || len(b) < n-64) {
			t.Errorf("pad %d: %d bytes", n, len(b))
		}
		if _, ok := publishedAt(b); !ok {
			t.Errorf("pad %d: publish time not first", n)
		}
	}
}

// TestAlsoWarnings: the benchmark's logger writes every line at info and
// above to the main handler, and the warnings and errors to stderr too.
func TestAlsoWarnings(t *testing.T) {
	var main, warn strings.Builder
	log := slog.New(alsoWarnings{
		main: slog.NewJSONHandler(&main, &slog.HandlerOptions{Level: slog.LevelInfo}),
		warn: slog.NewTextHandler(&warn, &slog.HandlerOptions{Level: slog.LevelWarn})}).With("source", "s")
	log.Debug("dropped")
	log.Info("handled", "id", "1")
	log.Warn("lost", "id", "2")
	if got := strings.Count(main.String(), "\n"); got != 2 || !strings.Contains(main.String(), `"source":"s","id":"1"`) {
		t.Fatalf("main handler got %d lines: %s", got, main.String())
	}
	if warn.String() == "" || strings.Contains(warn.String(), "handled") || !strings.Contains(warn.String(), "source=s id=2") {
		t.Fatalf("warnings handler got: %s", warn.String())
	}
}

// TestPairedCPURatio: each of eventfn's rounds is divided by the bare
// consumer's round of the same number; rounds without a partner count for
// nothing.
func TestPairedCPURatio(t *testing.T) {
	runs := []ConsumerRun{
		{Role: RoleBare, Round: 1, CPUPerMsgUS: 50}, {Role: RoleEventfn, Round: 1, CPUPerMsgUS: 60},
		{Role: RoleEventfn, Round: 2, CPUPerMsgUS: 90}, {Role: RoleBare, Round: 2, CPUPerMsgUS: 60},
		{Role: RoleBare, Round: 3, CPUPerMsgUS: 40}, {Role: RoleEventfn, Round: 3, CPUPerMsgUS: 44},
		{Role: RoleEventfn, Round: 4, CPUPerMsgUS: 1000}, {Role: RolePeer, Round: 4, CPUPerMsgUS: 1},
	}
	got := pairedCPURatio(runs)
	if got == nil || fmt.Sprintf("%.2f %.2f %.2f", got.Median, got.Min, got.Max) != "1.20 1.10 1.50" {
		t.Errorf("pairedCPURatio = %+v, want median 1.20 over [1.10, 1.50]", got)
	}
	if pairedCPURatio(runs[6:]) != nil {
		t.Error("no pair: want nil")
	}
}
