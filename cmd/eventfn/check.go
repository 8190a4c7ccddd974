package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/eventfn/eventfn/config"
	"gopkg.in/yaml.v3"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/event"
	"github.com/eventfn/eventfn/rules"
	"github.com/eventfn/eventfn/rules/ruletest"
)

const validateUsage = `usage: eventfn validate [-c FILE] [FILE...]

Loads rules files (each with its includes) and checks everything that run
would refuse, without the network: keys (with "did you mean"), rule names,
step ids, every step's parameters as its action kind checks them (types,
HTTP methods, URLs, durations, SLURM forms), event types of on: against
Waldur's (custom ones declared with types:), vars./secrets./env. references,
expressions, references to earlier steps. Every problem is printed as
FILE:LINE:COL: rule "NAME": message. Exit code 0 when every file is good, 1
when not.

examples:
  eventfn validate -c examples/slurm-site/eventfn.yaml
  eventfn validate examples/*/eventfn.yaml
`

// validateResult is one file's verdict, for -o json|yaml.
type validateResult struct {
	File    string          `json:"file"`
	OK      bool            `json:"ok"`
	Rules   int             `json:"rules,omitempty"`
	Types   int             `json:"types,omitempty"`
	Sources int             `json:"sources,omitempty"`
	Errors  []validateError `json:"errors,omitempty"`
}

type validateError struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Col     int    `json:"col"`
	Rule    string `json:"rule,omitempty"`
	Message string `json:"message"`
}

func cmdValidate(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("validate", validateUsage, stderr)
	cfg := fs.String("c", "", "rules file (default $EVENTFN_CONFIG)")
	envFile := fs.String("env-file", "", "read unset environment variables from FILE (NAME=value lines)")
	output := fs.String("o", "text", "output format: text, json or yaml")
	pos, code := parseFlags(fs, args)
	if code >= 0 {
		return code
	}
	if !validOutput(*output) {
		fmt.Fprintf(stderr, "eventfn: -o %q: want text, json or yaml\n", *output)
		return 2
	}
	if !applyEnvFile(*envFile, stderr) {
		return 1
	}
	files := pos
	if *cfg != "" || len(files) == 0 {
		files = append([]string{configPath(*cfg)}, files...)
	}
	status := 0
	var results []validateResult
	for _, f := range files {
		if *output == "text" {
			c, ok := load(f, stderr)
			if !ok {
				status = 1
				continue
			}
			rs := c.Rules
			for _, n := range rs.RawUses() {
				fmt.Fprintln(stdout, n)
			}
			fmt.Fprintf(stdout, "%s: ok: %d rules for %d event types, %d sources\n", rs.Files[0], len(rs.Rules), len(rs.Types()), len(c.Sources))
			continue
		}
		res := validateResult{File: f}
		c, err := loadConfig(f)
		var el rules.ErrorList
		switch {
		case err == nil:
			res.OK, res.Rules, res.Types, res.Sources = true, len(c.Rules.Rules), len(c.Rules.Types()), len(c.Sources)
		case errors.As(err, &el):
			for _, e := range el {
				res.Errors = append(res.Errors, validateError{File: e.Pos.File, Line: e.Pos.Line, Col: e.Pos.Col, Rule: e.Rule, Message: e.Msg})
			}
		default:
			res.Errors = []validateError{{File: f, Message: err.Error()}}
		}
		if !res.OK {
			status = 1
		}
		results = append(results, res)
	}
	if *output != "text" {
		if err := printData(stdout, *output, results); err != nil {
			fmt.Fprintln(stderr, "eventfn:", err)
			return 1
		}
	}
	return status
}

// loadConfig loads an eventfn file (rules, sources, settings) with the
// built-in action and source kinds.
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return nil, errors.New("no rules file: give -c FILE or set EVENTFN_CONFIG")
	}
	return config.Load(path, config.Options{})
}

func load(path string, stderr io.Writer) (*config.Config, bool) {
	if path == "" {
		fmt.Fprintln(stderr, "eventfn: no rules file: give -c FILE or set EVENTFN_CONFIG")
		return nil, false
	}
	c, err := loadConfig(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		var el rules.ErrorList
		if errors.As(err, &el) {
			fmt.Fprintf(stderr, "%d error(s)\n", len(el))
		}
		return nil, false
	}
	return c, true
}

// applyEnvFile sets the variables of an --env-file that the environment
// does not set; "" does nothing.
func applyEnvFile(path string, stderr io.Writer) bool {
	if path == "" {
		return true
	}
	vars, err := config.ReadEnvFile(path)
	if err != nil {
		fmt.Fprintln(stderr, "eventfn: --env-file:", err)
		return false
	}
	for k, v := range vars {
		if _, set := os.LookupEnv(k); !set {
			if err := os.Setenv(k, v); err != nil {
				fmt.Fprintln(stderr, "eventfn: --env-file:", err)
				return false
			}
		}
	}
	return true
}

