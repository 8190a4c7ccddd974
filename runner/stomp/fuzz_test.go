package stomp

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventfn/eventfn/internal/stompframe"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/event"
	"github.com/eventfn/eventfn/rules"
	"github.com/eventfn/eventfn/runner"
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

func (s *fuzzSettler) record(f string) error {
	if s.n.Add(1) == 1 {
		s.fate <- f
	}
	return nil
}
func (s *fuzzSettler) Ack(context.Context) error                { return s.record("ack") }
func (s *fuzzSettler) Requeue(context.Context) error            { return s.record("requeue") }
func (s *fuzzSettler) DeadLetter(context.Context, string) error { return s.record("dead-letter") }
func newFuzzSettler() *fuzzSettler                              { return &fuzzSettler{fate: make(chan string, 1)} }
func (s *fuzzSettler) wait(t *testing.T, what string) (string, int32) {
	t.Helper()
	select {
	case f := <-s.fate:
		return f, s.n.Load()
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: never settled", what)
	}
	return "", 0
}

// FuzzMessageToEvent: any MESSAGE (destination, headers in any order with
// repeats, any body) becomes a runner.Message whose id and headers follow
// STOMP (the first occurrence of a header wins), whose type comes from the
// Waldur queue name or the payload, and which the runner settles exactly
// once: acked when the source's policy is ack, dead-lettered only when it
// failed and the policy says so. Never a panic.
func FuzzMessageToEvent(f *testing.F) {
	q := "/amq/queue/subscription_0123456789abcdef0123456789abcdef_offering_fedcba9876543210fedcba9876543210_"
	f.Add(q+"order", "x-message-id:5f3c0e2d\npersistent:true\ncontent-type:application/json",
		[]byte(`{"order_uuid":"abc","order_state":"executing","resource_uuid":"r1"}`), false)
	f.Add(q+"user_role", "x-message-id:a\nx-message-id:b\nsubscription:sub-0", []byte(`{"role_name":"PROJECT.MEMBER"}`), true)
	f.Add("/amq/queue/agent_queue", "x-message-id:", []byte(`{"object_type":"resource","order_state":5}`), true)
	f.Add("/amq/queue/agent_queue", "", []byte(`{"object_type":7}`), true)
	f.Add(q+"resource", "x-message-id:r\ntraceparent:00-zz", []byte(`{"resource_uuid":{"a":[1,2]},"order_state":"executing"}`), false)
	f.Add(q, "k:v:w\n:\nnovalue", []byte(`[1,2,3]`), true)
	f.Add(q+"order", "x-message-id:\xff\xfe", []byte("{\"a\":\"\xff\"}"), true)
	f.Add(q+"importable_resources", "", []byte(strings.Repeat(`{"a":`, 70)+"1"+strings.Repeat("}", 70)), true)
	f.Fuzz(func(t *testing.T, dest, rawHeaders string, body []byte, deadLetter bool) {
		c := ConnConfig{Subscriptions: []Subscription{{Destination: dest}}}
		if err := checkConn(&c); err != nil {
			return // an empty destination: refused by configuration
		}
		sub := &c.Subscriptions[0]
		var h stompframe.Header
		first := map[string]string{}
		for _, line := range strings.Split(rawHeaders, "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok {
				h = append(h, k, v)
				if _, seen := first[k]; !seen {
					first[k] = v
				}
			}
		}
		m := toMessage("fuzz", sub, h, body, deadLetter)
		if m.ID != first["x-message-id"] {
			t.Fatalf("id %q, want the first x-message-id %q", m.ID, first["x-message-id"])
		}
		for k, v := range first {
			if m.Headers[k] != v {
				t.Fatalf("header %q = %q, want the first occurrence %q", k, m.Headers[k], v)
			}
		}
		if m.Type != TypeOf(dest) || (m.Type == "" && m.TypeField != DefaultTypeField) {
			t.Fatalf("type %q / type field %q for destination %q", m.Type, m.TypeField, dest)
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
		fate, n := st.wait(t, "message")
		switch {
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
