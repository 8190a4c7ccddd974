package mqtt_test

// Integration tests against real brokers: Mosquitto on 127.0.0.1:1883
// (anonymous), RabbitMQ's MQTT plugin on 127.0.0.1:1884 and its Web-MQTT
// plugin on 127.0.0.1:15675/ws (guest/guest, vhost "/"). scripts/test-env.sh
// brings them up. The tests fail, never skip, when a broker is unreachable.
// Set EVENTFN_TEST_LOG=1 to see every log line.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"log/slog"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/internal/brokertest"
	"github.com/eventfn/eventfn/publish"
	"github.com/eventfn/eventfn/rules"
	"github.com/eventfn/eventfn/runner"
	"github.com/eventfn/eventfn/runner/mqtt"
	"github.com/eventfn/eventfn/waldur"
)

// timeout bounds every wait for a signal; reaching it fails the test.
const timeout = 30 * time.Second

type broker struct {
	name  string
	url   string // the source's URL
	pub   string // paho's URL for the plain test clients
	vhost string
	login string
	pass  string
}

func brokers() []broker {
	return []broker{
		{name: "mosquitto", url: "mqtt://127.0.0.1:1883", pub: "tcp://127.0.0.1:1883"},
		{name: "rabbitmq", url: "mqtt://127.0.0.1:1884", pub: "tcp://127.0.0.1:1884", login: "guest", pass: "guest"},
		{name: "rabbitmq-ws", url: "mqtt+ws://127.0.0.1:15675/ws", pub: "ws://127.0.0.1:15675/ws",
			vhost: "/", login: "guest", pass: "guest"},
	}
}

// reachable fails the test when the broker does not accept connections.
func reachable(t *testing.T, b broker) {
	t.Helper()
	u, err := url.Parse(b.pub)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", u.Host, 3*time.Second)
	if err != nil {
		t.Fatalf("%s is not reachable at %s: %v (run scripts/test-env.sh)", b.name, u.Host, err)
	}
	c.Close()
}

func unique(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// --- logs as signals -------------------------------------------------------

type logRec struct {
	msg   string
	attrs map[string]string
}

// recorder keeps every log record of one run and wakes waiters.
type recorder struct {
	mu     sync.Mutex
	recs   []logRec
	notify chan struct{}
}

func newRecorder() *recorder { return &recorder{notify: make(chan struct{})} }

func (r *recorder) add(rec logRec) {
	r.mu.Lock()
	r.recs = append(r.recs, rec)
	close(r.notify)
	r.notify = make(chan struct{})
	r.mu.Unlock()
}

func (r *recorder) count(pred func(logRec) bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range r.recs {
		if pred(rec) {
			n++
		}
	}
	return n
}

// waitN waits until n records match pred and returns them.
func (r *recorder) waitN(t *testing.T, what string, n int, pred func(logRec) bool) []logRec {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		var got []logRec
		for _, rec := range r.recs {
			if pred(rec) {
				got = append(got, rec)
			}
		}
		notify := r.notify
		r.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-notify:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s (%d of %d seen); log:\n%s", what, len(got), n, r.dump())
		}
	}
}

func (r *recorder) wait(t *testing.T, what string, pred func(logRec) bool) logRec {
	t.Helper()
	return r.waitN(t, what, 1, pred)[0]
}

func (r *recorder) dump() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, rec := range r.recs {
		fmt.Fprintf(&b, "  %s %v\n", rec.msg, rec.attrs)
	}
	return b.String()
}

func msgIs(msg string, kv ...string) func(logRec) bool {
	return func(r logRec) bool {
		if r.msg != msg {
			return false
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if r.attrs[kv[i]] != kv[i+1] {
				return false
			}
		}
		return true
	}
}

type recHandler struct {
	rec   *recorder
	attrs []slog.Attr
}

