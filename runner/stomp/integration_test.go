package stomp_test

// Integration tests against the RabbitMQ on loopback (scripts/test-env.sh).
// Each test makes its own vhost, user and queues the way Waldur does and
// publishes the way Waldur does (go-stomp over TCP, admin credentials, one
// connection per message), then runs eventfn's source through a
// runner.Runner.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eventfn/eventfn/internal/brokertest"
	"github.com/eventfn/eventfn/runner"
	"github.com/eventfn/eventfn/runner/stomp"
	"github.com/eventfn/eventfn/waldur"
)

// sevenTypes are the event types the Python agent handles.
var sevenTypes = []string{waldur.TypeOrder, waldur.TypeUserRole, waldur.TypeResource, waldur.TypeOfferingUser,
	waldur.TypeServiceAccount, waldur.TypeCourseAccount, waldur.TypeImportableResources}

func payload(t *testing.T, fields map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAllTypesEndToEnd sends one event of each of the seven types over TCP
// and over WebSocket, through rules with log, exec and record steps; the
// type comes from the queue name.
func TestAllTypesEndToEnd(t *testing.T) {
	for _, tc := range []struct{ name, url string }{{"stomp", tcpURL()}, {"stomp+ws", wsURL()}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSite(t, sevenTypes...)
			logger, _ := newLogger(t)
			rec := newRecorder()
			reg := registry(logger, rec)
			out := t.TempDir()
			rs := parseRules(t, reg, `
version: 1
vars: {out: `+out+`}
defaults: {timeout: 10s, retry: {attempts: 1}}
rules:
  - name: every-type
    on: "*"
    steps:
      - log: "{{ type }} event {{ payload.n }} from {{ source }}"
      - id: touch
        exec: [sh, -c, 'echo "$1" >> "$0/$2"', "{{ vars.out }}", "{{ payload.n }}", "{{ type }}"]
      - record: "{{ type }} {{ payload.n }} {{ headers['x-message-id'] != '' }}"
`)
			m := runner.NewMetrics()
			src, err := fromSpec(s.spec(tc.url), s.deps(logger, m))
			if err != nil {
				t.Fatal(err)
			}
			rr := startRunner(t, runner.Config{Rules: rs, Actions: reg, Sources: []runner.Source{src}, Logger: logger, Metrics: m})
			rr.waitReady(t, 15*time.Second)
			if got := testutil.ToFloat64(m.Connected.WithLabelValues("broker")); got != 1 {
				t.Errorf("connected gauge = %v, want 1", got)
			}
			var want []string
			for i, typ := range sevenTypes {
				body := map[string]any{"n": i, "offering_uuid": s.offering}
				if typ == waldur.TypeImportableResources {
					// a body larger than a WebSocket frame buffer and go-stomp's 4 KiB
					body["filler"] = strings.Repeat("x", 200_000)
				}
				s.b.Publish(s.vhost, s.queues[typ], payload(t, body))
				want = append(want, fmt.Sprintf("%s %d true", typ, i))
			}
			got := rec.waitN(t, len(want), 20*time.Second)
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("actions ran for\n%v\nwant\n%v", got, want)
			}
			for i, typ := range sevenTypes {
				b, err := os.ReadFile(filepath.Join(out, typ))
				if err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(i) {
					t.Errorf("exec marker for %s: %q, %v", typ, b, err)
				}
			}
			rr.settled(t, "broker", "acked", len(sevenTypes), 10*time.Second)
			rr.stop(t)
			for typ, q := range s.queues {
				if msgs := s.b.Peek(s.vhost, q, 10); len(msgs) > 0 {
					t.Errorf("queue of %s still holds %d messages after they were handled", typ, len(msgs))
				}
			}
		})
	}
}

const failingRules = `
version: 1
defaults: {timeout: 10s, retry: {attempts: 1}}
rules:
  - name: doomed
    on: order
    steps:
      - fail: "{{ payload.n }}"
`

