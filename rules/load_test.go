package rules

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/eventfn/eventfn/event"
)

func TestLoadReportsEveryErrorWithPosition(t *testing.T) {
	_, err := Load("testdata/broken.yaml", testOptions())
	var el ErrorList
	if !errors.As(err, &el) {
		t.Fatalf("want ErrorList, got %v", err)
	}
	want := []string{
		`testdata/broken.yaml:6:24: unknown key "backof" in retry (did you mean "backoff"?)`,
		`testdata/broken.yaml:10:11: rule "one": expression "payload.order_state ==": unexpected token EOF`,
		`testdata/broken.yaml:14:9: rule "one": duplicate step id "a"`,
		`testdata/broken.yaml:15:22: rule "one": steps.later refers to no earlier step`,
		`testdata/broken.yaml:17:9: rule "one": unknown key "frobnicate" in step`,
		`testdata/broken.yaml:18:5: rule "one": duplicate rule name (first defined at testdata/broken.yaml:8:5)`,
		`testdata/broken.yaml:21:14: rule "one": expression "vars.cluster +": unexpected token EOF`,
		`testdata/broken.yaml:22:9: rule "one": step has two actions, log and exec`,
		`testdata/broken.yaml:23:5: rule without a name`,
		`testdata/broken.yaml:24:12: steps is empty`,
		`testdata/broken.yaml:25:5: unknown key "colour"`,
		`testdata/broken.yaml:29:36: rule "webhook-keys": unknown key "bogus" for webhook`,
		`testdata/broken.yaml:30:13: rule "webhook-keys": step id "bad-id"`,
	}
	got := err.Error()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("missing error %q", w)
		}
	}
	if len(el) != len(want) {
		t.Errorf("got %d errors, want %d:\n%s", len(el), len(want), got)
	}
}

func mustParse(t *testing.T, src string) *Ruleset {
	t.Helper()
	rs, err := Parse("test.yaml", []byte(src), testOptions())
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return rs
}

// A log step waits for nothing: it gets no default timeout (no timer per
// run), only one the step sets itself.
func TestInProcessStepsHaveNoDefaultTimeout(t *testing.T) {
	rs := mustParse(t, `
version: 1
defaults: {timeout: 5s}
rules:
  - name: r
    on: x
    steps:
      - log: a
      - log: b
        timeout: 1s
`)
	if s := rs.Rules[0].Steps[0]; s.Timeout != 0 {
		t.Errorf("log step without timeout: Timeout = %v, want 0", s.Timeout)
	}
	if s := rs.Rules[0].Steps[1]; s.Timeout != time.Second {
		t.Errorf("log step with timeout: 1s: Timeout = %v, want 1s", s.Timeout)
	}
}

func TestDefaultsApplyToSteps(t *testing.T) {
	rs := mustParse(t, `
version: 1
defaults:
  timeout: 5s
  retry: {attempts: 7, backoff: constant, initial: 10ms}
rules:
  - name: r
    on: x
    steps:
      - exec: [/bin/true]
      - exec: [/bin/true]
        timeout: 1s
        retry: {attempts: 2}
`)
	s0, s1 := rs.Rules[0].Steps[0], rs.Rules[0].Steps[1]
	if s0.Timeout != 5*time.Second || s0.Retry.Attempts != 7 || s0.Retry.Backoff != "constant" {
		t.Errorf("step 0 = %+v, want defaults", s0)
	}
	if s1.Timeout != time.Second || s1.Retry.Attempts != 2 || s1.Retry.Backoff != "constant" || s1.Retry.Initial != 10*time.Millisecond {
		t.Errorf("step 1 = %+v, want own timeout/attempts, default backoff", s1)
	}
}

func TestMatchWhenAndKey(t *testing.T) {
	rs := mustParse(t, `
version: 1
vars: {prefix: wd_}
rules:
  - name: create
    on: [order, other]
    when: payload.order_state == "executing" && payload.order_type == "Create"
    key: payload.resource_uuid
    steps:
      - exec: ["sacctmgr", "add", "account", "{{ vars.prefix + payload.resource_uuid }}", "{{ payload.limits }}"]
      - log: "{{ payload.limits }}"
  - name: strict
    on: order
    when: payload.missing_field == "x"
    steps: [{log: never}]
  - name: optional
    on: order
    when: (payload?.missing_field ?? "dflt") == "dflt"
    steps: [{log: ok}]
`)
	ev := &event.Event{Type: "order", Payload: map[string]any{
		"order_state": "executing", "order_type": "Create", "resource_uuid": "R1",
		"limits": map[string]any{"cpu": 10},
	}}
	env := rs.Environment(ev, nil)
	plans, failed := rs.Match(ev, env)
	if len(plans) != 2 || plans[0].Rule.Name != "create" || plans[1].Rule.Name != "optional" {
		t.Fatalf("plans = %v", plans)
	}
	if plans[0].Key != "R1" {
		t.Errorf("key = %q", plans[0].Key)
	}
	if len(failed) != 1 || failed[0].Rule.Name != "strict" || !strings.Contains(failed[0].Err.Error(), `no key "missing_field"`) {
		t.Errorf("failed = %+v, want strict rule with missing key error", failed)
	}
	p, run, err := RenderStep(plans[0].Rule.Steps[0], env, false)
	if err != nil || !run {
		t.Fatal(err)
	}
	argv := p["argv"].([]any)
	if argv[3] != "wd_R1" {
		t.Errorf("argv[3] = %v", argv[3])
	}
	if m, ok := argv[4].(map[string]any); !ok || m["cpu"] != 10 {
		t.Errorf("a lone {{ }} keeps its type: got %T %v", argv[4], argv[4])
	}
	p, _, _ = RenderStep(plans[0].Rule.Steps[1], env, false)
	if _, ok := p["message"].(map[string]any); !ok {
		t.Errorf("a lone {{ }} keeps its map type: got %T", p["message"])
	}
}