func (h recHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recHandler) WithGroup(string) slog.Handler            { return h }
func (h recHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return recHandler{rec: h.rec, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}
func (h recHandler) Handle(_ context.Context, r slog.Record) error {
	rec := logRec{msg: r.Message, attrs: map[string]string{"level": r.Level.String()}}
	for _, a := range h.attrs {
		rec.attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool { rec.attrs[a.Key] = a.Value.String(); return true })
	if os.Getenv("EVENTFN_TEST_LOG") != "" {
		fmt.Fprintf(os.Stderr, "%s %s %v\n", r.Level, r.Message, rec.attrs)
	}
	h.rec.add(rec)
	return nil
}

// --- plain paho clients -----------------------------------------------------

// client connects a plain paho client (the publisher, a dead-letter reader).
func client(t *testing.T, b broker, id string, clean bool, onMsg paho.MessageHandler) paho.Client {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(b.pub).SetClientID(id).SetCleanSession(clean).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(10 * time.Second).
		SetDefaultPublishHandler(onMsg)
	if b.login != "" {
		user := b.login
		if b.vhost != "" {
			user = b.vhost + ":" + user
		}
		o.SetUsername(user).SetPassword(b.pass)
	}
	c := paho.NewClient(o)
	waitToken(t, "connecting "+id, c.Connect())
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func waitToken(t *testing.T, what string, tok paho.Token) {
	t.Helper()
	if !tok.WaitTimeout(timeout) {
		t.Fatalf("%s: timed out", what)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func send(t *testing.T, c paho.Client, topic string, payload any) {
	t.Helper()
	body, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	waitToken(t, "publishing to "+topic, c.Publish(topic, 1, false, body))
}

// forget removes a persistent session from the broker: connecting with a
// clean session discards it.
func forget(t *testing.T, b broker, clientID string) {
	t.Helper()
	t.Cleanup(func() {
		o := paho.NewClientOptions().AddBroker(b.pub).SetClientID(clientID).SetCleanSession(true).
			SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
		if b.login != "" {
			o.SetUsername(b.login).SetPassword(b.pass)
		}
		c := paho.NewClient(o)
		if tok := c.Connect(); tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
			c.Disconnect(100)
		}
	})
}

// --- sources and runners ----------------------------------------------------

// world is one test's broker, topics and session.
type world struct {
	b        broker
	sub, off string // Waldur subscription and offering UUIDs (unique per test)
	clientID string
	dir      string
}

func newWorld(t *testing.T, b broker) *world {
	t.Helper()
	reachable(t, b)
	w := &world{b: b, sub: unique(16), off: unique(16), clientID: "eventfn-test-" + unique(8), dir: t.TempDir()}
	forget(t, b, w.clientID)
	return w
}

func (w *world) topic(typ string) string { return waldur.MQTTTopic(w.sub, w.off, typ) }
func (w *world) filter() string          { return "subscription/" + w.sub + "/offering/+/+" }

// config is the source's configuration for this world.
func (w *world) config(mod func(*mqtt.Config)) mqtt.Config {
	c := mqtt.Config{Name: "mq", URL: w.b.url, VHost: w.b.vhost, Login: w.b.login, Passcode: w.b.pass,
		Subscribe: []string{w.filter()}, ClientID: w.clientID, MinBackoff: 50 * time.Millisecond,
		MaxBackoff: time.Second, DrainTimeout: 10 * time.Second}
	if mod != nil {
		mod(&c)
	}
	return c
}

// run is one runner with one MQTT source, running until stop.
type run struct {
	rec  *recorder
	src  *mqtt.Source
	r    *runner.Runner
	stop func() error
}

// start runs rulesYAML over src until the returned run's stop; it returns
// once the source is connected and subscribed.
func start(t *testing.T, cfg mqtt.Config, rulesYAML string, journal runner.Journal, shutdown time.Duration) *run {
	t.Helper()
	rec := newRecorder()
	logger := slog.New(recHandler{rec: rec})
	cfg.Logger = logger
	src, err := mqtt.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return startSource(t, rec, src, rulesYAML, journal, shutdown)
}

func startSource(t *testing.T, rec *recorder, src *mqtt.Source, rulesYAML string, journal runner.Journal, shutdown time.Duration) *run {
	t.Helper()
	rs, err := rules.Parse(filepath.Join(t.TempDir(), "eventfn.yaml"), []byte(rulesYAML), rules.Options{Actions: actions.Builtin()})
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(recHandler{rec: rec})
	if journal == nil {
		journal = runner.NewMemoryJournal(0, 0)
	}
	r := runner.New(runner.Config{Rules: rs, Actions: actions.Standard(actions.Options{Logger: logger}),
		Sources: []runner.Source{src}, Logger: logger, Journal: journal, ShutdownTimeout: shutdown})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(2 * timeout):
			t.Fatal("runner did not stop")
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	select {
	case <-rec.notifyWhen(msgIs("mqtt connected and subscribed")):
	case err := <-done:
		t.Fatalf("runner ended before the source connected: %v\n%s", err, rec.dump())
	case <-time.After(timeout):
		t.Fatalf("source never connected; log:\n%s", rec.dump())
	}
	if !src.Ready() || !r.Ready() {
		t.Error("connected but not ready")
	}
	return &run{rec: rec, src: src, r: r, stop: stop}
}

// notifyWhen returns a channel closed once a record matches pred.
func (r *recorder) notifyWhen(pred func(logRec) bool) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		for {
			r.mu.Lock()
			for _, rec := range r.recs {
				if pred(rec) {
					r.mu.Unlock()
					close(ch)
					return
				}
			}
			notify := r.notify
			r.mu.Unlock()
			select {
			case <-notify:
			case <-time.After(timeout):
				return
			}
		}
	}()
	return ch
}

// seenRules logs "event seen" with the payload's tag for every Waldur type.
const seenRules = `
version: 1
rules:
  - name: seen
    on: [order, user_role, resource, offering_user, service_account, course_account, importable_resources, resource_periodic_limits]
    steps:
      - log: {message: "event seen", fields: {tag: "{{ payload.tag }}"}}
`

// waldurEvents are Waldur-shaped payloads of every type, tagged.
func waldurEvents(off, tag string) map[string]map[string]any {
	return map[string]map[string]any{
		waldur.TypeOrder:        {"offering_uuid": off, "order_uuid": unique(16), "order_state": "executing", "tag": tag + "-order"},
		waldur.TypeUserRole:     {"offering_uuid": off, "user_uuid": unique(16), "user_username": "alice", "project_uuid": unique(16), "project_name": "P", "role_name": "PROJECT.MEMBER", "granted": true, "tag": tag + "-user_role"},
		waldur.TypeResource:     {"offering_uuid": off, "resource_uuid": unique(16), "resource_backend_id": "alloc1", "downscaled": false, "restrict_member_access": false, "paused": true, "tag": tag + "-resource"},
		waldur.TypeOfferingUser: {"offering_uuid": off, "offering_user_uuid": unique(16), "user_uuid": unique(16), "username": "alice", "action": "create", "state": "Requested", "tag": tag + "-offering_user"},
		waldur.TypeServiceAccount: {"offering_uuid": off, "account_uuid": unique(16), "account_username": "svc", "scope_type": "project",
			"project_uuid": unique(16), "project_name": "P", "action": "create", "tag": tag + "-service_account"},
		waldur.TypeCourseAccount: {"offering_uuid": off, "account_uuid": unique(16), "account_username": "student", "scope_type": "project",
			"project_uuid": unique(16), "project_name": "P", "action": "delete", "tag": tag + "-course_account"},
		waldur.TypeImportableResources:    {"offering_uuid": off, "backend_resource_request_uuid": unique(16), "tag": tag + "-importable_resources"},
		waldur.TypeResourcePeriodicLimits: {"offering_uuid": off, "resource_uuid": unique(16), "policy_uuid": "6f9a0d2e-1c3b-4a5d-8e7f-0a1b2c3d4e5f", "backend_id": "alloc1", "action": "apply_periodic_settings", "settings": map[string]any{"fairshare": 100}, "tag": tag + "-resource_periodic_limits"},
	}
}

// --- tests -----------------------------------------------------------------

// Events of every Waldur type flow from the broker through the runner to
// actions, with the type taken from the topic; the source is built from a
// rules file's sources: section.
func TestEventsFlowToActions(t *testing.T) {
	for _, b := range brokers() {
		t.Run(b.name, func(t *testing.T) {
			w := newWorld(t, b)
			pass := filepath.Join(w.dir, "passcode")
			if err := os.WriteFile(pass, []byte(b.pass+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			var auth string
			if b.login != "" {
				auth = fmt.Sprintf("\n    vhost: %q\n    login: %s\n    passcode_file: passcode", b.vhost, b.login)
			}
			yaml := fmt.Sprintf(`
sources:
  - name: mq
    url: %s%s
    client_id: %s
    subscribe: [%q]
`, b.url, auth, w.clientID, w.filter()) + seenRules
			rs, err := rules.Parse(filepath.Join(w.dir, "eventfn.yaml"), []byte(yaml), rules.Options{Actions: actions.Builtin()})
			if err != nil {
				t.Fatal(err)
			}
			rec := newRecorder()
			src, err := mqtt.FromSpec(rs.Sources[0], mqtt.Deps{Logger: slog.New(recHandler{rec: rec}), Dir: w.dir})
			if err != nil {
				t.Fatal(err)
			}
			run := startSource(t, rec, src, yaml, nil, 5*time.Second)

			pub := client(t, b, "eventfn-pub-"+unique(6), true, nil)
			tag := unique(4)
			events := waldurEvents(w.off, tag)
			for typ, payload := range events {
				send(t, pub, w.topic(typ), payload)
			}
			for typ := range events {
				seen := run.rec.wait(t, "event "+typ, msgIs("event seen", "tag", tag+"-"+typ))
				if seen.attrs["type"] != typ {
					t.Errorf("%s handled as type %q", typ, seen.attrs["type"])
				}
			}
			handled := run.rec.waitN(t, "every message acked", len(events), msgIs("message handled", "fate", "acked"))
			for _, h := range handled {
				if len(h.attrs["id"]) != 32 {
					t.Errorf("message id %q: want Waldur's 32 hex digits", h.attrs["id"])
				}
			}
			if err := run.stop(); err != nil {
				t.Fatal(err)
			}
			if run.src.Ready() {
				t.Error("ready after stop")
			}
		})
	}
}

// Messages published while the source is stopped are delivered when it
// starts again (persistent session), and what was acknowledged is not
// delivered again.
func TestPersistentSession(t *testing.T) {
	for _, b := range brokers() {
		t.Run(b.name, func(t *testing.T) {
			w := newWorld(t, b)
			cfg := w.config(nil)
			first := start(t, cfg, seenRules, nil, 5*time.Second)
			pub := client(t, b, "eventfn-pub-"+unique(6), true, nil)
			send(t, pub, w.topic("order"), map[string]any{"tag": "before"})
			first.rec.wait(t, "the first event", msgIs("event seen", "tag", "before"))
			first.rec.wait(t, "its ack", msgIs("message handled", "fate", "acked"))
			if err := first.stop(); err != nil {
				t.Fatal(err)
			}

			const n = 20
			for i := range n {
				send(t, pub, w.topic("resource"), map[string]any{"tag": fmt.Sprintf("offline-%d", i)})
			}
			second := start(t, cfg, seenRules, nil, 5*time.Second)
			for i := range n {
				second.rec.wait(t, "offline event", msgIs("event seen", "tag", fmt.Sprintf("offline-%d", i)))
			}
			second.rec.waitN(t, "acks", n, msgIs("message handled", "fate", "acked"))
			if c := second.rec.count(msgIs("event seen", "tag", "before")); c != 0 {
				t.Errorf("the acked first event came again %d times", c)
			}
			if err := second.stop(); err != nil {
				t.Fatal(err)
			}

			// Nothing acknowledged comes back: the broker sends what it still
			// holds before anything new, so once the sentinel is seen, nothing
			// else can come.
			third := start(t, cfg, seenRules, nil, 5*time.Second)
			send(t, pub, w.topic("order"), map[string]any{"tag": "sentinel"})
			third.rec.wait(t, "the sentinel", msgIs("event seen", "tag", "sentinel"))
			if c := third.rec.count(msgIs("event seen")); c != 1 {
				t.Errorf("%d events after restart, want only the sentinel:\n%s", c, third.rec.dump())
			}
		})
	}
}

// A message whose plan fails goes to the dead-letter topic and is
// acknowledged.
func TestDeadLetter(t *testing.T) {
	for _, b := range brokers() {
		t.Run(b.name, func(t *testing.T) {
			w := newWorld(t, b)
			dlq := "eventfn-test/" + unique(8) + "/dead"
			got := make(chan paho.Message, 4)
			reader := client(t, b, "eventfn-dlq-"+unique(6), true, func(_ paho.Client, m paho.Message) { got <- m })
			waitToken(t, "subscribing to the dead-letter topic", reader.Subscribe(dlq, 1, nil))

			cfg := w.config(func(c *mqtt.Config) { c.DeadLetterOnFailure, c.DeadLetter = true, dlq })
			rulesYAML := `
version: 1
rules:
  - name: fails
    on: order
    when: payload.tag == "bad"
    steps:
      - exec: [sh, -c, "exit 3"]
        retry: {attempts: 1}
  - name: ok
    on: order
    when: payload.tag != "bad"
    steps:
      - log: {message: "event seen", fields: {tag: "{{ payload.tag }}"}}
`
			run := start(t, cfg, rulesYAML, nil, 5*time.Second)
			pub := client(t, b, "eventfn-pub-"+unique(6), true, nil)
			send(t, pub, w.topic("order"), map[string]any{"tag": "bad"})
			select {
			case m := <-got:
				var p map[string]any
				if err := json.Unmarshal(m.Payload(), &p); err != nil || p["tag"] != "bad" {
					t.Errorf("dead-letter payload %s (%v)", m.Payload(), err)
				}
			case <-time.After(timeout):
				t.Fatalf("nothing on the dead-letter topic; log:\n%s", run.rec.dump())
			}
			run.rec.wait(t, "the dead-letter fate", msgIs("message failed", "fate", "dead_lettered"))
			if err := run.stop(); err != nil {
				t.Fatal(err)
			}

			again := start(t, cfg, rulesYAML, nil, 5*time.Second)
			send(t, pub, w.topic("order"), map[string]any{"tag": "sentinel"})
			again.rec.wait(t, "the sentinel", msgIs("event seen", "tag", "sentinel"))
			if c := again.rec.count(msgIs("message failed")); c != 0 {
				t.Errorf("the dead-lettered message came back:\n%s", again.rec.dump())
			}
		})
	}
}

// mkfifo makes a named pipe; a step `cat` on it blocks until the test
// writes to it.
func mkfifo(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "gate")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// release releases a step blocked reading the fifo.
func release(t *testing.T, fifo string) {
	t.Helper()
	f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("go\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// gatedRules log "started", then wait on a fifo (or pass when the mark
// file exists), then log "finished".
func gatedRules(fifo, mark string) string {
	return fmt.Sprintf(`
version: 1
rules:
  - name: gated
    on: order
    steps:
      - id: started
        log: {message: "started", fields: {tag: "{{ payload.tag }}"}}
      - id: gate
        exec: [sh, -c, 'test -e %s || cat %s']
        timeout: 5m
      - log: {message: "finished", fields: {tag: "{{ payload.tag }}"}}
`, mark, fifo)
}

// A message whose plan is cut off by the runner's shutdown stays
// unacknowledged; the broker delivers it again when the source reconnects,
// and the plan resumes after its completed step.
func TestUnackedRedeliveredAfterRestart(t *testing.T) {
	for _, b := range brokers() {
		t.Run(b.name, func(t *testing.T) {
			w := newWorld(t, b)
			fifo, mark := mkfifo(t, w.dir), filepath.Join(w.dir, "mark")
			journal := runner.NewMemoryJournal(0, 0) // as a state_dir journal would survive a restart
			cfg := w.config(func(c *mqtt.Config) { c.DrainTimeout = 200 * time.Millisecond })
			first := start(t, cfg, gatedRules(fifo, mark), journal, 200*time.Millisecond)
			pub := client(t, b, "eventfn-pub-"+unique(6), true, nil)
			send(t, pub, w.topic("order"), map[string]any{"tag": "cut"})
			first.rec.wait(t, "the plan to start", msgIs("started", "tag", "cut"))
			if err := first.stop(); err != nil { // shutdown timeout: the plan is cancelled mid-step
				t.Fatal(err)
			}
			first.rec.wait(t, "the message left for redelivery", msgIs("message left for redelivery", "fate", "requeued"))
			if first.rec.count(msgIs("finished")) != 0 {
				t.Fatal("the plan finished although cut off")
			}

			if err := os.WriteFile(mark, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			second := start(t, cfg, gatedRules(fifo, mark), journal, 5*time.Second)
			second.rec.wait(t, "the redelivered plan to finish", msgIs("finished", "tag", "cut"))
			second.rec.wait(t, "the resumption", msgIs("plan resumed after its completed steps"))
			second.rec.wait(t, "its ack", msgIs("message handled", "fate", "acked"))
			if c := second.rec.count(msgIs("started")); c != 0 {
				t.Errorf("the completed step ran again %d times", c)
			}
		})
	}
}

// takeover connects another client with the source's client id, which
// makes the broker drop the source's connection; it waits until the
// session's unacknowledged message reaches it, leaves it unacknowledged and
// disconnects, so the broker sends it again to the source once it is back.
func takeover(t *testing.T, w *world) {
	t.Helper()
	got := make(chan struct{}, 16)
	o := paho.NewClientOptions().AddBroker(w.b.pub).SetClientID(w.clientID).SetCleanSession(false).
		SetProtocolVersion(4).SetAutoReconnect(false).SetAutoAckDisabled(true).
		SetDefaultPublishHandler(func(paho.Client, paho.Message) { got <- struct{}{} })
	if w.b.login != "" {
		user := w.b.login
		if w.b.vhost != "" {
			user = w.b.vhost + ":" + user
		}
		o.SetUsername(user).SetPassword(w.b.pass)
	}
	c := paho.NewClient(o)
	waitToken(t, "taking the session over", c.Connect())
	select {
	case <-got:
	case <-time.After(timeout):
		t.Fatal("the unacknowledged message never reached the taking-over client")
	}
	c.Disconnect(0)
}

// A connection lost while a plan runs: the broker sends the message again
// (DUP) on the new connection; the source does not run it twice, and
// acknowledges the new copy when the plan ends (the first copy's
// connection is gone).
func TestRedeliveryWhileHandled(t *testing.T) {
	for _, b := range brokers() {
		t.Run(b.name, func(t *testing.T) {
			w := newWorld(t, b)
			fifo := mkfifo(t, w.dir)
			cfg := w.config(func(c *mqtt.Config) { c.MinBackoff = 300 * time.Millisecond })
			run := start(t, cfg, gatedRules(fifo, filepath.Join(w.dir, "never")), nil, 5*time.Second)
			pub := client(t, b, "eventfn-pub-"+unique(6), true, nil)
			send(t, pub, w.topic("order"), map[string]any{"tag": "long"})
			run.rec.wait(t, "the plan to start", msgIs("started", "tag", "long"))

			takeover(t, w)
			run.rec.wait(t, "the loss", msgIs("mqtt connection lost; reconnecting"))
			run.rec.waitN(t, "the reconnection", 2, msgIs("mqtt connected and subscribed"))
			run.rec.wait(t, "the redelivery", msgIs("mqtt redelivery of a message still being handled: it will be acknowledged with it"))
			release(t, fifo)
			run.rec.wait(t, "the plan to finish", msgIs("finished", "tag", "long"))
			run.rec.wait(t, "the ack", msgIs("message handled", "fate", "acked"))
			if c := run.rec.count(msgIs("started")); c != 1 {
				t.Errorf("the plan started %d times", c)
			}
			if err := run.stop(); err != nil {
				t.Fatal(err)
			}

			again := start(t, cfg, seenRules, nil, 5*time.Second)
			send(t, pub, w.topic("order"), map[string]any{"tag": "sentinel"})
			again.rec.wait(t, "the sentinel", msgIs("event seen", "tag", "sentinel"))
			if c := again.rec.count(msgIs("event seen")); c != 1 {
				t.Errorf("%d events after restart, want only the sentinel:\n%s", c, again.rec.dump())
			}
		})
	}
}

// Wrong credentials end the source at start with a clear error.
func TestLoginRefused(t *testing.T) {
	for _, b := range brokers()[1:] { // Mosquitto here is anonymous
		t.Run(b.name, func(t *testing.T) {
			reachable(t, b)
			cfg := mqtt.Config{Name: "mq", URL: b.url, VHost: b.vhost, Login: "guest", Passcode: "wrong-" + unique(4),
				Subscribe: []string{"x/#"}, ClientID: "eventfn-test-" + unique(8)}
			rec := newRecorder()
			cfg.Logger = slog.New(recHandler{rec: rec})
			src, err := mqtt.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			err = src.Run(ctx, func(context.Context, *runner.Message) error { return nil })
			if !errors.Is(err, mqtt.ErrLoginRefused) {
				t.Fatalf("err = %v, want ErrLoginRefused", err)
			}
			if strings.Contains(err.Error(), cfg.Passcode) || strings.Contains(rec.dump(), cfg.Passcode) {
				t.Error("the passcode shows in the error or the log")
			}
			rec.wait(t, "the error log", msgIs("mqtt login refused; check login, vhost and passcode", "level", "ERROR"))
		})
	}
}

// The publish package (eventfn publish) sends Waldur-shaped events over
// MQTT to Waldur's topics; the source takes each type from its topic, and
// the message id it derives is the x-message-id the publisher computed.
func TestPublishPackage(t *testing.T) {
	for _, b := range brokers() {
		t.Run(b.name, func(t *testing.T) {
			w := newWorld(t, b)
			vhost := b.vhost
			run := start(t, w.config(nil), seenRules, nil, 5*time.Second)

			tag := unique(4)
			var evs []publish.Event
			for typ, payload := range waldurEvents(w.off, tag) {
				body, err := json.Marshal(payload)
				if err != nil {
					t.Fatal(err)
				}
				evs = append(evs, publish.Event{Type: typ, Payload: body})
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			p, err := publish.Dial(ctx, publish.Options{URL: b.url, VHost: vhost, Login: b.login, Passcode: b.pass, ConfirmEvery: 3})
			if err != nil {
				t.Fatal(err)
			}
			dest := "subscription/" + w.sub + "/offering/" + w.off + "/{type}"
			st, err := publish.Run(ctx, p, publish.Plan{Events: evs, Destination: dest, VHost: vhost})
			if cerr := p.Close(); err == nil {
				err = cerr
			}
			if err != nil || st.Sent != len(evs) {
				t.Fatalf("published %d of %d: %v", st.Sent, len(evs), err)
			}
			for _, ev := range evs {
				run.rec.wait(t, "event "+ev.Type, msgIs("event seen", "tag", tag+"-"+ev.Type, "type", ev.Type))
				want := publish.WaldurMessage(vhost, w.topic(ev.Type), ev.Payload, nil, time.Now()).Headers[publish.HeaderMessageID]
				run.rec.wait(t, "its ack under the publisher's x-message-id", msgIs("message handled", "id", want, "fate", "acked"))
			}
		})
	}
}

// Waldur's RabbitMQ layout: a vhost of its own, a user named after the
// subscription logging in as "vhost:user" (the source adds the vhost), the
// topic subscription/{sub}/offering/{off}/{type}. The broker then closes
// the connections (rabbitmqctl close_all_connections): the source reports
// itself not ready, reconnects, and nothing published meanwhile is lost.
func TestRabbitMQWaldurLoginAndConnectionsClosed(t *testing.T) {
	for _, b := range brokers()[1:] {
		t.Run(b.name, func(t *testing.T) {
			reachable(t, b)
			br := brokertest.New(t)
			vh := br.VHost(brokertest.Unique("eventfn-mqtt-"))
			w := &world{sub: unique(16), off: unique(16), clientID: "eventfn-test-" + unique(8), dir: t.TempDir()}
			token := unique(20)
			br.User(vh, w.sub, token) // deleted, with the vhost and the session, when the test ends
			w.b = broker{name: b.name, url: b.url, pub: b.pub, vhost: vh, login: w.sub, pass: token}
			cfg := w.config(func(c *mqtt.Config) { c.MinBackoff = time.Second })
			run := start(t, cfg, seenRules, nil, 5*time.Second)

			pub := client(t, w.b, "eventfn-pub-"+unique(6), true, nil)
			send(t, pub, w.topic("order"), map[string]any{"tag": "before"})
			run.rec.wait(t, "the first event", msgIs("event seen", "tag", "before", "type", "order"))

			br.CloseConnections(vh)
			run.rec.wait(t, "the loss", msgIs("mqtt connection lost; reconnecting"))
			if run.src.Ready() || run.r.Ready() {
				t.Error("ready while the connection is down")
			}
			pub = client(t, w.b, "eventfn-pub-"+unique(6), true, nil) // the publisher was closed too
			const n = 5
			for i := range n {
				send(t, pub, w.topic("user_role"), map[string]any{"tag": fmt.Sprintf("during-%d", i)})
			}
			run.rec.waitN(t, "the reconnection", 2, msgIs("mqtt connected and subscribed"))
			for i := range n {
				run.rec.wait(t, "an event published while down", msgIs("event seen", "tag", fmt.Sprintf("during-%d", i), "type", "user_role"))
			}
			if !run.src.Ready() {
				t.Error("not ready after reconnecting")
			}
		})
	}
}