const dryRunUsage = `usage: eventfn dry-run -c FILE [--explain] [-o text|json|yaml] [--mock FILE] [--type T] [EVENT_FILE...|-]

Shows, for each event, the rules that match and what each step would do: the
exact command lines (every option run adds), the HTTP requests (secrets and
tokens as ***), the log lines, and each step's when with its value. Nothing
runs: no command, no request, no secret is read. A step that run would refuse
is an ERROR, as are render errors: the exit code is then 1. Step results that
later steps read (steps.<id>) come from --mock (the rule-test mocks format:
{step_id: {json: ..., stdout: ...}}); without a mock such a step shows its
parameters and what it waits for. Event files hold one JSON envelope
{"type": "order", "payload": {...}, "headers": {...}}, a JSON array of them
or JSON Lines; with --type T they hold bare Waldur payloads of type T.
"-" reads standard input.

examples:
  eventfn dry-run -c examples/slurm-site/eventfn.yaml examples/slurm-site/events/order-create.json
  eventfn dry-run -c eventfn.yaml --type order --mock mocks.yaml payload.json
  eventfn dry-run -c examples/slurm-site/eventfn.yaml --explain -o json examples/slurm-site/events/*.json
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
	output := fs.String("output", "text", "output format: text, json or yaml")
	fs.StringVar(output, "o", "text", "output format (short for --output)")
	mockFile := fs.String("mock", "", "YAML or JSON file of step results by step id (rule-test mocks)")
	typ := fs.String("type", "", "event files hold bare payloads of this event type")
	files, code := parseFlags(fs, args)
	if code >= 0 {
		return code
	}
	if !validOutput(*output) {
		fmt.Fprintf(stderr, "eventfn: -o %q: want text, json or yaml\n", *output)
		return 2
	}
	c, ok := load(configPath(*cfg), stderr)
	if !ok {
		return 1
	}
	rs := c.Rules
	var mocks rules.Mocks
	if *mockFile != "" {
		b, err := os.ReadFile(*mockFile)
		if err == nil {
			err = yaml.Unmarshal(b, &mocks)
		}
		if err != nil {
			fmt.Fprintf(stderr, "eventfn: --mock %s: %v\n", *mockFile, err)
			return 1
		}
	}
	reg := actions.Standard(actions.Options{Slurm: c.Slurm, WaldurURL: c.Waldur.APIURL, Logger: slog.New(slog.DiscardHandler)})
	opts := rules.DryRunOptions{Mocks: mocks, Preview: previewWith(reg)}
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
		if *typ != "" {
			wrapped, err := wrapPayloads(r, *typ)
			if err != nil {
				fmt.Fprintf(stderr, "eventfn: %s: %v\n", f, err)
				return 1
			}
			r = wrapped
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
			res := rs.DryRunWith(ev, opts)
			d.Result = &res
			if len(res.Errors) > 0 || planErrors(res) {
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
	if *output != "text" {
		if err := printData(stdout, *output, results); err != nil {
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

// previewWith adapts a registry's Preview to the dry run.
func previewWith(reg *actions.Registry) rules.PreviewFunc {
	return func(s *rules.Step, params map[string]any, p rules.Plan) (any, error) {
		req := actions.Request{Params: params, Type: p.Event.Type, Rule: p.Rule.Name, Key: p.Key, MessageID: p.Event.ID}
		if s.Kind == "script" {
			req.EventJSON, _ = json.Marshal(p.Event)
		}
		eff, err := reg.Preview(s.Kind, req)
		if err != nil {
			return nil, err
		}
		return eff, nil
	}
}

// planErrors reports whether a step of a plan failed to render or would be
// refused (not a mocked failure).
func planErrors(res rules.DryRunResult) bool {
	for _, p := range res.Plans {
		for _, s := range slices.Concat(p.Steps, p.OnFailure) {
			if s.Error != "" {
				return true
			}
		}
	}
	return false
}

// wrapPayloads reads JSON values (one, an array, or a stream) and returns
// them as envelopes of type typ.
func wrapPayloads(r io.Reader, typ string) (io.Reader, error) {
	dec := json.NewDecoder(r)
	dec.UseNumber()
	var out bytes.Buffer
	for {
		var v any
		if err := dec.Decode(&v); err == io.EOF {
			break
		} else if err != nil {
			return nil, err
		}
		items := []any{v}
		if list, ok := v.([]any); ok {
			items = list
		}
		for _, it := range items {
			b, err := json.Marshal(map[string]any{"type": typ, "payload": it})
			if err != nil {
				return nil, err
			}
			out.Write(append(b, '\n'))
		}
	}
	return &out, nil
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
		when := ""
		if s.When != "" {
			v := "unknown until earlier steps run"
			if s.WhenValue != nil {
				v = fmt.Sprint(*s.WhenValue)
			}
			when = fmt.Sprintf(" [when %s = %s]", s.When, v)
		}
		more := indent + "     "
		switch {
		case s.Error != "":
			fmt.Fprintf(w, "%s%d. %s%s: ERROR %s\n", indent, i+1, label, when, s.Error)
		case s.Skipped:
			fmt.Fprintf(w, "%s%d. %s%s: skipped\n", indent, i+1, label, when)
		case s.Effect != nil:
			fmt.Fprintf(w, "%s%d. %s%s:\n", indent, i+1, label, when)
			printEffect(w, s.Effect, more)
		default:
			fmt.Fprintf(w, "%s%d. %s%s: %s\n", indent, i+1, label, when, formatParams(s.Params))
			if len(s.Pending) > 0 {
				fmt.Fprintf(w, "%s(reads steps.%s: give them with --mock to see the exact effect)\n", more, strings.Join(s.Pending, ", steps."))
			}
		}
	}
}

// printEffect prints what a step would do, as an admin would run it.
func printEffect(w io.Writer, e any, indent string) {
	eff, ok := e.(actions.Effect)
	if !ok {
		fmt.Fprintf(w, "%s%s\n", indent, jsonText(e))
		return
	}
	for _, c := range eff.Commands {
		words := make([]string, len(c.Argv))
		for i, a := range c.Argv {
			words[i] = quoteWord(a)
		}
		fmt.Fprintf(w, "%s$ %s\n", indent, strings.Join(words, " "))
		if c.Dir != "" {
			fmt.Fprintf(w, "%s  in %s\n", indent, c.Dir)
		}
		if len(c.Env) > 0 {
			fmt.Fprintf(w, "%s  env %s\n", indent, jsonText(c.Env))
		}
		if c.Stdin != "" {
			fmt.Fprintf(w, "%s  stdin %s\n", indent, clipText(c.Stdin))
		}
	}
	for _, r := range eff.Requests {
		fmt.Fprintf(w, "%s%s %s\n", indent, r.Method, r.URL)
		keys := make([]string, 0, len(r.Headers))
		for k := range r.Headers {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "%s  %s: %s\n", indent, k, r.Headers[k])
		}
		if r.Body != "" {
			fmt.Fprintf(w, "%s  %s\n", indent, clipText(r.Body))
		}
	}
	if l := eff.Log; l != nil {
		fmt.Fprintf(w, "%slog %s: %s", indent, l.Level, l.Message)
		if len(l.Fields) > 0 {
			fmt.Fprintf(w, " %s", jsonText(l.Fields))
		}
		fmt.Fprintln(w)
	}
	if e := eff.Emit; e != nil {
		fmt.Fprintf(w, "%semit %s %s", indent, e.Type, jsonText(e.Payload))
		if e.Key != "" {
			fmt.Fprintf(w, " key %s", e.Key)
		}
		fmt.Fprintln(w)
	}
}

func clipText(s string) string {
	if len(s) > 400 {
		return s[:400] + "…"
	}
	return s
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

const testUsage = `usage: eventfn test [--run REGEX] [-v] [--junit FILE] [-o text|json|yaml] TEST_FILE...

