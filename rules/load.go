// Package rules loads eventfn's rules file, checks it whole at load time and
// matches events against it. It is pure: no I/O beyond reading the files.
package rules

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/eventfn/eventfn/actions"
)

// Ruleset is a loaded, checked rules file with its includes.
type Ruleset struct {
	// Files are the files read, the main one first.
	Files []string
	// Vars are the site's constants, vars.<name> in expressions.
	Vars map[string]any
	// Env holds the environment variables the file allows (env.<name>).
	Env map[string]any
	// Secrets name values read from files or the environment (secrets.<name>).
	Secrets map[string]SecretRef
	// Defaults apply to steps that do not set their own.
	Defaults Defaults
	// Rules in file order (the main file's, then each include's).
	Rules []*Rule
	// Sources configure where events come from (used by `run`).
	Sources []SourceSpec
	// Runner holds the settings of `run`.
	Runner RunnerSpec
	// Waldur configures the Waldur API used by waldur steps.
	Waldur WaldurSpec
	// Slurm configures slurm steps.
	Slurm actions.SlurmConfig

	byType map[string][]*Rule
}

// Defaults are the step settings used where a step sets none.
type Defaults struct {
	Timeout time.Duration       `yaml:"timeout"`
	Retry   actions.RetryPolicy `yaml:"retry"`
}

// SecretRef says where a secret's value comes from: a file or an env var.
type SecretRef struct {
	File string `yaml:"file"`
	Env  string `yaml:"env"`
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

// WaldurSpec configures the Waldur API client.
type WaldurSpec struct {
	APIURL    string `yaml:"api_url"`
	TokenFile string `yaml:"token_file"`
	TokenEnv  string `yaml:"token_env"`
}

// TLSSpec configures a source's TLS.
type TLSSpec struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// WaldurSourceSpec configures a source that registers with Waldur.
type WaldurSourceSpec struct {
	APIURL      string   `yaml:"api_url"`
	TokenFile   string   `yaml:"token_file"`
	TokenEnv    string   `yaml:"token_env"`
	Offerings   []string `yaml:"offerings"`
	ObjectTypes []string `yaml:"object_types"`
	Mode        string   `yaml:"mode"`
	BrokerURL   string   `yaml:"broker_url"`
	AgentName   string   `yaml:"agent_name"`
}

// SourceSpec configures one source of events.
type SourceSpec struct {
	Name string `yaml:"name"`
	// URL selects the transport: file:PATH, http://ADDR/events,
	// stomp://, stomp+ssl://, stomp+ws://, stomp+wss://, mqtt://, mqtts://,
	// mqtt+ws://, mqtt+wss://, waldur.
	URL          string   `yaml:"url"`
	VHost        string   `yaml:"vhost"`
	Login        string   `yaml:"login"`
	PasscodeFile string   `yaml:"passcode_file"`
	PasscodeEnv  string   `yaml:"passcode_env"`
	Subscribe    []string `yaml:"subscribe"`
	Prefetch     int      `yaml:"prefetch"`
	// Type fixes the event type; else it is derived from the destination.
	Type string `yaml:"type"`
	// TypeField names a payload field holding the type (consumer queue).
	TypeField string `yaml:"type_field"`
	// OnFailure is ack (default) or dead-letter.
	OnFailure  string        `yaml:"on_failure"`
	DeadLetter string        `yaml:"dead_letter"`
	Heartbeat  time.Duration `yaml:"heartbeat"`
	TLS        TLSSpec       `yaml:"tls"`
	// Follow keeps a file source reading as the file grows.
	Follow bool `yaml:"follow"`
	// Format of a file or http source's events: envelope (default) or payload.
	Format   string `yaml:"format"`
	ClientID string `yaml:"client_id"`
	QoS      int    `yaml:"qos"`
	// TypeSegment picks the MQTT topic segment holding the event type: 1 is
	// the first, -1 the last (the default, when 0).
	TypeSegment int `yaml:"type_segment"`
	// MessageID is how an MQTT source identifies messages for
	// de-duplication: hash (default: sha256 of vhost, topic and payload, as
	// Waldur computes x-message-id) or none.
	MessageID string `yaml:"message_id"`
	// DedupKey is an expression for the de-duplication key (default: the
	// message id header).
	DedupKey string            `yaml:"dedup_key"`
	Waldur   *WaldurSourceSpec `yaml:"waldur"`

	Pos Pos `yaml:"-"`
}

// Rule maps events of some types, filtered by a condition, to steps.
type Rule struct {
	Name        string
	Description string
	On          []string
	When        *Expr
	Key         *Expr
	Steps       []*Step
	OnFailure   []*Step
	Pos         Pos
}

// Step is one action of a rule.
type Step struct {
	ID              string
	Name            string
	Kind            string
	Params          *Value
	When            *Expr
	Timeout         time.Duration
	Retry           actions.RetryPolicy
	ContinueOnError bool
	Pos             Pos
}

// Label names a step for people: its id, else kind and position.
func (s *Step) Label() string {
	if s.ID != "" {
		return s.ID
	}
	if s.Name != "" {
		return s.Name
	}
	return fmt.Sprintf("%s@%d", s.Kind, s.Pos.Line)
}

// DefaultDefaults are used where the file sets no defaults.
var DefaultDefaults = Defaults{
	Timeout: 60 * time.Second,
	Retry:   actions.RetryPolicy{Attempts: 3, Backoff: "exponential", Initial: time.Second, Max: 30 * time.Second, Jitter: 0.2},
}

// Options tune Load.
type Options struct {
	// Kinds are the action kinds and their parameters; nil means the
	// built-in ones.
	Kinds map[string]actions.Spec
	// Lookup reads environment variables (default os.LookupEnv).
	Lookup func(string) (string, bool)
}

// Load reads and checks a rules file and its includes. On any problem it
// returns an ErrorList holding every problem found, each with its position.
func Load(path string, opts Options) (*Ruleset, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading rules: %w", err)
	}
	return Parse(path, src, opts)
}

