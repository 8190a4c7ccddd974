// Package config loads eventfn's file as a whole: its version, the
// sources, runner, waldur and slurm sections (with ${VAR} expansion), and
// hands the rest (vars, env, secrets, defaults, include, rules) to the
// rules package. Every problem is reported as FILE:LINE:COL: message, all
// of them at once.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/rules"
	"github.com/eventfn/eventfn/runner/sources"
	"github.com/eventfn/eventfn/source"
	"github.com/eventfn/eventfn/spec"
)

// Config is a loaded, checked eventfn file.
type Config struct {
	// Sources are where events come from (used by `run`), in file order.
	Sources []*source.Entry
	// Runner holds the settings of `run`.
	Runner RunnerSpec
	// Waldur configures the Waldur API used by waldur steps.
	Waldur WaldurSpec
	// Slurm configures slurm steps.
	Slurm actions.SlurmConfig
	// Rules are the rules part: vars, env, secrets, defaults, includes and
	// rules.
	Rules *rules.Ruleset
	// Registry is the source registry the sources were checked with.
	Registry *source.Registry
}

// RunnerSpec holds the settings of `eventfn run`.
type RunnerSpec struct {
	// Concurrency bounds the plans running at once (default 8).
	Concurrency int `yaml:"concurrency"`
	// StateDir holds the de-duplication journal; empty keeps it in memory.
	StateDir string `yaml:"state_dir"`
	// ShutdownTimeout bounds how long in-flight plans may finish on SIGTERM.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// Listen is the address of /healthz, /readyz and /metrics ("" = off).
	Listen string `yaml:"listen"`
	// MaxBody is the largest message accepted, in bytes (default 1 MiB).
	MaxBody int `yaml:"max_body"`
	// DedupWindow is how long a handled message id counts for
	// de-duplication (default 10m, runner.DefaultDedupWindow).
	DedupWindow time.Duration `yaml:"dedup_window"`
	// JournalMaxAge bounds how long step records of unfinished messages
	// are kept; JournalMaxEntries the handled ids kept.
	JournalMaxAge     time.Duration `yaml:"journal_max_age"`
	JournalMaxEntries int           `yaml:"journal_max_entries"`
	// SentryDSN, when set, reports failed plans to Sentry.
	SentryDSN string `yaml:"sentry_dsn"`
}

// WaldurSpec configures the Waldur API client of waldur steps.
type WaldurSpec struct {
	APIURL    string `yaml:"api_url"`
	TokenFile string `yaml:"token_file"`
	TokenEnv  string `yaml:"token_env"`
	// InsecureHTTP allows an http:// api_url (the token in clear); without
	// it only https:// and loopback addresses are accepted.
	InsecureHTTP bool `yaml:"insecure_http"`
}

// Options tune Load.
type Options struct {
	// Rules are passed to the rules package (action kinds: nil Actions
	// means the built-in ones).
	Rules rules.Options
	// Sources is the source registry (nil: runner/sources.Standard()).
	Sources *source.Registry
	// Lookup reads environment variables for ${VAR} (default
	// os.LookupEnv); it is also the rules' Lookup unless that is set.
	Lookup func(string) (string, bool)
}

// Keys returns the top-level keys this package reads itself.
func Keys() []string { return []string{"sources", "runner", "waldur", "slurm"} }

// Load reads and checks an eventfn file and its includes. On any problem
// it returns a rules.ErrorList holding every problem, each with its
// position.
func Load(path string, opts Options) (*Config, error) {
	src, err := rules.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading rules: %w", err)
	}
	return Parse(path, src, opts)
}