// TestDeadLetterByBroker: a failing plan with on_failure dead-letter and no
// dead_letter destination is NACKed with requeue:false, and RabbitMQ routes
// it by the Waldur queue's own dead-letter settings to waldur.dlq.messages.
func TestDeadLetterByBroker(t *testing.T) {
	s := newSite(t, waldur.TypeOrder)
	s.b.Queue(s.vhost, brokertest.WaldurDLQ, nil)
	logger, _ := newLogger(t)
	reg := registry(logger, newRecorder())
	spec := s.spec(wsURL())
	spec.OnFailure = "dead-letter"
	m := runner.NewMetrics()
	src, err := fromSpec(spec, s.deps(logger, m))
	if err != nil {
		t.Fatal(err)
	}
	rr := startRunner(t, runner.Config{Rules: parseRules(t, reg, failingRules), Actions: reg,
		Sources: []runner.Source{src}, Logger: logger, Metrics: m})
	rr.waitReady(t, 15*time.Second)
	id := s.b.Publish(s.vhost, s.queues[waldur.TypeOrder], payload(t, map[string]any{"n": 1}))
	rr.settled(t, "broker", "dead_lettered", 1, 15*time.Second)

	var got []brokertest.Message
	brokertest.WaitFor(t, 10*time.Second, "the message in "+brokertest.WaldurDLQ, func() bool {
		got = append(got, s.b.Get(s.vhost, brokertest.WaldurDLQ, 10)...)
		return len(got) > 0
	})
	if len(got) != 1 || got[0].Headers["x-message-id"] != id || !strings.Contains(got[0].Payload, `"n":1`) {
		t.Fatalf("dead-letter queue holds %+v; want the message %s", got, id)
	}
	deaths, _ := got[0].Headers["x-death"].([]any)
	if len(deaths) == 0 || !strings.Contains(fmt.Sprint(deaths[0]), "rejected") {
		t.Errorf("x-death = %v, want reason rejected", got[0].Headers["x-death"])
	}
	rr.stop(t)
	if msgs := s.b.Peek(s.vhost, s.queues[waldur.TypeOrder], 10); len(msgs) > 0 {
		t.Errorf("the original queue still holds %d messages", len(msgs))
	}
}

// TestDeadLetterToDestination: with dead_letter set the message is sent
// there with the failure reason in x-eventfn-error, then acknowledged.
func TestDeadLetterToDestination(t *testing.T) {
	s := newSite(t, waldur.TypeOrder)
	dlq := "eventfn.dlq"
	s.b.Queue(s.vhost, dlq, nil)
	logger, _ := newLogger(t)
	reg := registry(logger, newRecorder())
	spec := s.spec(tcpURL())
	spec.OnFailure, spec.DeadLetter = "dead-letter", "/amq/queue/"+dlq
	m := runner.NewMetrics()
	src, err := fromSpec(spec, s.deps(logger, m))
	if err != nil {
		t.Fatal(err)
	}
	rr := startRunner(t, runner.Config{Rules: parseRules(t, reg, failingRules), Actions: reg,
		Sources: []runner.Source{src}, Logger: logger, Metrics: m})
	rr.waitReady(t, 15*time.Second)
	id := s.b.Publish(s.vhost, s.queues[waldur.TypeOrder], payload(t, map[string]any{"n": 7}))
	// A message that is not JSON is dead-lettered too (rejected, not crashed).
	s.b.Publish(s.vhost, s.queues[waldur.TypeOrder], []byte("not json"))
	rr.settled(t, "broker", "dead_lettered", 2, 15*time.Second)

	var got []brokertest.Message
	brokertest.WaitFor(t, 10*time.Second, "two messages in "+dlq, func() bool {
		got = append(got, s.b.Get(s.vhost, dlq, 10)...)
		return len(got) >= 2
	})
	if got[0].Payload == "not json" {
		got[0], got[1] = got[1], got[0]
	}
	if got[0].Headers["x-message-id"] != id || !strings.Contains(fmt.Sprint(got[0].Headers["x-eventfn-error"]), "provisioning exploded") ||
		got[0].Headers["x-eventfn-original-destination"] != waldur.Destination(s.queues[waldur.TypeOrder]) {
		t.Errorf("dead letter 1 = %+v", got[0])
	}
	if got[1].Payload != "not json" || !strings.Contains(fmt.Sprint(got[1].Headers["x-eventfn-error"]), "malformed") {
		t.Errorf("dead letter 2 = %+v", got[1])
	}
	rr.stop(t)
	if msgs := s.b.Peek(s.vhost, s.queues[waldur.TypeOrder], 10); len(msgs) > 0 {
		t.Errorf("the original queue still holds %d messages", len(msgs))
	}
}