// Parse checks a rules file given as bytes; path names it in errors and
// anchors its includes.
func Parse(path string, src []byte, opts Options) (*Ruleset, error) {
	if opts.Kinds == nil {
		opts.Kinds = actions.SpecsOnly()
	}
	if opts.Lookup == nil {
		opts.Lookup = os.LookupEnv
	}
	rs := &Ruleset{Files: []string{path}, Vars: map[string]any{}, Env: map[string]any{}, Defaults: DefaultDefaults}
	l := &loader{file: path, lookup: opts.Lookup}
	p := &parser{loader: l, rs: rs, opts: opts, names: map[string]Pos{}}
	p.parseMain(src, filepath.Dir(path))
	if len(l.errs) > 0 {
		return nil, l.errs.sorted()
	}
	rs.index()
	return rs, nil
}

type parser struct {
	*loader
	rs    *Ruleset
	opts  Options
	names map[string]Pos
}

func parseDoc(l *loader, src []byte) *yaml.Node {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		line := 1
		var msg = err.Error()
		fmt.Sscanf(strings.TrimPrefix(msg, "yaml: "), "line %d:", &line)
		l.errs = append(l.errs, Error{Pos: Pos{File: l.file, Line: line, Col: 1}, Msg: msg})
		return nil
	}
	if len(doc.Content) == 0 {
		l.errs = append(l.errs, Error{Pos: Pos{File: l.file, Line: 1, Col: 1}, Msg: "empty file"})
		return nil
	}
	return doc.Content[0]
}

