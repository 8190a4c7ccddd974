package publish_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventfn/eventfn/internal/brokertest"
	"github.com/eventfn/eventfn/publish"
	"github.com/eventfn/eventfn/waldur"
)

func TestReadEvents(t *testing.T) {
	for _, tc := range []struct {
		name, in, typ string
		want          []string // type + " " + payload
		err           string
	}{
		{name: "envelope", in: `{"type":"order","payload":{ "a": 1 }}`, want: []string{`order {"a":1}`}},
		{name: "array", in: `[{"type":"order","payload":{"a":1}},{"type":"resource","payload":{"b":2}}]`,
			want: []string{`order {"a":1}`, `resource {"b":2}`}},
		{name: "jsonl", in: "{\"type\":\"order\",\"payload\":{\"a\":1}}\n{\"type\":\"user_role\",\"payload\":{}}\n",
			want: []string{`order {"a":1}`, `user_role {}`}},
		{name: "bare payload with --type", in: `{"order_uuid":"x"}`, typ: "order", want: []string{`order {"order_uuid":"x"}`}},
		{name: "--type overrides", in: `{"type":"order","payload":{}}`, typ: "resource", want: []string{`resource {}`}},
		{name: "empty", in: "  \n", want: nil},
		{name: "bare payload without type", in: `{"order_uuid":"x"}`, err: "no type"},
		{name: "payload not an object", in: `{"type":"order","payload":[1]}`, err: "payload must be a JSON object"},
		{name: "unknown envelope key", in: `{"type":"order","payload":{},"extra":1}`, err: "envelope"},
		{name: "malformed", in: `{"type":`, err: "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs, err := publish.ReadEvents(strings.NewReader(tc.in), tc.typ)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, ev := range evs {
				got = append(got, ev.Type+" "+string(ev.Payload))
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestWaldurMessage(t *testing.T) {
	body := []byte(`{"order_uuid":"x"}`)
	now := time.Unix(1700000000, 42)
	m := publish.WaldurMessage("vh", "/amq/queue/q", body, map[string]string{"destination": "/elsewhere", "traceparent": "00-abc"}, now)
	want := map[string]string{
		"persistent": "true", "durable": "true", "auto-delete": "false", "content-type": "application/json",
		"x-message-id":           waldur.MessageID("vh", "/amq/queue/q", body),
		"x-eventfn-published-at": "1700000000000000042",
		"traceparent":            "00-abc",
	}
	if fmt.Sprint(m.Headers) != fmt.Sprint(want) || m.Destination != "/amq/queue/q" {
		t.Fatalf("message = %+v\nwant headers %v", m, want)
	}
}

type fakePublisher struct {
	mu   sync.Mutex
	msgs []publish.Message
	at   []time.Time
}

func (f *fakePublisher) Publish(_ context.Context, m publish.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.msgs = append(f.msgs, m)
	f.at = append(f.at, time.Now())
	return nil
}

func (f *fakePublisher) Close() error { return nil }

func TestRunCountSeqAndDestinations(t *testing.T) {
	evs, err := publish.ReadEvents(strings.NewReader(`
{"type":"order","payload":{"n":"a"},"headers":{"x-message-id":"fixed","destination":"/amq/queue/from-header"}}
{"type":"user_role","payload":{"n":"b"}}`), "")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakePublisher{}
	st, err := publish.Run(context.Background(), f, publish.Plan{Events: evs, Destination: "/amq/queue/q_{type}",
		VHost: "v", Count: 5, SeqField: "seq"})
	if err != nil || st.Sent != 5 {
		t.Fatalf("Run = %+v, %v", st, err)
	}
	ids := map[string]bool{}
	for i, m := range f.msgs {
		var p map[string]any
		if err := json.Unmarshal(m.Body, &p); err != nil {
			t.Fatal(err)
		}
		wantType := []string{"order", "user_role"}[i%2]
		if p["seq"] != float64(i) || m.Destination != "/amq/queue/q_"+wantType {
			t.Errorf("message %d: %s to %s", i, m.Body, m.Destination)
		}
		ids[m.Headers["x-message-id"]] = true
	}
	if len(ids) != 5 || ids["fixed"] {
		t.Errorf("x-message-ids %v: want 5 distinct, computed (the body changed)", ids)
	}

	// Without a destination each event needs its own; with one copy each,
	// the envelope's id is kept.
	f = &fakePublisher{}
	if _, err := publish.Run(context.Background(), f, publish.Plan{Events: evs[:1]}); err != nil {
		t.Fatal(err)
	}
	if m := f.msgs[0]; m.Destination != "/amq/queue/from-header" || m.Headers["x-message-id"] != "fixed" || string(m.Body) != `{"n":"a"}` {
		t.Errorf("message = %+v", m)
	}
	if _, err := publish.Run(context.Background(), f, publish.Plan{Events: evs}); err == nil {
		t.Error("an event without destination was accepted")
	}
}

func TestRunRate(t *testing.T) {
	evs, _ := publish.ReadEvents(strings.NewReader(`{"type":"order","payload":{}}`), "")
	f := &fakePublisher{}
	start := time.Now()
	st, err := publish.Run(context.Background(), f, publish.Plan{Events: evs, Destination: "/q", Count: 21, Rate: 200})
	if err != nil || st.Sent != 21 {
		t.Fatalf("Run = %+v, %v", st, err)
	}
	// 21 messages at 200/s: the last one is due 100 ms after the first.
	if el := time.Since(start); el < 95*time.Millisecond || el > 2*time.Second {
		t.Errorf("took %s, want about 100ms", el)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := publish.Run(ctx, f, publish.Plan{Events: evs, Destination: "/q", Count: 3}); err == nil {
		t.Error("a cancelled run succeeded")
	}
}

func TestDialUnknownScheme(t *testing.T) {
	_, err := publish.Dial(context.Background(), publish.Options{URL: "amqp://x"})
	if err == nil || !strings.Contains(err.Error(), "stomp+ws") {
		t.Fatalf("error = %v, want the list of known schemes", err)
	}
}

// TestPublishToRabbitMQ publishes over STOMP on TCP and WebSocket and reads
// the messages back through the management API.
func TestPublishToRabbitMQ(t *testing.T) {
	b := brokertest.New(t)
	vhost := b.VHost(brokertest.Unique("eventfn-test-"))
	for _, url := range []string{"stomp://" + brokertest.STOMPAddr, "stomp+ws://" + brokertest.WebSTOMPAddr + "/ws"} {
		t.Run(strings.Split(url, ":")[0], func(t *testing.T) {
			queue := brokertest.Unique("q-")
			b.WaldurQueue(vhost, queue)
			p, err := publish.Dial(context.Background(), publish.Options{URL: url, VHost: vhost,
				Login: brokertest.AdminUser, Passcode: brokertest.AdminPass, ConfirmEvery: 2})
			if err != nil {
				t.Fatal(err)
			}
			evs, _ := publish.ReadEvents(strings.NewReader(`{"type":"order","payload":{"order_uuid":"u1"}}`), "")
			before := time.Now()
			st, err := publish.Run(context.Background(), p, publish.Plan{Events: evs, Destination: waldur.Destination(queue),
				VHost: vhost, Count: 3, SeqField: "seq"})
			if err != nil || st.Sent != 3 {
				t.Fatalf("Run = %+v, %v", st, err)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			msgs := b.Get(vhost, queue, 10)
			if len(msgs) != 3 {
				t.Fatalf("queue holds %d messages, want 3", len(msgs))
			}
			for i, m := range msgs {
				wantBody := fmt.Sprintf(`{"order_uuid":"u1","seq":%d}`, i)
				if m.Payload != wantBody {
					t.Errorf("body %d = %s, want %s", i, m.Payload, wantBody)
				}
				if m.Headers["x-message-id"] != waldur.MessageID(vhost, waldur.Destination(queue), []byte(wantBody)) ||
					m.Headers["durable"] != "true" || m.Headers["auto-delete"] != "false" {
					t.Errorf("headers %d = %v", i, m.Headers)
				}
				ns, err := strconv.ParseInt(fmt.Sprint(m.Headers["x-eventfn-published-at"]), 10, 64)
				if err != nil || time.Unix(0, ns).Before(before.Add(-time.Second)) {
					t.Errorf("x-eventfn-published-at = %v", m.Headers["x-eventfn-published-at"])
				}
			}
		})
	}
}
