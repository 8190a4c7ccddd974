package rules

import (
	"fmt"
	"slices"
	"strings"
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
			h, _ := rs.Environment(ev, nil)["headers"].(map[string]any)
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
	if h, _ := (&Ruleset{}).Environment(ev, nil)["headers"].(map[string]any); h["x-site"] != "hpc" {
		t.Errorf("a ruleset not made by Parse leaves headers out: %v", h)
	}
}

// The environment holds exactly the names the rules' expressions read
// (all of them for $env), and an expression gets the same value from it
// as from the full environment.
func TestEnvironmentHoldsWhatIsRead(t *testing.T) {
	ev := &event.Event{Type: "order", Source: "s", ID: "m", Payload: map[string]any{"order_uuid": "u"},
		Headers: map[string]string{"x-site": "hpc"}}
	secrets := map[string]any{"token": "t0k"}
	all := []string{"type", "source", "id", "payload", "headers", "vars", "env", "secrets", "error"}
	for _, c := range []struct {
		name, rule string
		want       []string
	}{
		{"payload only", `when: payload.order_uuid == "u"
    steps: [{log: "{{ payload.order_uuid }}"}]`, []string{"payload"}},
		{"nothing", `steps: [{log: hi}]`, nil},
		{"type and id", `when: type == "order"
    key: id
    steps: [{log: hi}]`, []string{"type", "id"}},
		{"vars in a template", `steps: [{log: "{{ vars.site }} {{ source }}"}]`, []string{"vars", "source"}},
		{"secrets and env in on_failure", `steps: [{log: hi}]
    on_failure: [{log: "{{ secrets.token }} {{ env?.HOME ?? '' }} {{ error }}"}]`, []string{"secrets", "env", "error"}},
		{"step when and for_each", `steps: [{log: "{{ item }}", when: "len(headers) > 0", for_each: "[type]"}]`, []string{"headers", "type"}},
		{"$env", `when: $env.payload.order_uuid == "u"
    steps: [{log: hi}]`, all},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := "version: 1\nvars: {site: hpc}\nsecrets: {token: {env: TOKEN}}\nrules:\n  - name: r\n    on: order\n    " + c.rule + "\n"
			rs, err := Parse("h.yaml", []byte(src), Options{Actions: actions.Builtin()})
			if err != nil {
				t.Fatal(err)
			}
			env := rs.Environment(ev, secrets)
			var got []string
			for _, k := range all {
				if _, ok := env[k]; ok {
					got = append(got, k)
				}
			}
			if strings.Join(got, ",") != strings.Join(sortedAs(all, c.want), ",") {
				t.Errorf("environment holds %v, want %v", got, c.want)
			}
			full := (&Ruleset{Vars: rs.Vars, Env: rs.Env}).Environment(ev, secrets)
			r := rs.Rules[0]
			for _, e := range []*Expr{r.When, r.Key} {
				if e == nil {
					continue
				}
				a, aerr := e.Eval(env)
				b, berr := e.Eval(full)
				if fmt.Sprint(a, aerr) != fmt.Sprint(b, berr) {
					t.Errorf("%s: %v %v against the full environment's %v %v", e.Src, a, aerr, b, berr)
				}
			}
		})
	}
}

// sortedAs returns the members of want in the order of all.
func sortedAs(all, want []string) []string {
	var out []string
	for _, k := range all {
		if slices.Contains(want, k) {
			out = append(out, k)
		}
	}
	return out
}

// BenchmarkEnvironment: the environment of a STOMP message (a dozen
// headers). Budget: the environment map alone, one group of at most eight
// names (2 allocations, 336 B) when the rules read only payload; each of
// type, source and id read adds its boxed string, and reading headers adds
// a map and an allocation per header value boxed into an any (18, ~1.2 KB).
// Before only the read names were put in, every environment had nine names,
// a map of several tables, and three boxed strings: 7 allocations.
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
