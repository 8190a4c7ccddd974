package mqtt

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/event"
	"github.com/eventfn/eventfn/rules"
	"github.com/eventfn/eventfn/runner"
	"github.com/eventfn/eventfn/waldur"
)

// fuzzRules read the payload strictly (a missing order_state fails the
// rule), key on an optional field and render everything the event carries.
const fuzzRules = `
version: 1
rules:
  - name: strict
    on: "*"
    when: payload.order_state == "executing"
    key: 'payload?.resource_uuid ?? ""'
    steps:
      - log: "{{ type }} {{ id }} {{ payload }} {{ headers }}"
  - name: lenient
    on: [order, resource]
    when: 'payload?.order_uuid != nil'
    steps:
      - log: {message: "{{ payload.order_uuid }}", fields: {h: "{{ headers }}"}}
`

var fuzzRunner = sync.OnceValue(func() *runner.Runner {
	rs, err := rules.Parse("fuzz.yaml", []byte(fuzzRules), rules.Options{Actions: actions.Builtin()})
	if err != nil {
		panic(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	return runner.New(runner.Config{Rules: rs, Actions: actions.Standard(actions.Options{Logger: logger}),
		Logger: logger, Limits: event.Limits{MaxBytes: 1 << 16}})
})

// fuzzSettler counts settlements.
type fuzzSettler struct {
	n    atomic.Int32
	fate chan string
}

func newFuzzSettler() *fuzzSettler { return &fuzzSettler{fate: make(chan string, 1)} }

func (s *fuzzSettler) record(f string) error {
	if s.n.Add(1) == 1 {
		s.fate <- f
	}
	return nil
}
func (s *fuzzSettler) Ack(context.Context) error                { return s.record("ack") }
func (s *fuzzSettler) Requeue(context.Context) error            { return s.record("requeue") }
func (s *fuzzSettler) DeadLetter(context.Context, string) error { return s.record("dead-letter") }

// FuzzMessageToEvent: any publish (topic, payload, DUP flag) on a source
// configured any way (fixed type, type field, any topic segment, hashed or
// no ids) becomes a runner.Message carrying its topic, an id that is
// Waldur's hash of vhost, topic and payload (or none), and a type taken
// from one of the topic's segments; the runner settles it exactly once.
// Never a panic.
func FuzzMessageToEvent(f *testing.F) {
	topic := "subscription/0123456789abcdef0123456789abcdef/offering/fedcba9876543210fedcba9876543210/"
	f.Add(topic+"order", []byte(`{"order_uuid":"abc","order_state":"executing","resource_uuid":"r1"}`), false, int8(0), uint8(0))
	f.Add(topic+"user_role", []byte(`{"role_name":"PROJECT.MEMBER"}`), true, int8(-1), uint8(1))
	f.Add("agent/queue", []byte(`{"object_type":"resource","order_state":5}`), false, int8(0), uint8(2))
	f.Add("a//b/", []byte(`{"object_type":7}`), true, int8(3), uint8(2))
	f.Add("/", []byte(`[1,2,3]`), false, int8(-7), uint8(5))
	f.Add("x", []byte("{\"a\":\"\xff\"}"), true, int8(1), uint8(4))
	f.Add(topic+"resource", []byte(strings.Repeat(`[`, 70)+strings.Repeat("]", 70)), false, int8(-127), uint8(7))
	f.Fuzz(func(t *testing.T, topic string, body []byte, dup bool, segment int8, mode uint8) {
		cfg := Config{Name: "fuzz", URL: "mqtt://127.0.0.1:1", Subscribe: []string{"#"}, ClientID: "fuzz",
			VHost: "v", TypeSegment: int(segment)}
		switch mode % 3 {
		case 1:
			cfg.Type = "order"
		case 2:
			cfg.TypeField = "object_type"
		}
		if mode&4 != 0 {
			cfg.MessageID = MessageIDNone
		}
		deadLetter := mode&8 != 0
		if deadLetter {
			cfg.DeadLetterOnFailure, cfg.DeadLetter = true, "eventfn/dead"
		}
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		key := waldur.MessageID(s.vhost, topic, body)
		m := s.message(topic, body, key, dup)
		if m.Headers["mqtt-topic"] != topic || m.Destination != topic {
			t.Fatalf("topic %q: headers %v, destination %q", topic, m.Headers, m.Destination)
		}
		if (m.Headers["mqtt-dup"] == "true") != dup {
			t.Fatalf("dup %v: headers %v", dup, m.Headers)
		}
		wantID := key
		if cfg.MessageID == MessageIDNone {
			wantID = ""
		}
		if m.ID != wantID || m.Headers["x-message-id"] != wantID {
			t.Fatalf("id %q (header %q), want %q", m.ID, m.Headers["x-message-id"], wantID)
		}
		if cfg.Type == "" && cfg.TypeField == "" && m.Type != "" &&
			!strings.Contains("/"+topic+"/", "/"+m.Type+"/") {
			t.Fatalf("type %q is not a segment of topic %q", m.Type, topic)
		}
		ev, derr := event.DecodePayload(body, m.Type, m.TypeField, event.Limits{MaxBytes: 1 << 16})
		if derr != nil && event.Reason(derr) == "other" {
			t.Fatalf("decode error without a reason: %v", derr)
		}
		if derr == nil && ev.Type == "" {
			t.Fatal("decoded event without a type")
		}

		st := newFuzzSettler()
		m.Settler = st
		if err := fuzzRunner().Deliver(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		var fate string
		select {
		case fate = <-st.fate:
		case <-time.After(10 * time.Second):
			t.Fatal("never settled")
		}
		switch n := st.n.Load(); {
		case n != 1:
			t.Fatalf("settled %d times", n)
		case !deadLetter && fate != "ack":
			t.Fatalf("fate %q with on_failure: ack", fate)
		case derr != nil && deadLetter && fate != "dead-letter":
			t.Fatalf("undecodable body (%v): fate %q, want dead-letter", derr, fate)
		case fate == "requeue":
			t.Fatal("requeued while the runner is running")
		}
	})
}