// Parse checks an eventfn file given as bytes; path names it in errors
// and anchors its includes and relative paths.
func Parse(path string, src []byte, opts Options) (*Config, error) {
	if opts.Lookup == nil {
		opts.Lookup = os.LookupEnv
	}
	if opts.Rules.Lookup == nil {
		opts.Rules.Lookup = opts.Lookup
	}
	if opts.Sources == nil {
		opts.Sources = sources.Standard()
	}
	l := &loader{file: path, lookup: opts.Lookup, unset: map[string]bool{}, poisoned: map[*yaml.Node]bool{}}
	c := &Config{Registry: opts.Sources}
	root := l.parseDoc(src)
	if root == nil {
		return nil, l.errs
	}
	rulesRoot := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: root.Line, Column: root.Column}
	if root.Kind == yaml.MappingNode {
		for _, kv := range l.pairs(root, "the rules file") {
			k, v := kv[0], kv[1]
			switch {
			case k.Value == "sources":
				l.expandEnv(v)
				c.Sources = l.sources(v, opts.Sources)
			case k.Value == "runner":
				l.expandEnv(v)
				l.decodeStrict(v, "runner", &c.Runner)
			case k.Value == "waldur":
				l.expandEnv(v)
				l.decodeStrict(v, "waldur", &c.Waldur)
			case k.Value == "slurm":
				l.expandEnv(v)
				l.decodeStrict(v, "slurm", &c.Slurm)
			case slices.Contains(rules.Keys(), k.Value):
				rulesRoot.Content = append(rulesRoot.Content, k, v)
			default:
				l.errorf(k, "unknown key %q%s", k.Value, spec.DidYouMean(k.Value, append(rules.Keys(), Keys()...)))
			}
		}
	} else {
		rulesRoot = root // the rules package reports what it is
	}
	if opts.Rules.Actions == nil {
		opts.Rules.Actions = actions.Builtin()
	}
	// on: may name what the sources deliver besides Waldur's types (a
	// source's fixed type, a type in a destination).
	if types, _ := source.DeliverableTypes(c.Sources); len(types) > 0 {
		opts.Rules.Types = append(slices.Clone(opts.Rules.Types), types...)
	}
	rs, err := rules.ParseNode(path, rulesRoot, opts.Rules)
	if err != nil {
		var el rules.ErrorList
		if !errors.As(err, &el) {
			return nil, err
		}
		l.errs = append(l.errs, el...)
	}
	if rs != nil && c.Waldur.APIURL == "" {
		l.errs = append(l.errs, waldurStepsWithoutSection(rs)...)
	}
	if len(l.errs) > 0 {
		return nil, sorted(l.errs)
	}
	c.Rules = rs
	return c, nil
}

// waldurStepsWithoutSection reports the waldur steps of a file that has no
// waldur: section: run would build no client, and each would fail on its
// first event.
func waldurStepsWithoutSection(rs *rules.Ruleset) rules.ErrorList {
	var out rules.ErrorList
	for _, r := range rs.Rules {
		for _, s := range slices.Concat(r.Steps, r.OnFailure) {
			if s.Kind == "waldur" {
				out = append(out, rules.Error{Pos: s.Pos, Rule: r.Name,
					Msg: "a waldur step needs the waldur: section (api_url, and token_file or token_env)"})
			}
		}
	}
	return out
}