Runs rule unit tests: each test gives an event (and mocked step results) and
the plans it must produce. Differences are printed as want/got pairs; the exit
code is 1 when any test fails. --run selects tests by name (a regular
expression), -v names every test run, --junit writes a JUnit XML report for
CI.

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

examples:
  eventfn test examples/slurm-site/eventfn_test.yaml
  eventfn test --run 'order' -v --junit report.xml examples/slurm-site/eventfn_test.yaml
`

// testResult is one test's outcome, for -o json|yaml.
type testResult struct {
	File    string   `json:"file"`
	Test    string   `json:"test"`
	Passed  bool     `json:"passed"`
	Diffs   []string `json:"diffs,omitempty"`
	Seconds float64  `json:"seconds"`
}

func cmdTest(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("test", testUsage, stderr)
	runRe := fs.String("run", "", "run only the tests whose name matches this regular expression")
	verbose := fs.Bool("v", false, "print every test run, passed or not")
	junit := fs.String("junit", "", "write a JUnit XML report to this file")
	output := fs.String("o", "text", "output format: text, json or yaml")
	files, code := parseFlags(fs, args)
	if code >= 0 {
		return code
	}
	if len(files) == 0 {
		fs.Usage()
		return 2
	}
	if !validOutput(*output) {
		fmt.Fprintf(stderr, "eventfn: -o %q: want text, json or yaml\n", *output)
		return 2
	}
	var o ruletest.RunOptions
	if *runRe != "" {
		re, err := regexp.Compile(*runRe)
		if err != nil {
			fmt.Fprintf(stderr, "eventfn: --run: %v\n", err)
			return 2
		}
		o.Match = re.MatchString
	}
	passed, failed, skipped := 0, 0, 0
	var all []ruletest.Result
	var loadErrs []ruletest.Result
	for _, f := range files {
		rep, err := ruletest.Run(f, rules.Options{Actions: actions.Builtin()}, o)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", f, err)
			failed++
			loadErrs = append(loadErrs, ruletest.Result{File: f, Test: "(load)", Diffs: []string{err.Error()}})
			continue
		}
		passed += rep.Passed
		skipped += rep.Skipped
		all = append(all, rep.Results...)
		if *output != "text" {
			continue
		}
		for _, r := range rep.Results {
			if len(r.Diffs) == 0 {
				if *verbose {
					fmt.Fprintf(stdout, "ok   %s: %s (%s)\n", r.File, r.Test, r.Duration.Round(time.Microsecond))
				}
				continue
			}
			failed++
			fmt.Fprintf(stdout, "FAIL %s: %s\n", r.File, r.Test)
			for _, d := range r.Diffs {
				fmt.Fprintln(stdout, indentLines(d, "  "))
			}
		}
	}
	if *output != "text" {
		var out []testResult
		for _, r := range append(loadErrs, all...) {
			out = append(out, testResult{File: r.File, Test: r.Test, Passed: len(r.Diffs) == 0, Diffs: r.Diffs, Seconds: r.Duration.Seconds()})
			if len(r.Diffs) > 0 && r.Test != "(load)" {
				failed++
			}
		}
		if err := printData(stdout, *output, out); err != nil {
			fmt.Fprintln(stderr, "eventfn:", err)
			return 1
		}
	}
	if *junit != "" {
		if err := writeJUnit(*junit, append(loadErrs, all...)); err != nil {
			fmt.Fprintln(stderr, "eventfn: --junit:", err)
			return 1
		}
	}
	if *output == "text" {
		suffix := ""
		if skipped > 0 {
			suffix = fmt.Sprintf(", %d not selected by --run", skipped)
		}
		if failed > 0 {
			fmt.Fprintf(stdout, "FAILED: %d passed, %d failed%s\n", passed, failed, suffix)
		} else {
			fmt.Fprintf(stdout, "ok: %d tests passed%s\n", passed, suffix)
		}
	}
	if failed > 0 {
		return 1
	}
	return 0
}

// JUnit XML, as CI systems read it.
type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

// writeJUnit writes results as one test suite per file.
func writeJUnit(path string, results []ruletest.Result) error {
	var suites junitSuites
	index := map[string]int{}
	for _, r := range results {
		i, ok := index[r.File]
		if !ok {
			i = len(suites.Suites)
			index[r.File] = i
			suites.Suites = append(suites.Suites, junitSuite{Name: r.File})
		}
		s := &suites.Suites[i]
		c := junitCase{Name: r.Test, Classname: r.File, Time: fmt.Sprintf("%.6f", r.Duration.Seconds())}
		if len(r.Diffs) > 0 {
			c.Failure = &junitFailure{Message: "plans differ from the expectation", Text: strings.Join(r.Diffs, "\n")}
			s.Failures++
		}
		s.Tests++
		s.Cases = append(s.Cases, c)
	}
	for i := range suites.Suites {
		var total float64
		for _, r := range results {
			if r.File == suites.Suites[i].Name {
				total += r.Duration.Seconds()
			}
		}
		suites.Suites[i].Time = fmt.Sprintf("%.6f", total)
	}
	b, err := xml.MarshalIndent(suites, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append([]byte(xml.Header), append(b, '\n')...), 0o600)
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

func validOutput(o string) bool { return o == "text" || o == "json" || o == "yaml" }

// printData writes v as JSON or YAML (through JSON, so that both show the
// same keys).
func printData(w io.Writer, format string, v any) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	if format == "json" {
		_, err := w.Write(b.Bytes())
		return err
	}
	var generic any
	if err := json.Unmarshal(b.Bytes(), &generic); err != nil {
		return err
	}
	out, err := yaml.Marshal(generic)
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}
