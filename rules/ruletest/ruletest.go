// Package ruletest runs rule unit tests: YAML files that give events and the
// plans they must produce, like `promtool test rules`.
package ruletest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/eventfn/eventfn/config"
	"github.com/eventfn/eventfn/event"
	"github.com/eventfn/eventfn/rules"
)

// File is a rule test file.
type File struct {
	// Rules is the rules file under test, relative to the test file.
	Rules string `yaml:"rules"`
	Tests []Case `yaml:"tests"`
}

// Case is one test: an event in, the expected plans out.
type Case struct {
	Name string `yaml:"name"`
	// Event is the event envelope; EventFile names a file holding it
	// (relative to the test file).
	Event     map[string]any `yaml:"event"`
	EventFile string         `yaml:"event_file"`
	// Mocks give step results by step id.
	Mocks rules.Mocks `yaml:"mocks"`
	// Expect lists the plans, in order. Each entry's keys are compared as a
	// subset: keys left out are not checked; lists must match in length.
	Expect []any `yaml:"expect"`
	// ExpectErrors lists rules whose condition must fail to evaluate.
	ExpectErrors []string `yaml:"expect_errors"`
}

// Failure is a failed test with its differences.
type Failure struct {
	File, Test string
	Diffs      []string
}

// Result is the outcome of one test.
type Result struct {
	File, Test string
	// Diffs are empty when the test passed.
	Diffs []string
	// Duration is how long the test took.
	Duration time.Duration
}

// Report is the outcome of running test files.
type Report struct {
	Passed   int
	Failures []Failure
	// Results hold every test run, in file order.
	Results []Result
	// Skipped counts the tests that RunOptions.Match left out.
	Skipped int
}

// RunOptions tune Run.
type RunOptions struct {
	// Match, when set, selects the tests to run by name.
	Match func(name string) bool
}

// RunFile runs every test of one file. An error means the file (or its
// rules) could not be loaded.
func RunFile(path string, opts rules.Options) (Report, error) {
	return Run(path, opts, RunOptions{})
}

// Run runs the tests of one file that o selects.
func Run(path string, opts rules.Options, o RunOptions) (Report, error) {
	var rep Report
	src, err := os.ReadFile(path)
	if err != nil {
		return rep, err
	}
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return rep, fmt.Errorf("%s: %w", path, err)
	}
	if f.Rules == "" {
		return rep, fmt.Errorf("%s: missing rules: (the rules file under test)", path)
	}
	dir := filepath.Dir(path)
	c, err := config.Load(rel(dir, f.Rules), config.Options{Rules: opts})
	if err != nil {
		return rep, err
	}
	rs := c.Rules
	for i, c := range f.Tests {
		name := c.Name
		if name == "" {
			name = fmt.Sprintf("test %d", i+1)
		}
		if o.Match != nil && !o.Match(name) {
			rep.Skipped++
			continue
		}
		start := time.Now()
		diffs, err := runCase(rs, dir, c)
		if err != nil {
			diffs = []string{err.Error()}
		}
		rep.Results = append(rep.Results, Result{File: path, Test: name, Diffs: diffs, Duration: time.Since(start)})
		if len(diffs) > 0 {
			rep.Failures = append(rep.Failures, Failure{File: path, Test: name, Diffs: diffs})
		} else {
			rep.Passed++
		}
	}
	return rep, nil
}

func rel(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

func runCase(rs *rules.Ruleset, dir string, c Case) ([]string, error) {
	var raw []byte
	switch {
	case c.EventFile != "" && c.Event != nil:
		return nil, fmt.Errorf("give event or event_file, not both")
	case c.EventFile != "":
		b, err := os.ReadFile(rel(dir, c.EventFile))
		if err != nil {
			return nil, err
		}
		raw = b
	case c.Event != nil:
		b, err := json.Marshal(c.Event)
		if err != nil {
			return nil, err
		}
		raw = b
	default:
		return nil, fmt.Errorf("no event")
	}
	ev, err := event.DecodeEnvelope(raw, event.Limits{})
	if err != nil {
		return nil, fmt.Errorf("event: %w", err)
	}
	got := rs.DryRun(ev, c.Mocks)
	var diffs []string
	gotNorm := normalize(got.Plans)
	diffs = compare("expect", normalize(c.Expect), gotNorm, diffs)
	var gotErrs []string
	for _, e := range got.Errors {
		gotErrs = append(gotErrs, e.Rule)
	}
	sort.Strings(gotErrs)
	want := append([]string(nil), c.ExpectErrors...)
	sort.Strings(want)
	if strings.Join(want, ",") != strings.Join(gotErrs, ",") {
		d := fmt.Sprintf("expect_errors:\n  - want: %v\n  + got:  %v", want, gotErrs)
		for _, e := range got.Errors {
			d += fmt.Sprintf("\n    rule %s: %s", e.Rule, e.Error)
		}
		diffs = append(diffs, d)
	}
	return diffs, nil
}

// normalize turns any value into plain JSON types, so YAML and Go values
// compare equal when they mean the same.
func normalize(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

// compare reports where got differs from want; maps in want are subsets.
func compare(path string, want, got any, diffs []string) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return append(diffs, mismatch(path, want, got))
		}
		keys := make([]string, 0, len(w))
		for k := range w {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			gv, present := g[k]
			if !present {
				if w[k] == nil || w[k] == false {
					continue
				}
				diffs = append(diffs, mismatch(path+"."+k, w[k], "<absent>"))
				continue
			}
			diffs = compare(path+"."+k, w[k], gv, diffs)
		}
		return diffs
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return append(diffs, mismatch(path, want, got))
		}
		for i := range w {
			diffs = compare(fmt.Sprintf("%s[%d]", path, i), w[i], g[i], diffs)
		}
		return diffs
	case nil:
		if got == nil {
			return diffs
		}
		if g, ok := got.([]any); ok && len(g) == 0 {
			return diffs
		}
	}
	wb, _ := json.Marshal(want)
	gb, _ := json.Marshal(got)
	if !bytes.Equal(wb, gb) {
		diffs = append(diffs, mismatch(path, want, got))
	}
	return diffs
}

func mismatch(path string, want, got any) string {
	return fmt.Sprintf("%s:\n  - want: %s\n  + got:  %s", path, show(want), show(got))
}

func show(v any) string {
	if s, ok := v.(string); ok && s == "<absent>" {
		return s
	}
	b, err := json.MarshalIndent(v, "          ", "  ")
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
