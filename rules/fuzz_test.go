package rules

import (
	"testing"

	"github.com/eventfn/eventfn/event"
)

// FuzzParse: any bytes either load or give an ErrorList; never a panic.
func FuzzParse(f *testing.F) {
	f.Add([]byte(ruleFile(2)))
	f.Add([]byte("version: 1\nrules:\n  - {name: a, on: x, steps: [{log: '{{ payload.a }}'}]}\n"))
	f.Add([]byte("version: 1\nrules: [{name: a, on: x, when: 'payload.x ==', steps: []}]"))
	f.Add([]byte("{{{"))
	f.Add([]byte("version: 1\nrules:\n  - name: r\n    on: x\n    steps:\n      - log:\n          message: m\n          fields:\n" + bomb("            ", 9)))
	f.Add([]byte("version: 1\nvars: &v {a: *v}\n"))
	f.Add([]byte("version: 1\ninclude: [../*]\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		rs, err := Parse("fuzz.yaml", src, testOptions())
		if err == nil && rs == nil {
			t.Fatal("nil ruleset without error")
		}
	})
}

// FuzzRender: templates with any expression and any payload value render or
// fail with an error; never a panic.
func FuzzRender(f *testing.F) {
	f.Add("{{ payload.a }}", `{"a": 1}`)
	f.Add("x-{{ payload.a.b }}-{{ 1/0 }}", `{"a": {"b": [1, 2]}}`)
	f.Add("{{ payload[\"a\"][5] }}", `{"a": []}`)
	f.Add("{{ vars.x + payload?.y ?? 'z' }}", `{}`)
	f.Fuzz(func(t *testing.T, tmpl, payload string) {
		v, err := parseTemplate(tmpl, Pos{})
		if err != nil {
			return
		}
		ev, err := event.DecodePayload([]byte(payload), "x", "", event.Limits{})
		if err != nil {
			return
		}
		rs := &Ruleset{Vars: map[string]any{"x": "v"}, Env: map[string]any{}}
		_, _ = v.Render(rs.Environment(ev, nil), false)
	})
}
