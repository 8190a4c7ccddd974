package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/event"
	"github.com/eventfn/eventfn/rules"
	"github.com/eventfn/eventfn/rules/ruletest"
)

const validateUsage = `usage: eventfn validate -c FILE

Loads a rules file and its includes and checks everything: keys, rule names,
step ids, action kinds, expressions, references to earlier steps. Every problem
is printed as FILE:LINE:COL: rule "NAME": message. Exit code 0 when the file is
good, 1 when not.

example:
  eventfn validate -c examples/slurm-site/eventfn.yaml
`

func cmdValidate(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("validate", validateUsage, stderr)
	cfg := fs.String("c", "", "rules file (default $EVENTFN_CONFIG)")
	pos, code := parseFlags(fs, args)
	if code >= 0 {
		return code
	}
	if *cfg == "" && len(pos) == 1 {
		*cfg = pos[0]
	}
	rs, ok := load(configPath(*cfg), stderr)
	if !ok {
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok: %d rules for %d event types, %d sources\n", rs.Files[0], len(rs.Rules), len(rs.Types()), len(rs.Sources))
	return 0
}

func load(path string, stderr io.Writer) (*rules.Ruleset, bool) {
	if path == "" {
		fmt.Fprintln(stderr, "eventfn: no rules file: give -c FILE or set EVENTFN_CONFIG")
		return nil, false
	}
	rs, err := rules.Load(path, rules.Options{Actions: actions.Builtin()})
	if err != nil {
		fmt.Fprintln(stderr, err)
		var el rules.ErrorList
		if errors.As(err, &el) {
			fmt.Fprintf(stderr, "%d error(s)\n", len(el))
		}
		return nil, false
	}
	return rs, true
}

const dryRunUsage = `usage: eventfn dry-run -c FILE [--explain] [--output text|json] [EVENT_FILE...|-]

Shows, for each event, the rules that match and every step with its rendered
arguments. Nothing runs: no command, no request, no secret is read (secrets
show as ***). Step results that later steps read (steps.<id>) are shown as
their expressions. Event files hold one JSON envelope
{"type": "order", "payload": {...}, "headers": {...}}, a JSON array of them
or JSON Lines; "-" reads standard input.

examples:
  eventfn dry-run -c examples/slurm-site/eventfn.yaml examples/slurm-site/events/order-create.json
  eventfn dry-run -c examples/slurm-site/eventfn.yaml --explain --output json examples/slurm-site/events/*.json
`

type dryRunEvent struct {
	File    string              `json:"file"`
	Index   int                 `json:"index"`
	Type    string              `json:"type"`
	Error   string              `json:"error,omitempty"`
	Result  *rules.DryRunResult `json:"result,omitempty"`
	Explain []explainedRule     `json:"explain,omitempty"`
	event   *event.Event
}

type explainedRule struct {
	Rule    string `json:"rule"`
	Matched bool   `json:"matched"`
	When    any    `json:"when,omitempty"`
	Error   string `json:"error,omitempty"`
}

func cmdDryRun(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("dry-run", dryRunUsage, stderr)
	cfg := fs.String("c", "", "rules file (default $EVENTFN_CONFIG)")
	explain := fs.Bool("explain", false, "show for every rule of the event's type why it matched or not")
	output := fs.String("output", "text", "output format: text or json")
	files, code := parseFlags(fs, args)
	if code >= 0 {
		return code
	}
	if *output != "text" && *output != "json" {
		fmt.Fprintf(stderr, "eventfn: --output %q: want text or json\n", *output)
		return 2
	}
	rs, ok := load(configPath(*cfg), stderr)
	if !ok {
		return 1
	}
	if len(files) == 0 {
		files = []string{"-"}
	}
	var results []dryRunEvent
	status := 0
	for _, f := range files {
		var r io.Reader = os.Stdin
		if f != "-" {
			fh, err := os.Open(f)
			if err != nil {
				fmt.Fprintln(stderr, "eventfn:", err)
				return 1
			}
			defer fh.Close()
			r = fh
		}
		i := 0
		err := event.Scan(r, event.Limits{}, func(ev *event.Event, err error) error {
			i++
			d := dryRunEvent{File: f, Index: i, event: ev}
			if err != nil {
				d.Error = err.Error()
				status = 1
				results = append(results, d)
				return nil
			}
			d.Type = ev.Type
			ev.Source = "dry-run"
			res := rs.DryRun(ev, nil)
			d.Result = &res
			if len(res.Errors) > 0 {
				status = 1
			}
			if *explain {
				for _, v := range rs.Explain(ev, rs.Environment(ev, rs.MaskedSecrets())) {
					er := explainedRule{Rule: v.Rule.Name, Matched: v.Matched, When: v.When}
					if v.Err != nil {
						er.Error = v.Err.Error()
					}
					d.Explain = append(d.Explain, er)
				}
			}
			results = append(results, d)
			return nil
		})
		if err != nil {
			fmt.Fprintf(stderr, "eventfn: %s: %v\n", f, err)
			status = 1
		}
	}
	if *output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(results); err != nil {
			fmt.Fprintln(stderr, "eventfn:", err)
			return 1
		}
		return status
	}
	for _, d := range results {
		printDryRun(stdout, d, *explain)
	}
	return status
}

