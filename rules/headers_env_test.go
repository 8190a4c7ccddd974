package rules

import (
	"testing"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/event"
)

// The headers are boxed into the environment only when some expression
// reads them; wherever one does, the values are there.
func TestEnvironmentHeadersOnlyWhenRead(t *testing.T) {
	ev := &event.Event{Type: "order", ID: "m", Payload: map[string]any{"order_uuid": "u"},
		Headers: map[string]string{"x-site": "hpc"}}
	for _, c := range []struct {
		name, rule string
		reads      bool
	}{
		{"none", `when: payload.order_uuid == "u"
    steps: [{log: "{{ payload.order_uuid }}"}]`, false},
		{"when", `when: headers["x-site"] == "hpc"
    steps: [{log: hi}]`, true},
		{"key", `key: headers["x-site"]
    steps: [{log: hi}]`, true},
		{"template", `steps: [{log: "site {{ headers['x-site'] }}"}]`, true},
		{"step when", `steps: [{log: hi, when: 'headers?.["x-site"] != nil'}]`, true},
		{"for_each", `steps: [{log: "{{ item }}", for_each: "keys(headers)"}]`, true},
		{"on_failure", `steps: [{log: hi}]
    on_failure: [{log: "{{ headers }}"}]`, true},
		{"$env", `when: $env.headers["x-site"] == "hpc"
    steps: [{log: hi}]`, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := "version: 1\nrules:\n  - name: r\n    on: order\n    " + c.rule + "\n"
			rs, err := Parse("h.yaml", []byte(src), Options{Actions: actions.Builtin()})
			if err != nil {
				t.Fatal(err)
			}
			h := rs.Environment(ev, nil)["headers"].(map[string]any)
			if got := h != nil && h["x-site"] == "hpc"; got != c.reads {
				t.Errorf("headers in the environment = %v, want them: %v", h, c.reads)
			}
			if c.reads && c.name == "when" {
				if plans, failed := rs.Match(ev, rs.Environment(ev, nil)); len(plans) != 1 || len(failed) != 0 {
					t.Errorf("a rule on headers did not match: %v %v", plans, failed)
				}
			}
		})
	}
	if h := (&Ruleset{}).Environment(ev, nil)["headers"].(map[string]any); h["x-site"] != "hpc" {
		t.Errorf("a ruleset not made by Parse leaves headers out: %v", h)
	}
}

// BenchmarkEnvironment: the environment of a STOMP message (a dozen
// headers). Budget: the environment map and the steps map (and the payload
// map when there is none); reading headers adds a map and an allocation
// per header value boxed into an any.
func BenchmarkEnvironment(b *testing.B) {
	ev := &event.Event{Type: "order", ID: "m", Payload: map[string]any{"order_uuid": "u"}, Headers: map[string]string{}}
	for _, k := range []string{"destination", "message-id", "subscription", "ack", "persistent", "priority",
		"content-type", "content-length", "type", "x-message-id", "x-eventfn-published-at", "redelivered"} {
		ev.Headers[k] = "value of " + k
	}
	for _, c := range []struct{ name, when string }{
		{"headers-unread", `payload.order_uuid == "u"`},
		{"headers-read", `headers.type == "order"`},
	} {
		b.Run(c.name, func(b *testing.B) {
			src := "version: 1\nrules:\n  - name: r\n    on: order\n    when: '" + c.when + "'\n    steps: [{log: hi}]\n"
			rs, err := Parse("h.yaml", []byte(src), Options{Actions: actions.Builtin()})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				_ = rs.Environment(ev, nil)
			}
		})
	}
}