// TestBrokerClosesConnectionsMidStream: the broker closes every connection
// of the vhost while messages are in flight; the source reconnects,
// resubscribes, and every message is handled exactly once in effect.
func TestBrokerClosesConnectionsMidStream(t *testing.T) {
	for _, tc := range []struct{ name, url string }{{"stomp", tcpURL()}, {"stomp+ws", wsURL()}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSite(t, waldur.TypeResource)
			q := s.queues[waldur.TypeResource]
			logger, logs := newLogger(t)
			rec := newRecorder()
			rec.delay = 30 * time.Millisecond
			reg := registry(logger, rec)
			rs := parseRules(t, reg, `
version: 1
defaults: {timeout: 10s, retry: {attempts: 1}}
rules:
  - name: resync
    on: resource
    steps:
      - record: "{{ payload.n }}"
`)
			const first, second = 60, 40
			// Each message is about its own resource, as Waldur's are: a copy
			// redelivered after the close is then "the same delivery again"
			// for the journal (de-duplication is by entity).
			for i := range first { // a backlog: most of it is in flight when the broker closes
				s.b.Publish(s.vhost, q, payload(t, map[string]any{"n": i, "resource_uuid": fmt.Sprint("r", i)}))
			}
			m := runner.NewMetrics()
			spec := s.spec(tc.url)
			spec.Prefetch = 20
			src, err := fromSpec(spec, s.deps(logger, m))
			if err != nil {
				t.Fatal(err)
			}
			rr := startRunner(t, runner.Config{Rules: rs, Actions: reg, Sources: []runner.Source{src},
				Logger: logger, Metrics: m, Concurrency: 2})
			rec.waitN(t, 10, 20*time.Second)
			s.b.CloseConnections(s.vhost)
			for i := first; i < first+second; i++ {
				s.b.Publish(s.vhost, q, payload(t, map[string]any{"n": i, "resource_uuid": fmt.Sprint("r", i)}))
			}
			brokertest.WaitFor(t, 30*time.Second, "every message handled", func() bool {
				return len(rec.counts()) == first+second
			})
			rr.settled(t, "broker", "acked", first+second, 20*time.Second)
			rr.waitReady(t, 10*time.Second)
			if n := testutil.ToFloat64(m.Reconnects.WithLabelValues("broker")); n < 1 {
				t.Errorf("reconnects = %v, want at least 1", n)
			}
			if !strings.Contains(logs.String(), "disconnected from broker; reconnecting") {
				t.Error("no log line about the disconnection")
			}
			rr.stop(t)
			for i := range first + second {
				if c := rec.counts()[fmt.Sprint(i)]; c != 1 {
					t.Errorf("message %d handled %d times", i, c)
				}
			}
			if msgs := s.b.Peek(s.vhost, q, 10); len(msgs) > 0 {
				t.Errorf("queue still holds %d messages", len(msgs))
			}
		})
	}
}