// sources reads the sources: section: each entry's kind from its url
// scheme (or a key that implies it), its settings decoded strictly by the
// kind, then the kind's Check, each problem at its key.
func (l *loader) sources(n *yaml.Node, reg *source.Registry) []*source.Entry {
	if n.Kind != yaml.SequenceNode {
		l.errorf(n, "sources must be a list")
		return nil
	}
	var out []*source.Entry
	names := map[string]rules.Pos{}
	for _, sn := range n.Content {
		kvs := l.pairs(sn, "a source")
		if kvs == nil {
			continue
		}
		e := &source.Entry{Pos: l.pos(sn).String()}
		rest := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: sn.Line, Column: sn.Column}
		var keys []string
		var urlNode *yaml.Node
		for _, kv := range kvs {
			switch kv[0].Value {
			case "name":
				e.Name = kv[1].Value
			case "url":
				e.URL, urlNode = kv[1].Value, kv[1]
			default:
				rest.Content = append(rest.Content, kv[0], kv[1])
				keys = append(keys, kv[0].Value)
			}
		}
		what := fmt.Sprintf("source %q", e.Name)
		if e.Name == "" {
			l.errorf(sn, "source without a name")
			what = "a source"
		} else if prev, dup := names[e.Name]; dup {
			l.errorf(sn, "%s: duplicate source name (first defined at %s)", what, prev)
		} else {
			names[e.Name] = l.pos(sn)
		}
		switch {
		case urlNode != nil && l.poisoned[urlNode]:
			continue // the url uses an unset variable, reported as such
		case e.URL != "":
			k, err := reg.ForURL(e.URL)
			if err != nil {
				l.errorf(urlNode, "%s: url %q: %v", what, e.URL, err)
				continue
			}
			e.Kind = k
		default:
			if e.Kind = reg.Implied(keys); e.Kind == nil {
				l.errorf(sn, "%s: missing url (schemes: %s)", what, strings.Join(reg.Schemes(), ", "))
				continue
			}
		}
		e.Settings = e.Kind.NewSettings()
		bad := l.decodeFields(rest, fmt.Sprintf("%s (%s)", what, e.Kind.Name()), e.Settings)
		for _, err := range e.Kind.Check(e) {
			at := sn
			if ke, ok := err.(*source.KeyError); ok {
				if bad[ke.Key] {
					continue // reported already
				}
				at = keyNode(sn, ke.Key)
			}
			l.errorf(at, "%s: %v", what, err)
		}
		out = append(out, e)
	}
	return out
}

// keyNode returns the key node of key in mapping n, or n.
func keyNode(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i]
		}
	}
	return n
}

// DeliverableTypes returns the event types the sources name themselves
// (fixed types, types in destinations, Waldur object types), sorted; open
// is true when some source also delivers whatever type its messages carry.
func (c *Config) DeliverableTypes() (types []string, open bool) {
	return source.DeliverableTypes(c.Sources)
}

// Dir is the directory of the main file: relative paths start there.
func (c *Config) Dir() string { return filepath.Dir(c.Rules.Files[0]) }

// StaticChanges names the sections read only at start (sources, runner,
// waldur, slurm) that differ between old and c.
func (c *Config) StaticChanges(old *Config) []string {
	var out []string
	if !reflect.DeepEqual(stripPos(old.Sources), stripPos(c.Sources)) {
		out = append(out, "sources")
	}
	if !reflect.DeepEqual(old.Runner, c.Runner) {
		out = append(out, "runner")
	}
	if !reflect.DeepEqual(old.Waldur, c.Waldur) {
		out = append(out, "waldur")
	}
	if !reflect.DeepEqual(old.Slurm, c.Slurm) {
		out = append(out, "slurm")
	}
	return out
}

func stripPos(es []*source.Entry) []any {
	out := make([]any, len(es))
	for i, e := range es {
		out[i] = []any{e.Name, e.URL, e.Kind.Name(), e.Settings}
	}
	return out
}

func sorted(l rules.ErrorList) rules.ErrorList {
	sort.SliceStable(l, func(i, j int) bool {
		a, b := l[i].Pos, l[j].Pos
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
	return l
}

// ReadEnvFile reads an --env-file: NAME=value lines; blank lines and lines
// starting with # are skipped, a value may be quoted with ' or ".
func ReadEnvFile(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, val, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		name = strings.TrimSpace(name)
		if !ok || !envName.MatchString(name) {
			return nil, fmt.Errorf("%s:%d: want NAME=value", path, i+1)
		}
		val = strings.TrimSpace(val)
		if len(val) >= 2 && (val[0] == '"' || val[0] == '\'') && val[len(val)-1] == val[0] {
			val = val[1 : len(val)-1]
		}
		out[name] = val
	}
	return out, nil
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
