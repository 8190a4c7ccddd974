package rules

import (
	"strings"
	"testing"

	"github.com/eventfn/eventfn/event"
)

// renderStepOf parses a rules file with one rule of one step and renders that
// step over payload.
func renderStepOf(t *testing.T, step string, payload map[string]any) (map[string]any, error) {
	t.Helper()
	rs := mustParse(t, `
version: 1
vars: {hooks: /srv/hooks, flag: -v, base: "https://api.example.org/v1/"}
rules:
  - name: r
    on: x
    steps:
      - `+step+`
`)
	env := rs.Environment(&event.Event{Type: "x", Payload: payload}, nil)
	params, _, err := RenderStep(rs.Rules[0].Steps[0], env, false)
	return params, err
}

func TestContextualEscaping(t *testing.T) {
	cases := []struct {
		name    string
		step    string
		payload map[string]any
		param   string
		want    any    // the rendered parameter, when no error
		wantErr string // a part of the error, when one is expected
	}{
		{"url host cannot be changed", `webhook: "http://host{{ payload.p }}"`, map[string]any{"p": "@127.0.0.3:18082/x"}, "", nil, "host"},
		{"url wholly from the event", `webhook: "{{ payload.p }}"`, map[string]any{"p": "http://evil/"}, "", nil, "host"},
		{"url userinfo cannot be set", `webhook: "http://{{ payload.p }}@host/"`, map[string]any{"p": "u"}, "", nil, "userinfo"},
		{"url path segment escaped", `webhook: "http://host/api/{{ payload.p }}/x"`, map[string]any{"p": "../../admin"}, "url", "http://host/api/..%2F..%2Fadmin/x", ""},
		{"url dot-dot segment refused", `webhook: "http://host/api/{{ payload.p }}/x"`, map[string]any{"p": ".."}, "", nil, "segment"},
		{"url query escaped", `webhook: "http://host/x?q={{ payload.p }}&z=1"`, map[string]any{"p": "a&b=c #"}, "url", "http://host/x?q=a%26b%3Dc+%23&z=1", ""},
		{"url trusted prefix from vars", `webhook: "{{ vars.base }}orders/{{ payload.p }}"`, map[string]any{"p": "a/b"}, "url", "https://api.example.org/v1/orders/a%2Fb", ""},
		{"url raw opts out", `webhook: "{{ raw(payload.p) }}"`, map[string]any{"p": "http://elsewhere/x"}, "url", "http://elsewhere/x", ""},
		{"waldur path escaped", `waldur: "marketplace-orders/{{ payload.p }}/"`, map[string]any{"p": "x/../../users"}, "path", "marketplace-orders/x%2F..%2F..%2Fusers/", ""},
		{"waldur path wholly from the event", `waldur: "{{ payload.p }}"`, map[string]any{"p": "https://evil/"}, "", nil, "safe URL path"},
		{"script path traversal", `script: "{{ vars.hooks }}/{{ payload.p }}"`, map[string]any{"p": "../../../../usr/bin/id"}, "", nil, `".."`},
		{"script path absolute", `script: "{{ vars.hooks }}/{{ payload.p }}"`, map[string]any{"p": "/usr/bin/id"}, "", nil, "absolute"},
		{"script path ok", `script: "{{ vars.hooks }}/{{ payload.p }}.sh"`, map[string]any{"p": "create"}, "path", "/srv/hooks/create.sh", ""},
		{"script path without directory", `script: "{{ payload.p }}"`, map[string]any{"p": "id"}, "", nil, "directory"},
		{"exec program from the event", `exec: ["{{ payload.p }}"]`, map[string]any{"p": "id"}, "", nil, "directory"},
		{"exec dir traversal", `exec: {argv: [ls], dir: "/srv/{{ payload.p }}"}`, map[string]any{"p": "a/../../etc"}, "", nil, `".."`},
		{"argv option refused", `exec: [sort, "{{ payload.p }}"]`, map[string]any{"p": "--output=/tmp/x"}, "", nil, `starts with "-"`},
		{"argv negative number refused", `exec: [sort, "{{ payload.p }}"]`, map[string]any{"p": -5}, "", nil, `starts with "-"`},
		{"argv with literal option prefix", `exec: [sort, "--key={{ payload.p }}"]`, map[string]any{"p": "-x"}, "argv", []any{"sort", "--key=-x"}, ""},
		{"argv trusted option", `exec: [sort, "{{ vars.flag }}"]`, nil, "argv", []any{"sort", "-v"}, ""},
		{"argv raw opts out", `exec: [sort, "{{ raw(payload.p) }}"]`, map[string]any{"p": "-r"}, "argv", []any{"sort", "-r"}, ""},
		{"argv list from the event", `exec: {argv: "{{ payload.p }}"}`, map[string]any{"p": []any{"sort", "-o", "x"}}, "", nil, "element 0"},
		{"script args option refused", `script: {path: /srv/x, args: ["{{ payload.p }}"]}`, map[string]any{"p": "-rf"}, "", nil, `starts with "-"`},
		{"slurm keyword refused", `slurm: [remove, user, "{{ payload.p }}", "account=a1"]`, map[string]any{"p": "where"}, "", nil, "keyword"},
		{"slurm keyword abbreviation refused", `slurm: [remove, user, "{{ payload.p }}", "account=a1"]`, map[string]any{"p": "WithAs"}, "", nil, "keyword"},
		{"slurm list refused", `slurm: [add, user, "{{ payload.p }}", "account=a1"]`, map[string]any{"p": "a,b"}, "", nil, "single name"},
		{"slurm setting refused", `slurm: [add, user, alice, "account={{ payload.p }}"]`, map[string]any{"p": "a1 set"}, "", nil, "single name"},
		{"slurm equals refused", `slurm: [add, user, "{{ payload.p }}"]`, map[string]any{"p": "account=root"}, "", nil, "single name"},
		{"slurm name ok", `slurm: [add, user, "{{ payload.p }}", "account=a1"]`, map[string]any{"p": "alice"}, "args", []any{"add", "user", "alice", "account=a1"}, ""},
		{"slurm short name like an abbreviation ok", `slurm: [add, user, "{{ payload.p }}", "account=a1"]`, map[string]any{"p": "eve"}, "args", []any{"add", "user", "eve", "account=a1"}, ""},
		{"slurm entity word refused", `slurm: [add, user, "{{ payload.p }}", "account=a1"]`, map[string]any{"p": "Account"}, "", nil, "keyword"},
		{"slurm literal parts free", `slurm: [remove, user, where, "account={{ payload.p }}"]`, map[string]any{"p": "a1"}, "args", []any{"remove", "user", "where", "account=a1"}, ""},
		{"text untouched", `log: "user {{ payload.p }}"`, map[string]any{"p": "--x where ../"}, "message", "user --x where ../", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			params, err := renderStepOf(t, c.step, c.payload)
			if c.wantErr != "" {
				if err == nil {
					t.Fatalf("rendered %v, want an error with %q", params, c.wantErr)
				}
				if !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %q, want it to say %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			if got := Stringify(params[c.param]); got != Stringify(c.want) {
				t.Fatalf("%s = %s, want %s", c.param, got, Stringify(c.want))
			}
		})
	}
}

func TestRawMustWrapWholeExpression(t *testing.T) {
	_, err := Parse("t.yaml", []byte(`
version: 1
rules:
  - name: r
    on: x
    steps:
      - exec: [ls, "{{ raw(payload.a) + payload.b }}"]
`), testOptions())
	if err == nil || !strings.Contains(err.Error(), "raw(...) must wrap the whole expression") {
		t.Fatalf("err = %v, want raw(...) refused when it does not wrap the expression", err)
	}
}

func TestRawUsesAreListed(t *testing.T) {
	rs := mustParse(t, `
version: 1
rules:
  - name: r
    on: x
    steps:
      - exec: [ls, "{{ payload.a }}", "{{ raw(payload.b) }}"]
`)
	n := rs.RawUses()
	if len(n) != 1 || n[0].Pos.Line != 7 || !strings.Contains(n[0].Error(), `rule "r": notice: raw(payload.b) in exec argv`) {
		t.Fatalf("RawUses = %v, want one notice at line 7 for raw(payload.b)", n)
	}
}