// TestDuplicateMessageIDSkipped: Waldur may publish the same message twice;
// the second copy (same x-message-id) is acknowledged without running.
func TestDuplicateMessageIDSkipped(t *testing.T) {
	s := newSite(t, waldur.TypeOrder)
	logger, logs := newLogger(t)
	rec := newRecorder()
	reg := registry(logger, rec)
	rs := parseRules(t, reg, `
version: 1
rules:
  - name: once
    on: order
    steps:
      - record: "{{ payload.order_uuid }}"
`)
	m := runner.NewMetrics()
	src, err := fromSpec(s.spec(tcpURL()), s.deps(logger, m))
	if err != nil {
		t.Fatal(err)
	}
	rr := startRunner(t, runner.Config{Rules: rs, Actions: reg, Sources: []runner.Source{src}, Logger: logger, Metrics: m})
	rr.waitReady(t, 15*time.Second)
	body := payload(t, map[string]any{"order_uuid": "o1", "order_state": "executing"})
	id1 := s.b.Publish(s.vhost, s.queues[waldur.TypeOrder], body)
	id2 := s.b.Publish(s.vhost, s.queues[waldur.TypeOrder], body)
	if id1 != id2 {
		t.Fatalf("same payload, different ids %s %s", id1, id2)
	}
	rr.settled(t, "broker", "acked", 2, 15*time.Second)
	if c := rec.counts()["o1"]; c != 1 {
		t.Errorf("the plan ran %d times, want 1", c)
	}
	if d := testutil.ToFloat64(m.Duplicates.WithLabelValues("broker", "order")); d != 1 {
		t.Errorf("duplicates = %v, want 1", d)
	}
	// The copy is skipped (the first copy had settled) or parked until the
	// first settles (it was still in flight): either way it runs nothing.
	if l := logs.String(); !strings.Contains(l, "duplicate message skipped") && !strings.Contains(l, "in flight parked") {
		t.Error("no log line about the skipped or parked copy")
	}
	rr.stop(t)
	if msgs := s.b.Peek(s.vhost, s.queues[waldur.TypeOrder], 10); len(msgs) > 0 {
		t.Errorf("queue still holds %d messages", len(msgs))
	}
}

// TestWrongCredentials: a refused login is reported with the broker's
// reason, retried with backoff, and keeps the source not ready.
func TestWrongCredentials(t *testing.T) {
	for _, tc := range []struct{ name, url string }{{"stomp", tcpURL()}, {"stomp+ws", wsURL()}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSite(t, waldur.TypeOrder)
			s.pass = "wrong-" + s.pass
			logger, logs := newLogger(t)
			reg := registry(logger, newRecorder())
			m := runner.NewMetrics()
			src, err := fromSpec(s.spec(tc.url), s.deps(logger, m))
			if err != nil {
				t.Fatal(err)
			}
			rr := startRunner(t, runner.Config{Rules: parseRules(t, reg, failingRules), Actions: reg,
				Sources: []runner.Source{src}, Logger: logger, Metrics: m})
			brokertest.WaitFor(t, 15*time.Second, "two refused attempts", func() bool {
				return strings.Contains(logs.String(), "attempt=2")
			})
			err = src.LastError()
			var be *stomp.BrokerError
			if !errors.As(err, &be) || !be.AccessRefused() {
				t.Fatalf("last error = %v, want a refused login from the broker", err)
			}
			if !strings.Contains(logs.String(), "broker refused the connection: check login, passcode") {
				t.Error("the log does not say the login was refused")
			}
			if strings.Contains(logs.String(), s.pass) {
				t.Error("the passcode appears in the logs")
			}
			if rr.r.Ready() {
				t.Error("ready with refused credentials")
			}
			if got := testutil.ToFloat64(m.Connected.WithLabelValues("broker")); got != 0 {
				t.Errorf("connected gauge = %v, want 0", got)
			}
			t.Logf("reported: %v", err)
		})
	}
}

