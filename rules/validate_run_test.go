package rules_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/rules"
)

// TestValidateRefusesWhatRunRefuses: for every kind of setting, a file that
// run (or the first event) would refuse is refused by validate first, with
// its position; where run has a refusal of its own, the test shows it too
// (a permanent one). Misspelt types never match and undefined vars fail
// every event's render: validate is the first to see them.
func TestValidateRefusesWhatRunRefuses(t *testing.T) {
	type stepRun struct {
		kind   string
		params map[string]any
	}
	cases := []struct {
		name string
		step string // a step, or a whole rule when rule is set
		rule string
		want string // FILE:LINE:COL: rule "r": message (substring)
		run  *stepRun
	}{
		{name: "webhook method", step: `webhook: {url: "http://x", method: PSOT}`,
			want: `t.yaml:7:44: rule "r": webhook method: "PSOT" is not one of`, run: &stepRun{"webhook", map[string]any{"url": "http://x", "method": "PSOT"}}},
		{name: "webhook url scheme", step: `webhook: {url: "ftp://x"}`,
			want: `t.yaml:7:24: rule "r": webhook url: "ftp://x": scheme "ftp": want http or https`, run: &stepRun{"webhook", map[string]any{"url": "ftp://x"}}},
		{name: "exec exit codes type", step: `exec: {argv: [true], ok_exit_codes: [x]}`,
			want: `t.yaml:7:46: rule "r": exec ok_exit_codes[0]: want an integer`, run: &stepRun{"exec", map[string]any{"argv": []any{"true"}, "ok_exit_codes": []any{"x"}}}},
		{name: "exec empty argv", step: `exec: []`,
			want: `t.yaml:7:15: rule "r": exec argv: empty`, run: &stepRun{"exec", map[string]any{"argv": []any{}}}},
		{name: "misspelt key", step: `exec: {argv: [true], ok_exit_code: [1]}`,
			want: `t.yaml:7:30: rule "r": unknown key "ok_exit_code" for exec (did you mean "ok_exit_codes"?)`},
		{name: "log level", step: `log: {message: hi, level: loud}`,
			want: `t.yaml:7:35: rule "r": log level: "loud" is not one of`, run: &stepRun{"log", map[string]any{"message": "hi", "level": "loud"}}},
		{name: "waldur path", step: `waldur: "../users/"`,
			want: `t.yaml:7:17: rule "r": waldur path: path "../users/" refused`, run: &stepRun{"waldur", map[string]any{"path": "../users/"}}},
		{name: "waldur method", step: `waldur: {path: x/, method: PSOT}`,
			want: `t.yaml:7:36: rule "r": waldur method: "PSOT" is not one of`, run: &stepRun{"waldur", map[string]any{"path": "x/", "method": "PSOT"}}},
		{name: "waldur batch key", step: `waldur: {batch: [{pth: x/}]}`,
			want: `t.yaml:7:27: rule "r": waldur batch[0]: unknown key "pth" (did you mean "path"?)`, run: &stepRun{"waldur", map[string]any{"batch": []any{map[string]any{"pth": "x/"}}}}},
		{name: "slurm form key", step: `slurm: {add_account: {nme: x}}`,
			want: `t.yaml:7:16: rule "r": slurm: slurm add_account: unknown key "nme"`, run: &stepRun{"slurm", map[string]any{"add_account": map[string]any{"nme": "x"}}}},
		{name: "slurm form key with a template", step: `slurm: {add_account: {nme: "{{ payload.x }}"}}`,
			want: `t.yaml:7:16: rule "r": slurm: slurm add_account: unknown key "nme"`, run: &stepRun{"slurm", map[string]any{"add_account": map[string]any{"nme": "x"}}}},
		{name: "step timeout", step: "log: hi\n        timeout: 5 minutes",
			want: `t.yaml:8:18: rule "r": timeout "5 minutes": want a duration`},
		{name: "retry backoff", step: "log: hi\n        retry: {backoff: linear}",
			want: `t.yaml:8:26: rule "r": retry backoff "linear": want constant, exponential or fibonacci`},
		{name: "event type typo", rule: "  - name: r\n    on: user-role\n    steps: [{log: hi}]",
			want: `t.yaml:5:9: rule "r": on: unknown event type "user-role" (did you mean "user_role"?`},
		{name: "event type number", rule: "  - name: r\n    on: [resource, 5]\n    steps: [{log: hi}]",
			want: `t.yaml:5:20: rule "r": on: "5" is not an event type`},
		{name: "vars typo", step: `log: "{{ vars.parent_acount }}"`,
			want: `t.yaml:7:14: rule "r": vars.parent_acount is not defined (did you mean vars.parent_account?)`},
		{name: "secrets undefined", step: `log: "{{ secrets.tokn }}"`,
			want: `rule "r": secrets.tokn is not defined`},
		{name: "unquoted template", step: `log: {{ payload.x }}`,
			want: `t.yaml:7:14: rule "r": log: a {{ … }} template must be quoted`},
		{name: "unclosed template", step: `exec: [echo, "{{ payload.x"]`,
			want: `t.yaml:7:22: rule "r": unclosed {{`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rule := c.rule
			if rule == "" {
				rule = "  - name: r\n    on: order\n    steps:\n      - " + c.step
			}
			src := "version: 1\nvars: {parent_account: root}\nrules:\n" + rule + "\n"
			_, err := rules.Parse("t.yaml", []byte(src), rules.Options{Actions: actions.Builtin()})
			var el rules.ErrorList
			if !errors.As(err, &el) {
				t.Fatalf("validate accepted:\n%s", src)
			}
			if len(el) != 1 {
				t.Errorf("want one error per cause, got %d:\n%v", len(el), err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("validate said\n  %v\nwant\n  %s", err, c.want)
			}
			if c.run != nil {
				k, _ := actions.Builtin().Get(c.run.kind)
				if _, err := k.Run(context.Background(), actions.Request{Params: c.run.params}); err == nil {
					t.Errorf("run accepted %v: validate should not refuse it", c.run.params)
				} else if actions.Retryable(err) {
					t.Errorf("run's refusal is retryable: %v", err)
				}
			}
		})
	}
}