func (p *parser) parseMain(src []byte, dir string) {
	root := parseDoc(p.loader, src)
	if root == nil {
		return
	}
	var includes []*yaml.Node
	var rulesNode *yaml.Node
	sawVersion := false
	for _, kv := range p.pairs(root, "", "the rules file") {
		k, v := kv[0], kv[1]
		switch k.Value {
		case "version":
			sawVersion = true
			if v.Value != "1" {
				p.errorf(v, "", "version %s is not supported (want 1)", v.Value)
			}
		case "vars":
			var vars map[string]any
			if err := v.Decode(&vars); err != nil || v.Kind != yaml.MappingNode {
				p.errorf(v, "", "vars must be a mapping of names to values")
			} else {
				p.rs.Vars = vars
			}
		case "env":
			var names []string
			if err := v.Decode(&names); err != nil {
				p.errorf(v, "", "env must be a list of environment variable names")
			}
			for _, n := range names {
				if val, ok := p.opts.Lookup(n); ok {
					p.rs.Env[n] = val
				} else {
					p.rs.Env[n] = ""
				}
			}
		case "secrets":
			p.rs.Secrets = map[string]SecretRef{}
			for _, skv := range p.pairs(v, "", "secrets") {
				var ref SecretRef
				p.decodeStrict(skv[1], "", "secret "+skv[0].Value, &ref)
				if (ref.File == "") == (ref.Env == "") {
					p.errorf(skv[1], "", "secret %q: set exactly one of file or env", skv[0].Value)
				}
				p.rs.Secrets[skv[0].Value] = ref
			}
		case "defaults":
			p.decodeStrict(v, "", "defaults", &p.rs.Defaults)
			if err := p.rs.Defaults.Retry.Validate(); err != nil {
				p.errorf(v, "", "defaults: %v", err)
			}
			p.rs.Defaults.Retry = p.rs.Defaults.Retry.Merge(DefaultDefaults.Retry)
			if p.rs.Defaults.Timeout == 0 {
				p.rs.Defaults.Timeout = DefaultDefaults.Timeout
			}
		case "include":
			if v.Kind == yaml.ScalarNode {
				includes = append(includes, v)
			} else if v.Kind == yaml.SequenceNode {
				includes = append(includes, v.Content...)
			} else {
				p.errorf(v, "", "include must be a glob or a list of globs")
			}
		case "rules":
			rulesNode = v
		case "sources":
			p.expandEnv(v)
			if v.Kind != yaml.SequenceNode {
				p.errorf(v, "", "sources must be a list")
				continue
			}
			for _, sn := range v.Content {
				var s SourceSpec
				p.decodeStrict(sn, "", "source", &s)
				s.Pos = p.pos(sn)
				p.checkSource(sn, &s)
				p.rs.Sources = append(p.rs.Sources, s)
			}
		case "runner":
			p.expandEnv(v)
			p.decodeStrict(v, "", "runner", &p.rs.Runner)
		case "waldur":
			p.expandEnv(v)
			p.decodeStrict(v, "", "waldur", &p.rs.Waldur)
		case "slurm":
			p.expandEnv(v)
			p.decodeStrict(v, "", "slurm", &p.rs.Slurm)
		default:
			p.errorf(k, "", "unknown key %q (known: version, vars, env, secrets, defaults, include, rules, sources, runner, waldur, slurm)", k.Value)
		}
	}
	if !sawVersion {
		p.errorf(root, "", "missing version (write `version: 1`)")
	}
	// Rules are parsed after defaults so steps inherit them wherever
	// defaults appear in the file.
	if rulesNode != nil {
		p.parseRules(rulesNode)
	}
	for _, inc := range includes {
		p.include(inc, dir)
	}
}

func (p *parser) include(n *yaml.Node, dir string) {
	pattern := n.Value
	if !filepath.IsAbs(pattern) {
		pattern = filepath.Join(dir, pattern)
	}
	files, err := filepath.Glob(pattern)
	if err != nil {
		p.errorf(n, "", "include %q: %v", n.Value, err)
		return
	}
	if len(files) == 0 {
		p.errorf(n, "", "include %q matches no file", n.Value)
		return
	}
	sort.Strings(files)
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			p.errorf(n, "", "include: %v", err)
			continue
		}
		p.rs.Files = append(p.rs.Files, f)
		saved := p.file
		p.file = f
		if root := parseDoc(p.loader, src); root != nil {
			for _, kv := range p.pairs(root, "", "an included file") {
				switch kv[0].Value {
				case "version":
				case "rules":
					p.parseRules(kv[1])
				default:
					p.errorf(kv[0], "", "unknown key %q in an included file (known: version, rules)", kv[0].Value)
				}
			}
		}
		p.file = saved
	}
}