// TestMissingQueueIsNamedAndRetried: a subscription to a queue that does
// not exist is reported as that queue not found (not as a login problem),
// retried while the source shows as down, and consumed once the queue
// exists.
func TestMissingQueueIsNamedAndRetried(t *testing.T) {
	s := newSite(t)
	q := brokertest.Unique("eventfn-missing-")
	logger, logs := newLogger(t)
	rec := newRecorder()
	reg := registry(logger, rec)
	m := runner.NewMetrics()
	spec := s.spec(tcpURL())
	spec.Subscribe, spec.Type = []string{"/amq/queue/" + q}, "order"
	src, err := fromSpec(spec, s.deps(logger, m))
	if err != nil {
		t.Fatal(err)
	}
	rr := startRunner(t, runner.Config{Rules: parseRules(t, reg, `
version: 1
rules:
  - name: all
    on: "*"
    steps:
      - record: "{{ payload.n }}"
`), Actions: reg, Sources: []runner.Source{src}, Logger: logger, Metrics: m})
	want := fmt.Sprintf("broker refused a subscription: queue '%s' in vhost '%s' not found", q, s.vhost)
	brokertest.WaitFor(t, 15*time.Second, "two attempts refused as not found", func() bool {
		return strings.Count(logs.String(), want) >= 2
	})
	if strings.Contains(logs.String(), "check login, passcode") {
		t.Error("a missing queue is reported as a login problem")
	}
	if strings.Contains(logs.String(), "connected to broker and subscribed") {
		t.Error("a subscription refused as not found was taken as confirmed")
	}
	if err := src.LastError(); err == nil || !strings.Contains(err.Error(), "no queue '"+q+"'") {
		t.Errorf("LastError = %v, want the broker's not found", err)
	}
	if rr.r.Ready() || testutil.ToFloat64(m.Connected.WithLabelValues("broker")) != 0 {
		t.Error("ready or connected while the queue is missing")
	}
	s.b.WaldurQueue(s.vhost, q)
	rr.waitReady(t, 15*time.Second)
	s.b.Publish(s.vhost, q, payload(t, map[string]any{"n": "after"}))
	rec.waitN(t, 1, 15*time.Second)
	rr.stop(t)
}

// TestShutdownLetsInFlightPlansSettle: when the runner stops while a plan
// runs, the connection stays open until the plan is done and its message
// acknowledged; nothing is left for redelivery.
func TestShutdownLetsInFlightPlansSettle(t *testing.T) {
	s := newSite(t, waldur.TypeOrder)
	logger, _ := newLogger(t)
	rec := newRecorder()
	rec.delay = 500 * time.Millisecond
	reg := registry(logger, rec)
	rs := parseRules(t, reg, `
version: 1
rules:
  - name: slow
    on: order
    steps:
      - record: "{{ payload.n }}"
`)
	m := runner.NewMetrics()
	src, err := fromSpec(s.spec(wsURL()), s.deps(logger, m))
	if err != nil {
		t.Fatal(err)
	}
	rr := startRunner(t, runner.Config{Rules: rs, Actions: reg, Sources: []runner.Source{src}, Logger: logger, Metrics: m})
	rr.waitReady(t, 15*time.Second)
	s.b.Publish(s.vhost, s.queues[waldur.TypeOrder], payload(t, map[string]any{"n": 1}))
	select {
	case <-rec.started:
	case <-time.After(15 * time.Second):
		t.Fatal("the plan did not start")
	}
	rr.stop(t)
	if got := len(rec.counts()); got != 1 {
		t.Fatalf("%d plans completed, want 1", got)
	}
	if n := sumSettled(m, "broker", "acked"); n != 1 {
		t.Errorf("acked %v, want 1", n)
	}
	if msgs := s.b.Peek(s.vhost, s.queues[waldur.TypeOrder], 10); len(msgs) > 0 {
		t.Errorf("queue still holds %d messages: the in-flight message was not acknowledged before disconnecting", len(msgs))
	}
}

