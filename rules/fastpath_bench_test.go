package rules

import "testing"

// benchEnv is the environment of an order event as the bench rules
// (bench/rules.yaml) see it.
func benchEnv(b *testing.B) map[string]any {
	b.Helper()
	rs := &Ruleset{Vars: map[string]any{"allocation_prefix": "hpc_", "cluster": "hpc"}, Env: map[string]any{}}
	return rs.Environment(orderEvent, nil)
}

// withoutFast removes the fast path of exprs: their Eval then runs the VM,
// whose cost the benchmarks compare.
func withoutFast(exprs []*Expr) {
	for _, e := range exprs {
		e.fast = nil
	}
}

// benchNotIn is the order rule's when (bench/rules.yaml).
const benchNotIn = `(payload?.order_state ?? "") not in ["done", "erred", "canceled", "rejected",
      "pending-consumer", "pending-project", "pending-start-date"]`

// BenchmarkFastPath compares an expression's Eval on the fast path and on
// the VM (vm: the fast path removed), for a rule's key, an optional field
// with a default, the whens and a concatenation of the bench rules.
// Budget (fast): no allocation (but concat's result) and a few map
// lookups' time, a quarter of the VM's or less (half, for concat);
// the VM costs a pooled VM run and strictGet's argument slice (32 B) per
// strict access, the when's boxed bool too. Measured on one shared 2-core
// machine: key 63-95 ns (VM 280-380 ns, 1 allocation), optional 80-130 ns
// (VM 260-350 ns), when 80-135 ns (VM 540-900 ns, 1 allocation); the
// order rule's not in 85-140 ns (VM 470-500 ns, 1 allocation); concat, an
// allocation field's prefix + uuid, 260-360 ns and 2 allocations, the
// string and its boxing (VM 540-740 ns, 3 allocations, 128 B).
func BenchmarkFastPath(b *testing.B) {
	env := benchEnv(b)
	for _, c := range []struct {
		name, src string
		asBool    bool
	}{
		{"key", "payload.order_uuid", false},
		{"optional", "payload?.username ?? ''", false},
		{"when", `payload?.order_state == "done"`, true},
		{"notin", benchNotIn, true},
		{"concat", "vars.allocation_prefix + payload.order_uuid", false},
		{"compare", `payload.order_state == "executing" && payload.n < 0`, true},
	} {
		for _, mode := range []string{"vm", "fast"} {
			b.Run(c.name+"/"+mode, func(b *testing.B) {
				e, err := compileExpr(c.src, Pos{}, c.asBool)
				if err != nil {
					b.Fatal(err)
				}
				if e.fast == nil {
					b.Fatal("no fast path")
				}
				if mode == "vm" {
					withoutFast([]*Expr{e})
				}
				b.ReportAllocs()
				for b.Loop() {
					if _, err := e.Eval(env); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkFastPathTemplate renders the bench rules' log message, two
// paths in text. Budget (fast): 2 allocations, the string's buffer and its
// boxing into the any returned; the VM adds its two runs and their
// argument slices (4 allocations, 160 B). Measured on one shared 2-core
// machine: 540-600 ns (VM 1.1-1.4 µs; before the buffer was sized, the VM
// path made 6 allocations, 232 B, 1.9-2.5 µs).
func BenchmarkFastPathTemplate(b *testing.B) {
	env := benchEnv(b)
	for _, mode := range []string{"vm", "fast"} {
		b.Run(mode, func(b *testing.B) {
			v, err := parseTemplate("order {{ payload.order_uuid }} is {{ payload.order_state }}", Pos{})
			if err != nil {
				b.Fatal(err)
			}
			if mode == "vm" {
				withoutFast(v.exprs(nil))
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.RenderIn(env, false, Text, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
