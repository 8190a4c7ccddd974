package rules

import (
	"strings"
	"sync"
	"testing"
)

// TestRulesForIndex checks the per-type rule lists built at load: own and
// "*" rules in file order, each rule once even when it names a type twice
// or names a type and "*", and the "*" rules for types no rule names.
func TestRulesForIndex(t *testing.T) {
	rs := mustParse(t, `
version: 1
types: [y]
rules:
  - {name: a, on: x, steps: [{log: a}]}
  - {name: all, on: "*", steps: [{log: all}]}
  - {name: both, on: [x, "*"], steps: [{log: both}]}
  - {name: twice, on: [x, x], steps: [{log: twice}]}
  - {name: b, on: [y, x], steps: [{log: b}]}
`)
	names := func(typ string) string {
		var out []string
		for _, r := range rs.RulesFor(typ) {
			out = append(out, r.Name)
		}
		return strings.Join(out, ",")
	}
	for typ, want := range map[string]string{
		"x":       "a,all,both,twice,b",
		"y":       "all,both,b",
		"unnamed": "all,both",
	} {
		if got := names(typ); got != want {
			t.Errorf("RulesFor(%q) = %s, want %s", typ, got, want)
		}
	}
}

// TestEvalConcurrent evaluates one expression from many goroutines: each
// run has a VM of its own (from the expression's pool) and sees its own
// environment (run with -race).
func TestEvalConcurrent(t *testing.T) {
	e, err := compileExpr(`payload.n * 2 + len(payload.s)`, Pos{}, false)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				n := g*1000 + i
				v, err := e.Eval(map[string]any{"payload": map[string]any{"n": n, "s": strings.Repeat("x", g)}})
				if err != nil || v != 2*n+g {
					t.Errorf("goroutine %d run %d: %v, %v", g, i, v, err)
					return
				}
			}
		})
	}
	wg.Wait()
	// A failing run must not spoil the pooled VM for the next.
	if _, err := e.Eval(map[string]any{"payload": map[string]any{}}); err == nil {
		t.Fatal("want an error for a missing key")
	}
	if v, err := e.Eval(map[string]any{"payload": map[string]any{"n": 1, "s": "ab"}}); err != nil || v != 4 {
		t.Fatalf("after an error: %v, %v", v, err)
	}
}