func TestWhenMustBeBoolean(t *testing.T) {
	rs := mustParse(t, `
version: 1
rules:
  - name: notbool
    on: x
    when: payload.n
    steps: [{log: a}]
`)
	ev := &event.Event{Type: "x", Payload: map[string]any{"n": 3}}
	_, failed := rs.Match(ev, rs.Environment(ev, nil))
	if len(failed) != 1 {
		t.Fatalf("want a failed verdict for a non-boolean when, got %v", failed)
	}
}

func TestWildcardKeepsFileOrder(t *testing.T) {
	rs := mustParse(t, `
version: 1
rules:
  - {name: a, on: x, steps: [{log: a}]}
  - {name: all, on: "*", steps: [{log: all}]}
  - {name: b, on: x, steps: [{log: b}]}
`)
	var names []string
	for _, r := range rs.RulesFor("x") {
		names = append(names, r.Name)
	}
	if strings.Join(names, ",") != "a,all,b" {
		t.Errorf("order = %v", names)
	}
	if len(rs.RulesFor("y")) != 1 {
		t.Errorf("wildcard rule must see other types")
	}
}

func TestDryRunMasksSecretsAndKeepsStepExpressions(t *testing.T) {
	rs := mustParse(t, `
version: 1
secrets:
  token: {file: /nonexistent/token}
rules:
  - name: r
    on: x
    steps:
      - id: first
        exec: [curl, "-H", "Authorization: Token {{ secrets.token }}"]
      - exec: [echo, "{{ steps.first.stdout }}"]
    on_failure:
      - log: "failed: {{ error }}"
`)
	res := rs.DryRun(&event.Event{Type: "x", Payload: map[string]any{}}, nil)
	if len(res.Plans) != 1 {
		t.Fatal(res)
	}
	steps := res.Plans[0].Steps
	if got := steps[0].Params["argv"].([]any)[2]; got != "Authorization: Token ***" {
		t.Errorf("secret not masked: %v", got)
	}
	if got := steps[1].Params["argv"].([]any)[1]; got != "{{ steps.first.stdout }}" {
		t.Errorf("unresolved step result = %v", got)
	}
	res = rs.DryRun(&event.Event{Type: "x", Payload: map[string]any{}},
		Mocks{"first": {"ok": false, "error": "boom"}})
	if res.Plans[0].FailedAt != "first" || res.Plans[0].OnFailure[0].Params["message"] != "failed: boom" {
		t.Errorf("mocked failure: %+v", res.Plans[0])
	}
}

func TestInclude(t *testing.T) {
	rs, err := Load("testdata/main.yaml", testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Rules) != 2 || rs.Rules[1].Name != "included" {
		t.Fatalf("rules = %v", rs.Rules)
	}
}

// A rule's plans get an environment of their own only when an expression
// may read step results or the rule has on_failure steps.
func TestNeedsStepResults(t *testing.T) {
	for _, c := range []struct {
		steps string
		want  bool
	}{
		{`[{log: "{{ payload.x }}"}]`, false},
		{`[{id: a, log: x}, {log: "{{ steps.a.ok }}"}]`, true},
		{`[{id: a, log: x}, {log: x, when: steps.a.ok}]`, true},
		{`[{log: "{{ $env.payload.x }}"}]`, true},
		{"[{log: x}]\n    on_failure: [{log: \"{{ error }}\"}]", true},
	} {
		rs := mustParse(t, "version: 1\nrules:\n  - name: r\n    on: x\n    steps: "+c.steps+"\n")
		if got := rs.Rules[0].NeedsStepResults(); got != c.want {
			t.Errorf("steps %s: NeedsStepResults = %v, want %v", c.steps, got, c.want)
		}
	}
}