func printDryRun(w io.Writer, d dryRunEvent, explain bool) {
	fmt.Fprintf(w, "event %s#%d", d.File, d.Index)
	if d.Error != "" {
		fmt.Fprintf(w, ": rejected: %s\n\n", d.Error)
		return
	}
	fmt.Fprintf(w, " (type %s)\n", d.Type)
	if explain {
		fmt.Fprintln(w, "  rules of this type:")
		if len(d.Explain) == 0 {
			fmt.Fprintln(w, "    (none)")
		}
		for _, e := range d.Explain {
			switch {
			case e.Error != "":
				fmt.Fprintf(w, "    %-28s ERROR  %s\n", e.Rule, e.Error)
			case e.Matched:
				fmt.Fprintf(w, "    %-28s match  when = true\n", e.Rule)
			default:
				fmt.Fprintf(w, "    %-28s no     when = %v\n", e.Rule, e.When)
			}
		}
	}
	for _, e := range d.Result.Errors {
		fmt.Fprintf(w, "  ERROR rule %s: %s\n", e.Rule, e.Error)
	}
	if len(d.Result.Plans) == 0 {
		fmt.Fprintln(w, "  no rule matches")
	}
	for _, p := range d.Result.Plans {
		fmt.Fprintf(w, "  rule %s", p.Rule)
		if p.Key != "" {
			fmt.Fprintf(w, " (key %s)", p.Key)
		}
		fmt.Fprintln(w)
		printSteps(w, p.Steps, "    ")
		if len(p.OnFailure) > 0 {
			fmt.Fprintln(w, "    on_failure:")
			printSteps(w, p.OnFailure, "      ")
		}
	}
	fmt.Fprintln(w)
}

func printSteps(w io.Writer, steps []rules.RenderedStep, indent string) {
	for i, s := range steps {
		label := s.Kind
		if s.ID != "" {
			label = s.ID + " (" + s.Kind + ")"
		}
		switch {
		case s.Error != "":
			fmt.Fprintf(w, "%s%d. %s: ERROR %s\n", indent, i+1, label, s.Error)
		case s.Skipped:
			fmt.Fprintf(w, "%s%d. %s: skipped (when is false)\n", indent, i+1, label)
		default:
			fmt.Fprintf(w, "%s%d. %s: %s\n", indent, i+1, label, formatParams(s.Params))
		}
	}
}

// formatParams prints params compactly: argv lists joined with quoting
// where needed, the rest as key=JSON.
func formatParams(p map[string]any) string {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		v := p[k]
		if list, ok := v.([]any); ok && (k == "argv" || k == "args") {
			words := make([]string, len(list))
			for i, e := range list {
				words[i] = quoteWord(rules.Stringify(e))
			}
			parts = append(parts, k+": "+strings.Join(words, " "))
			continue
		}
		parts = append(parts, k+"="+jsonText(v))
	}
	return strings.Join(parts, "  ")
}

func quoteWord(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n'\"\\$`;&|<>(){}*?[]#~") {
		return s
	}
	b, _ := json.Marshal(s)
	return string(b)
}

const testUsage = `usage: eventfn test TEST_FILE...

Runs rule unit tests: each test gives an event (and mocked step results) and
the plans it must produce. Differences are printed as want/got pairs; the exit
code is 1 when any test fails.

test file:
  rules: eventfn.yaml              # the rules under test, relative to this file
  tests:
    - name: create order makes the account
      event_file: events/order-create.json   # or event: {type: ..., payload: ...}
      mocks: {order: {json: {state: executing}}}
      expect:
        - rule: order-executing
          steps:
            - {id: account, kind: slurm, params: {args: [add, account, wd_x]}}

example:
  eventfn test examples/slurm-site/eventfn_test.yaml
`

func cmdTest(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("test", testUsage, stderr)
	files, code := parseFlags(fs, args)
	if code >= 0 {
		return code
	}
	if len(files) == 0 {
		fs.Usage()
		return 2
	}
	passed, failed := 0, 0
	for _, f := range files {
		rep, err := ruletest.RunFile(f, rules.Options{Actions: actions.Builtin()})
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", f, err)
			failed++
			continue
		}
		passed += rep.Passed
		for _, fl := range rep.Failures {
			failed++
			fmt.Fprintf(stdout, "FAIL %s: %s\n", fl.File, fl.Test)
			for _, d := range fl.Diffs {
				fmt.Fprintln(stdout, indentLines(d, "  "))
			}
		}
	}
	if failed > 0 {
		fmt.Fprintf(stdout, "FAILED: %d passed, %d failed\n", passed, failed)
		return 1
	}
	fmt.Fprintf(stdout, "ok: %d tests passed\n", passed)
	return 0
}

func indentLines(s, indent string) string {
	return indent + strings.ReplaceAll(s, "\n", "\n"+indent)
}

// jsonText renders v as compact JSON without HTML escaping.
func jsonText(v any) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSuffix(b.String(), "\n")
}