func (p *parser) checkSource(n *yaml.Node, s *SourceSpec) {
	if s.Name == "" {
		p.errorf(n, "", "source without a name")
	}
	if s.URL == "" && s.Waldur == nil {
		p.errorf(n, "", "source %q: missing url", s.Name)
	}
	switch s.OnFailure {
	case "", "ack", "dead-letter":
	default:
		p.errorf(n, "", "source %q: on_failure %q: want ack or dead-letter", s.Name, s.OnFailure)
	}
	if s.OnFailure == "dead-letter" && s.DeadLetter == "" && !strings.HasPrefix(s.URL, "stomp") && s.Waldur == nil {
		p.errorf(n, "", "source %q: on_failure dead-letter needs dead_letter (a destination)", s.Name)
	}
	switch s.MessageID {
	case "", "hash", "none":
	default:
		p.errorf(n, "", "source %q: message_id %q: want hash or none", s.Name, s.MessageID)
	}
	if s.DedupKey != "" {
		if _, err := compileExpr(s.DedupKey, p.pos(n), false); err != nil {
			p.errorf(n, "", "source %q: dedup_key: %v", s.Name, err)
		}
	}
}

var ruleKeys = []string{"name", "description", "on", "when", "key", "steps", "on_failure"}
var stepKeys = []string{"id", "name", "when", "timeout", "retry", "continue_on_error"}

func (p *parser) parseRules(n *yaml.Node) {
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "", "rules must be a list")
		return
	}
	for _, rn := range n.Content {
		if r := p.parseRule(rn); r != nil {
			p.rs.Rules = append(p.rs.Rules, r)
		}
	}
}

func (p *parser) parseRule(n *yaml.Node) *Rule {
	r := &Rule{Pos: p.pos(n)}
	kvs := p.pairs(n, "", "a rule")
	for _, kv := range kvs { // the name first, so every other error can carry it
		if kv[0].Value == "name" {
			r.Name = kv[1].Value
		}
	}
	if r.Name == "" {
		p.errorf(n, "", "rule without a name")
	} else if prev, dup := p.names[r.Name]; dup {
		p.errorf(n, r.Name, "duplicate rule name (first defined at %s)", prev)
	} else {
		p.names[r.Name] = r.Pos
	}
	var steps, onFailure *yaml.Node
	for _, kv := range kvs {
		k, v := kv[0], kv[1]
		switch k.Value {
		case "name":
		case "description":
			r.Description = v.Value
		case "on":
			switch v.Kind {
			case yaml.ScalarNode:
				r.On = []string{v.Value}
			case yaml.SequenceNode:
				for _, c := range v.Content {
					r.On = append(r.On, c.Value)
				}
			}
			if len(r.On) == 0 || slices.Contains(r.On, "") {
				p.errorf(v, r.Name, "on must name an event type or a list of them")
			}
		case "when":
			r.When = p.expr(v, r.Name, true)
		case "key":
			r.Key = p.expr(v, r.Name, false)
		case "steps":
			steps = v
		case "on_failure":
			onFailure = v
		default:
			p.errorf(k, r.Name, "unknown key %q (known: %s)", k.Value, strings.Join(ruleKeys, ", "))
		}
	}
	if r.On == nil {
		p.errorf(n, r.Name, "missing on (the event type)")
	}
	if steps == nil {
		p.errorf(n, r.Name, "missing steps")
	}
	defined := map[string]bool{}
	if steps != nil {
		r.Steps = p.parseSteps(steps, r, defined)
		if len(steps.Content) == 0 && steps.Kind == yaml.SequenceNode {
			p.errorf(steps, r.Name, "steps is empty")
		}
	}
	if onFailure != nil {
		r.OnFailure = p.parseSteps(onFailure, r, defined)
	}
	for _, e := range r.exprsOutsideSteps() {
		for _, id := range e.steps {
			p.errs = append(p.errs, Error{Pos: e.Pos, Rule: r.Name, Msg: fmt.Sprintf("steps.%s: when and key run before any step", id)})
		}
	}
	return r
}

func (r *Rule) exprsOutsideSteps() []*Expr {
	var out []*Expr
	for _, e := range []*Expr{r.When, r.Key} {
		if e != nil {
			out = append(out, e)
		}
	}
	return out
}

func (p *parser) expr(n *yaml.Node, rule string, asBool bool) *Expr {
	if n.Kind != yaml.ScalarNode {
		p.errorf(n, rule, "expected an expression, got %s", nodeKind(n))
		return nil
	}
	e, err := compileExpr(n.Value, p.pos(n), asBool)
	if err != nil {
		p.errorf(n, rule, "%v", err)
		return nil
	}
	return e
}

