package rules

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/eventfn/eventfn/event"
	"gopkg.in/yaml.v3"
)

// loadSlurmSite loads the complete SLURM site example and one of its
// sample events.
func loadSlurmSite(b *testing.B, eventFile string) (*Ruleset, *event.Event) {
	b.Helper()
	// The example is a whole eventfn file: its sources, runner, waldur and
	// slurm sections are the config package's, which cannot be imported
	// here; the rules part is handed to ParseNode as config.Load does.
	const path = "../examples/slurm-site/eventfn.yaml"
	src, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		b.Fatal(err)
	}
	root := doc.Content[0]
	rulesRoot := &yaml.Node{Kind: yaml.MappingNode}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if slices.Contains(Keys(), root.Content[i].Value) {
			rulesRoot.Content = append(rulesRoot.Content, root.Content[i], root.Content[i+1])
		}
	}
	rs, err := ParseNode(path, rulesRoot, testOptions())
	if err != nil {
		b.Fatal(err)
	}
	f, err := os.Open("../examples/slurm-site/events/" + eventFile)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	evs, err := event.ReadAll(f, event.Limits{})
	if err != nil || len(evs) != 1 {
		b.Fatalf("%s: %v", eventFile, err)
	}
	return rs, evs[0]
}

// BenchmarkSlurmSiteOrder measures what the runner does between decoding
// an order event and handing its plans to the dispatcher, with the rules
// of examples/slurm-site (14 rules, 2 of them for orders): the
// environment, every `when` and `key` of the order rules, and the
// rendering of the first step of each matching plan (later steps read
// steps.<id> results, which only exist once earlier steps ran).
// Target (issue 6): under 5 µs.
//
// Allocation budget (13 allocations): the environment (its map and the
// headers copy; no steps map), expr VM runs only for the conditions the
// fast path does not cover (comparisons, calls: see fastpath.go; plain
// paths, ==, in-lists, &&, || and string + take none), the plans slice,
// and per rendered template its buffer and the params map.
func BenchmarkSlurmSiteOrder(b *testing.B) {
	rs, ev := loadSlurmSite(b, "order-create.json")
	b.ReportAllocs()
	for b.Loop() {
		env := rs.Environment(ev, nil)
		plans, failed := rs.Match(ev, env)
		if len(plans) != 1 || len(failed) != 0 {
			b.Fatalf("plans %d, failed %v", len(plans), failed)
		}
		for _, p := range plans {
			if _, _, err := RenderStep(p.Rule.Steps[0], env, false); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// mixedRuleFile has order rules (one matches) and rules for another type.
// With wildcard it also has one "*" rule in the middle of the file.
func mixedRuleFile(orders, others int, wildcard bool) string {
	var b strings.Builder
	b.WriteString("version: 1\nrules:\n")
	rule := func(name, on string, i int) {
		fmt.Fprintf(&b, `  - name: %s
    on: %q
    when: payload.order_state == "executing" && payload.n == %d
    key: payload.order_uuid
    steps: [{log: x}]
`, name, on, i)
	}
	for i := range orders {
		rule(fmt.Sprintf("order-%d", i), "order", i)
	}
	for i := range others {
		if wildcard && i == others/2 {
			rule("all", "*", -1)
		}
		rule(fmt.Sprintf("other-%d", i), "user_role", i)
	}
	if wildcard && others == 0 {
		rule("all", "*", -1)
	}
	return b.String()
}

// BenchmarkMatchOtherTypes shows that matching an order costs the same
// however many rules other types have: 10 order rules, 0 to 10,000 rules
// of another type, with and without a "*" rule (which every event pays
// for, once).
func BenchmarkMatchOtherTypes(b *testing.B) {
	for _, wildcard := range []bool{false, true} {
		for _, others := range []int{0, 100, 1000, 10000} {
			rs, err := Parse("bench.yaml", []byte(mixedRuleFile(10, others, wildcard)), testOptions())
			if err != nil {
				b.Fatal(err)
			}
			b.Run(fmt.Sprintf("wildcard=%v/other-rules=%d", wildcard, others), func(b *testing.B) {
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
}
