package rules

import (
	"strings"
	"testing"

	"github.com/eventfn/eventfn/event"
)

// TestCandidatesMatchAsMatchDoes: keys are evaluated first, conditions
// later, with the outcome Match gives: a key that fails is an error only
// when the condition holds.
func TestCandidatesMatchAsMatchDoes(t *testing.T) {
	rs, err := Parse("t.yaml", []byte(`
version: 1
rules:
  - {name: keyed, on: order, key: payload.uuid, when: payload.go, steps: [{log: x}]}
  - {name: all, on: "*", steps: [{log: x}]}
`), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		payload map[string]any
		want    string // outcome per candidate
	}{
		{map[string]any{"uuid": "u1", "go": true}, "keyed:u1 all:"},
		{map[string]any{"uuid": "u1", "go": false}, "keyed:- all:"},
		{map[string]any{"go": false}, "keyed:- all:"},
		{map[string]any{"go": true}, `keyed:error key: payload.uuid: no key "uuid" all:`},
	} {
		ev := &event.Event{Type: "order", Payload: c.payload}
		env := rs.Environment(ev, nil)
		var got []string
		for _, cand := range rs.Candidates(ev, env) {
			p, ok, err := cand.Match(ev, env)
			switch {
			case err != nil:
				got = append(got, cand.Rule.Name+":error "+err.Error())
			case !ok:
				got = append(got, cand.Rule.Name+":-")
			default:
				got = append(got, cand.Rule.Name+":"+p.Key)
			}
		}
		if g := strings.Join(got, " "); !strings.HasPrefix(g, c.want[:strings.Index(c.want, " all:")]) || !strings.HasSuffix(g, " all:") {
			t.Errorf("%v: %s, want %s", c.payload, g, c.want)
		}
	}
}