func (p *parser) parseSteps(n *yaml.Node, r *Rule, defined map[string]bool) []*Step {
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, r.Name, "steps must be a list")
		return nil
	}
	var out []*Step
	for _, sn := range n.Content {
		s := p.parseStep(sn, r)
		if s == nil {
			continue
		}
		p.checkRefs(s, r, defined)
		if s.ID != "" {
			if defined[s.ID] {
				p.errorf(sn, r.Name, "duplicate step id %q", s.ID)
			}
			defined[s.ID] = true
		}
		out = append(out, s)
	}
	return out
}

func (p *parser) checkRefs(s *Step, r *Rule, defined map[string]bool) {
	var exprs []*Expr
	if s.When != nil {
		exprs = append(exprs, s.When)
	}
	if s.Params != nil {
		exprs = s.Params.exprs(exprs)
	}
	for _, e := range exprs {
		for _, id := range e.steps {
			if !defined[id] {
				p.errs = append(p.errs, Error{Pos: e.Pos, Rule: r.Name,
					Msg: fmt.Sprintf("steps.%s refers to no earlier step (step ids are set with id:)", id)})
			}
		}
	}
}

func (p *parser) parseStep(n *yaml.Node, r *Rule) *Step {
	s := &Step{Pos: p.pos(n), Timeout: p.rs.Defaults.Timeout, Retry: p.rs.Defaults.Retry}
	var kindNode *yaml.Node
	errsBefore := len(p.errs)
	for _, kv := range p.pairs(n, r.Name, "a step") {
		k, v := kv[0], kv[1]
		switch k.Value {
		case "id":
			s.ID = v.Value
			if !validID(s.ID) {
				p.errorf(v, r.Name, "step id %q: use letters, digits and _ (it is read as steps.%s)", s.ID, s.ID)
			}
		case "name":
			s.Name = v.Value
		case "when":
			s.When = p.expr(v, r.Name, true)
		case "timeout":
			d, err := time.ParseDuration(v.Value)
			if err != nil || d <= 0 {
				p.errorf(v, r.Name, "timeout %q: want a duration such as 30s or 5m", v.Value)
			}
			s.Timeout = d
		case "retry":
			var rp actions.RetryPolicy
			p.decodeStrict(v, r.Name, "retry", &rp)
			if err := rp.Validate(); err != nil {
				p.errorf(v, r.Name, "%v", err)
			}
			s.Retry = rp.Merge(p.rs.Defaults.Retry)
		case "continue_on_error":
			if err := v.Decode(&s.ContinueOnError); err != nil {
				p.errorf(v, r.Name, "continue_on_error must be true or false")
			}
		default:
			if _, ok := p.opts.Kinds[k.Value]; !ok {
				p.errorf(k, r.Name, "unknown key %q in step (action kinds: %s; step keys: %s)",
					k.Value, strings.Join(sortedKeys(p.opts.Kinds), ", "), strings.Join(stepKeys, ", "))
				continue
			}
			if kindNode != nil {
				p.errorf(k, r.Name, "step has two actions, %s and %s: one step does one thing", s.Kind, k.Value)
				continue
			}
			s.Kind, kindNode = k.Value, v
		}
	}
	if kindNode == nil {
		if len(p.errs) > errsBefore {
			return nil // an unknown key was reported: likely the misspelt action
		}
		p.errorf(n, r.Name, "step has no action (one of: %s)", strings.Join(sortedKeys(p.opts.Kinds), ", "))
		return nil
	}
	s.Params = p.params(kindNode, r.Name, s.Kind)
	if s.Params == nil {
		return nil
	}
	return s
}