// TestHeartbeatsKeepAnIdleConnection: with heart-beats negotiated (RabbitMQ
// raises 300ms to 1s) an idle connection stays up over TCP and WebSocket:
// the broker's heart-beats arrive and satisfy the read-side checks. (That
// eventfn sends its own is checked against a fake server in
// TestHeartbeatsAreSent: RabbitMQ's STOMP plugin tolerates missing ones.)
func TestHeartbeatsKeepAnIdleConnection(t *testing.T) {
	for _, tc := range []struct{ name, url string }{{"stomp", tcpURL()}, {"stomp+ws", wsURL()}} {
		t.Run(tc.name, func(t *testing.T) {
			s, rec, stayedUp := heartbeatSite(t, tc.url, 300*time.Millisecond)
			time.Sleep(2500 * time.Millisecond) // idle: the condition under test, not synchronisation
			s.b.Publish(s.vhost, s.queues[waldur.TypeOrder], payload(t, map[string]any{"n": 1}))
			rec.waitN(t, 1, 10*time.Second)
			stayedUp()
		})
	}
}

// heartbeatSite starts a runner recording payload.n of the order events of
// a new site, read over url with heart-beats every hb, and waits until it
// is ready. stayedUp fails the test if the connection was dropped since.
func heartbeatSite(t *testing.T, url string, hb time.Duration) (s *site, rec *recorder, stayedUp func()) {
	t.Helper()
	s = newSite(t, waldur.TypeOrder)
	logger, logs := newLogger(t)
	rec = newRecorder()
	reg := registry(logger, rec)
	rs := parseRules(t, reg, "version: 1\nrules:\n  - {name: r, on: order, steps: [{record: '{{ payload.n }}'}]}\n")
	spec := s.spec(url)
	spec.Heartbeat = hb
	m := runner.NewMetrics()
	src, err := fromSpec(spec, s.deps(logger, m))
	if err != nil {
		t.Fatal(err)
	}
	rr := startRunner(t, runner.Config{Rules: rs, Actions: reg, Sources: []runner.Source{src}, Logger: logger, Metrics: m})
	rr.waitReady(t, 15*time.Second)
	return s, rec, func() {
		t.Helper()
		if strings.Contains(logs.String(), "disconnected from broker") {
			t.Error("the connection was dropped")
		}
		if n := testutil.ToFloat64(m.Reconnects.WithLabelValues("broker")); n != 0 {
			t.Errorf("%v reconnects", n)
		}
	}
}

// TestPrefetchBoundsUnacknowledged: while the runner is busy the broker
// holds the backlog; at most prefetch messages are out unacknowledged.
// RabbitMQ's management API samples queue depths (every 5 s by default), so
// the test polls it: every sample must show at most prefetch unacknowledged,
// and one must show the backlog still in the queue. A slow action (1 s per
// message, one at a time) keeps the backlog there for 20 s.
func TestPrefetchBoundsUnacknowledged(t *testing.T) {
	s := newSite(t, waldur.TypeOrder)
	q := s.queues[waldur.TypeOrder]
	logger, _ := newLogger(t)
	rec := newRecorder()
	rec.delay = time.Second
	reg := registry(logger, rec)
	rs := parseRules(t, reg, "version: 1\nrules:\n  - {name: r, on: order, steps: [{record: '{{ payload.n }}'}]}\n")
	for i := range 20 {
		s.b.Publish(s.vhost, q, payload(t, map[string]any{"n": i}))
	}
	spec := s.spec(tcpURL())
	spec.Prefetch = 3
	m := runner.NewMetrics()
	src, err := fromSpec(spec, s.deps(logger, m))
	if err != nil {
		t.Fatal(err)
	}
	startRunner(t, runner.Config{Rules: rs, Actions: reg, Sources: []runner.Source{src}, Logger: logger, Metrics: m, Concurrency: 1})
	<-rec.started
	for deadline := time.Now().Add(15 * time.Second); ; {
		ready, unacked := s.b.Depth(s.vhost, q)
		if unacked > 3 {
			t.Fatalf("ready %d, unacknowledged %d: more than prefetch (3) out", ready, unacked)
		}
		if unacked > 0 && ready >= 10 {
			return // the broker holds the backlog
		}
		if time.Now().After(deadline) {
			t.Fatalf("ready %d, unacknowledged %d: never saw the backlog held in the queue", ready, unacked)
		}
		time.Sleep(250 * time.Millisecond) // polling the broker's sampled statistics
	}
}
