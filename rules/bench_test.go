package rules

import (
	"fmt"
	"strings"
	"testing"

	"github.com/eventfn/eventfn/event"
)

// ruleFile builds a rules file with n rules for event type "order" (and n
// for "other", which an order event must not pay for).
func ruleFile(n int) string {
	var b strings.Builder
	b.WriteString("version: 1\nvars: {prefix: wd_, cluster: hpc}\nrules:\n")
	for _, typ := range []string{"order", "other"} {
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, `  - name: %s-%d
    on: %s
    when: payload.order_state == "executing" && payload.n == %d
    key: payload.order_uuid
    steps:
      - id: s
        exec: [sacctmgr, add, account, "{{ vars.prefix + payload.order_uuid }}", "cluster={{ vars.cluster }}"]
`, typ, i, typ, i)
		}
	}
	return b.String()
}

var orderEvent = &event.Event{Type: "order", Payload: map[string]any{
	"order_uuid": "3f1c0a2b9d8e4f6a8b7c6d5e4f3a2b1c", "order_state": "executing", "n": 0,
	"offering_uuid": "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d",
}}

// BenchmarkMatch measures Match (environment + every `when` of the event's
// type + the key of matching rules). Its cost grows with the rules of the
// event's type only: the "other" rules are never looked at. Its conditions
// (a == "x" && b == N) take the fast path (fastpath.go): no VM run and no
// allocation per rule (1,000 rules: ~310 µs and 6 allocations, where the
// VM took ~920 µs and 1,009).
func BenchmarkMatch(b *testing.B) {
	for _, n := range []int{1, 10, 100, 1000} {
		rs, err := Parse("bench.yaml", []byte(ruleFile(n)), testOptions())
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				env := rs.Environment(orderEvent, nil)
				plans, _ := rs.Match(orderEvent, env)
				if len(plans) != 1 {
					b.Fatal(len(plans))
				}
			}
		})
	}
}

// BenchmarkRenderStep measures rendering one exec step with two templates.
func BenchmarkRenderStep(b *testing.B) {
	rs, err := Parse("bench.yaml", []byte(ruleFile(1)), testOptions())
	if err != nil {
		b.Fatal(err)
	}
	env := rs.Environment(orderEvent, nil)
	step := rs.Rules[0].Steps[0]
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := RenderStep(step, env, false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoad500 measures load and compile of a 500-rule file.
func BenchmarkLoad500(b *testing.B) {
	src := []byte(ruleFile(250))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("bench.yaml", src, testOptions()); err != nil {
			b.Fatal(err)
		}
	}
}