func validID(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// params compiles a step's action parameters, turning a shorthand (a
// scalar or a list) into a map and checking keys against the kind's spec.
func (p *parser) params(n *yaml.Node, rule, kind string) *Value {
	spec := p.opts.Kinds[kind]
	if n.Kind != yaml.MappingNode {
		if spec.Shorthand == "" {
			p.errorf(n, rule, "%s takes a mapping of %s", kind, strings.Join(spec.Keys, ", "))
			return nil
		}
		v := p.value(n, rule)
		if v == nil {
			return nil
		}
		return &Value{Pos: v.Pos, kind: kindMap, keys: []string{spec.Shorthand}, vals: []*Value{v}}
	}
	m := &Value{Pos: p.pos(n), kind: kindMap}
	for _, kv := range p.pairs(n, rule, kind) {
		if !slices.Contains(spec.Keys, kv[0].Value) {
			p.errorf(kv[0], rule, "unknown key %q for %s (known: %s)", kv[0].Value, kind, strings.Join(spec.Keys, ", "))
			continue
		}
		v := p.value(kv[1], rule)
		if v == nil {
			continue
		}
		m.keys = append(m.keys, kv[0].Value)
		m.vals = append(m.vals, v)
	}
	for _, req := range spec.Required {
		if _, ok := m.Get(req); !ok {
			p.errorf(n, rule, "%s needs %s", kind, req)
		}
	}
	return m
}

func (p *parser) value(n *yaml.Node, rule string) *Value {
	switch n.Kind {
	case yaml.AliasNode:
		return p.value(n.Alias, rule)
	case yaml.SequenceNode:
		v := &Value{Pos: p.pos(n), kind: kindList}
		for _, c := range n.Content {
			if cv := p.value(c, rule); cv != nil {
				v.list = append(v.list, cv)
			}
		}
		return v
	case yaml.MappingNode:
		v := &Value{Pos: p.pos(n), kind: kindMap}
		for _, kv := range p.pairs(n, rule, "a value") {
			if cv := p.value(kv[1], rule); cv != nil {
				v.keys = append(v.keys, kv[0].Value)
				v.vals = append(v.vals, cv)
			}
		}
		return v
	}
	if n.Tag == "!!str" || n.Tag == "" {
		v, err := parseTemplate(n.Value, p.pos(n))
		if err != nil {
			p.errorf(n, rule, "%v", err)
			return nil
		}
		return v
	}
	var lit any
	if err := n.Decode(&lit); err != nil {
		p.errorf(n, rule, "%v", err)
		return nil
	}
	return &Value{Pos: p.pos(n), lit: lit}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// index builds, once per load, the list of rules each event type sees:
// its own rules and the "*" rules, in file order, each rule once. Matching
// an event then never looks at the rules of other types.
func (rs *Ruleset) index() {
	rs.byType = map[string][]*Rule{}
	for _, r := range rs.Rules {
		for _, t := range r.On {
			rs.byType[t] = nil
		}
	}
	add := func(t string, r *Rule) {
		if list := rs.byType[t]; len(list) == 0 || list[len(list)-1] != r {
			rs.byType[t] = append(list, r)
		}
	}
	for _, r := range rs.Rules {
		if slices.Contains(r.On, "*") {
			for t := range rs.byType {
				add(t, r)
			}
			continue
		}
		for _, t := range r.On {
			add(t, r)
		}
	}
}

// Types returns the event types that some rule handles ("*" for all).
func (rs *Ruleset) Types() []string { return sortedKeys(rs.byType) }

// ReadSecrets reads every secret's value from its file or variable.
func (rs *Ruleset) ReadSecrets(lookup func(string) (string, bool)) (map[string]any, error) {
	out := make(map[string]any, len(rs.Secrets))
	var errs []error
	for name, ref := range rs.Secrets {
		if ref.File != "" {
			b, err := os.ReadFile(ref.File)
			if err != nil {
				errs = append(errs, fmt.Errorf("secret %s: %w", name, err))
				continue
			}
			out[name] = strings.TrimRight(string(b), "\r\n")
		} else {
			v, ok := lookup(ref.Env)
			if !ok {
				errs = append(errs, fmt.Errorf("secret %s: environment variable %s is not set", name, ref.Env))
			}
			out[name] = v
		}
	}
	return out, errors.Join(errs...)
}

// MaskedSecrets returns every secret as "***", for dry-run and tests.
func (rs *Ruleset) MaskedSecrets() map[string]any {
	out := make(map[string]any, len(rs.Secrets))
	for name := range rs.Secrets {
		out[name] = "***"
	}
	return out
}
