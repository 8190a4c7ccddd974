package rules

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/eventfn/eventfn/event"
)

func TestRenderedValuesEncodeAsJSON(t *testing.T) {
	rs := mustParse(t, `
version: 1
vars:
  factors: {cpu: 2}
rules:
  - name: r
    on: x
    steps:
      - log:
          message: m
          fields:
            pairs: "{{ fromPairs([['cpu', 1], ['mem', [fromPairs([[1, 2]])]]]) }}"
            vars: "{{ vars.factors }}"
`)
	res := rs.DryRun(&event.Event{Type: "x", Payload: map[string]any{}}, nil)
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatalf("dry-run result does not encode: %v", err)
	}
	want := `"fields":{"pairs":{"cpu":1,"mem":[{"1":2}]},"vars":{"cpu":2}}`
	if !json.Valid(b) || !strings.Contains(string(b), want) {
		t.Errorf("got %s, want it to hold %s", b, want)
	}
}

func TestDryRunRecordsSkippedSteps(t *testing.T) {
	rs := mustParse(t, `
version: 1
rules:
  - name: r
    on: x
    steps:
      - id: first
        when: "false"
        log: never
      - log: "first skipped: {{ steps.first.skipped }}"
`)
	res := rs.DryRun(&event.Event{Type: "x", Payload: map[string]any{}}, Mocks{"first": {"ok": false}})
	p := res.Plans[0]
	if p.FailedAt != "" || !p.Steps[0].Skipped || p.Steps[1].Params["message"] != "first skipped: true" {
		t.Errorf("plan = %+v", p)
	}
}
