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

	"github.com/eventfn/eventfn/spec"
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

	byType map[string][]*Rule
	// indexes hold, per type of byType, its rules indexed by a guarded
	// payload field (index.go).
	indexes map[string]*typeIndex
	// unread are the names of the expression environment that no
	// expression reads (readRoots): Environment leaves them out. None
	// (the safe default) unless index proved it.
	unread envRoot
}

// Defaults are the step settings used where a step sets none.
type Defaults struct {
	Timeout time.Duration `yaml:"timeout"`
	Retry   spec.Retry    `yaml:"retry"`
}

// SecretRef says where a secret's value comes from: a file or an env var.
type SecretRef struct {
	File string `yaml:"file"`
	Env  string `yaml:"env"`
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
	// stepResults is true when its plan must keep step results in its
	// environment (see NeedsStepResults).
	stepResults bool
}

// NeedsStepResults reports whether a plan of the rule must keep its steps'
// results (steps.<id>) and its error in an environment of its own: some
// step expression may read them, or it has on_failure steps. A plan of a
// rule that needs neither runs in the event's environment as it is, with
// no copy per plan. Conservative: any expression naming steps or $env
// counts as reading them.
func (r *Rule) NeedsStepResults() bool { return r.stepResults }

// Step is one action of a rule.
type Step struct {
	ID              string
	Name            string
	Kind            string
	Params          *Value
	When            *Expr
	Timeout         time.Duration
	Retry           spec.Retry
	ContinueOnError bool
	// ForEach, when set, runs the step once per element of the list it
	// gives, with item and index bound (see foreach.go).
	ForEach            *Expr
	ForEachConcurrency int
	Pos                Pos
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
	Retry:   spec.Retry{Attempts: 3, Backoff: "exponential", Initial: time.Second, Max: 30 * time.Second, Jitter: 0.2},
}

// Options tune Load.
type Options struct {
	// Actions are the action kinds: their definitions and load-time
	// checks (actions.Builtin() for the built-in ones). Required.
	Actions spec.Catalog
	// Types are event types the sources can deliver besides Waldur's,
	// which on: may name.
	Types []string
	// Lookup reads environment variables (default os.LookupEnv).
	Lookup func(string) (string, bool)
}

// Load reads and checks a rules file and its includes. On any problem it
// returns an ErrorList holding every problem found, each with its position.
func Load(path string, opts Options) (*Ruleset, error) {
	src, err := readFileLimited(path)
	if err != nil {
		return nil, fmt.Errorf("reading rules: %w", err)
	}
	return Parse(path, src, opts)
}

// Keys returns the top-level keys of a rules file that this package reads;
// the config package reads the others (sources, runner, waldur, slurm).
func Keys() []string {
	return []string{"version", "vars", "env", "secrets", "defaults", "include", "types", "rules"}
}

// Parse checks a rules file given as bytes; path names it in errors and
// anchors its includes. The file may hold only the keys of Keys: the whole
// eventfn file is read by the config package, which hands the rules part
// to ParseNode.
func Parse(path string, src []byte, opts Options) (*Ruleset, error) {
	l := &loader{file: path}
	root := parseDoc(l, src)
	if root == nil {
		return nil, l.errs.sorted()
	}
	return ParseNode(path, root, opts)
}

// ParseNode checks the rules part of a file already parsed as YAML: root
// is its top-level mapping, holding keys of Keys only; path names it in
// errors and anchors its includes.
func ParseNode(path string, root *yaml.Node, opts Options) (*Ruleset, error) {
	if opts.Actions == nil {
		return nil, errors.New("rules: no action kinds given (Options.Actions)")
	}
	if opts.Lookup == nil {
		opts.Lookup = os.LookupEnv
	}
	rs := &Ruleset{Files: []string{path}, Vars: map[string]any{}, Env: map[string]any{}, Defaults: DefaultDefaults}
	l := &loader{file: path, lookup: opts.Lookup}
	p := &parser{loader: l, rs: rs, opts: opts, names: map[string]Pos{}}
	p.parseMain(root, filepath.Dir(path))
	p.checkOn()
	p.checkNames()
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
	// declared are the custom event types of types: lists.
	declared []string
	// onNodes are the on: entries, checked once all types are known.
	onNodes []onRef
}

// ParseDocument parses one YAML file with the loader's limits (size,
// nodes after alias expansion): what the config package reads the main
// file with. It returns the top-level node, or the errors.
func ParseDocument(path string, src []byte) (*yaml.Node, ErrorList) {
	l := &loader{file: path}
	root := parseDoc(l, src)
	return root, l.errs
}

// ReadFile reads a rules file, refusing one larger than MaxFileBytes
// without reading it all.
func ReadFile(path string) ([]byte, error) { return readFileLimited(path) }

func parseDoc(l *loader, src []byte) *yaml.Node {
	var doc yaml.Node
	if len(src) > MaxFileBytes {
		l.errs = append(l.errs, Error{Pos: Pos{File: l.file, Line: 1, Col: 1}, Msg: fmt.Sprintf("larger than %d bytes", MaxFileBytes)})
		return nil
	}
	if err := yaml.Unmarshal(src, &doc); err != nil {
		line := 1
		var msg = err.Error()
		if _, err := fmt.Sscanf(strings.TrimPrefix(msg, "yaml: "), "line %d:", &line); err != nil {
			line = 1 // the message names no line
		}
		l.errs = append(l.errs, Error{Pos: Pos{File: l.file, Line: line, Col: 1}, Msg: yamlError(err)})
		return nil
	}
	if err := checkExpansion(&doc); err != nil {
		l.errs = append(l.errs, Error{Pos: Pos{File: l.file, Line: 1, Col: 1}, Msg: err.Error()})
		return nil
	}
	if len(doc.Content) == 0 {
		l.errs = append(l.errs, Error{Pos: Pos{File: l.file, Line: 1, Col: 1}, Msg: "empty file"})
		return nil
	}
	return doc.Content[0]
}

func (p *parser) parseMain(root *yaml.Node, dir string) {
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
			p.parseDefaults(v)
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
		case "types":
			p.declareTypes(v, "")
		case "sources", "runner", "waldur", "slurm":
			p.errorf(k, "", "%s is a section of the whole eventfn file, read by the config package (load the file with config.Load, as eventfn does)", k.Value)
		default:
			p.errorf(k, "", "unknown key %q%s", k.Value, spec.DidYouMean(k.Value, topKeys))
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
	// Includes stay under the rules file's directory unless the include
	// is written as an absolute path; each file is read with a size limit,
	// and the files of all includes together are bounded.
	pattern := n.Value
	absolute := filepath.IsAbs(pattern)
	if !absolute {
		pattern = filepath.Join(dir, pattern)
	}
	files, err := filepath.Glob(pattern)
	if err != nil {
		p.errorf(n, "", "include %s: %v", quoteLine(n.Value), err)
		return
	}
	if len(files) == 0 {
		p.errorf(n, "", "include %s matches no file", quoteLine(n.Value))
		return
	}
	sort.Strings(files)
	root, rootErr := filepath.EvalSymlinks(dir)
	for _, f := range files {
		if !absolute {
			real, err := filepath.EvalSymlinks(f)
			if err == nil && rootErr == nil {
				rel, rerr := filepath.Rel(root, real)
				if rerr != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
					p.errorf(n, "", "include %s: %s is outside the rules directory %s (write an absolute path to include it)", quoteLine(n.Value), f, dir)
					continue
				}
			}
		}
		if len(p.rs.Files) > MaxIncludes {
			p.errorf(n, "", "include %s: more than %d included files", quoteLine(n.Value), MaxIncludes)
			return
		}
		src, err := readFileLimited(f)
		if err != nil {
			p.errorf(n, "", "include: %v", err)
			continue
		}
		p.rs.Files = append(p.rs.Files, f)
		saved := p.file
		p.file = f
		if root := parseDoc(p.loader, src); root != nil && root.Kind != yaml.MappingNode {
			// Not a rules file (a glob that hit something else): say so
			// without quoting what it holds.
			p.errorf(root, "", "not a rules file: its top level is not a mapping of version and rules")
		} else if root != nil {
			for _, kv := range p.pairs(root, "", "an included file") {
				switch kv[0].Value {
				case "version":
				case "rules":
					p.parseRules(kv[1])
				case "types":
					p.declareTypes(kv[1], "")
				default:
					p.errorf(kv[0], "", "unknown key %s in an included file%s", quoteLine(kv[0].Value), spec.DidYouMean(kv[0].Value, []string{"version", "rules", "types"}))
				}
			}
		}
		p.file = saved
	}
}

var ruleKeys = []string{"name", "description", "on", "types", "when", "key", "steps", "on_failure"}

// topKeys are the keys of an eventfn file: this package's (Keys) and the
// config package's, for did-you-mean.
var topKeys = []string{"version", "vars", "env", "secrets", "defaults", "include", "types", "rules", "sources", "runner", "waldur", "slurm"}
var stepKeys = []string{"id", "name", "when", "timeout", "retry", "continue_on_error", "for_each", "for_each_concurrency"}

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
			p.parseOn(v, r)
			if r.On == nil {
				r.On = []string{} // reported; not "missing"
			}
		case "types":
			p.declareTypes(v, r.Name)
		case "when":
			r.When = p.expr(v, r.Name, true)
		case "key":
			r.Key = p.expr(v, r.Name, false)
		case "steps":
			steps = v
		case "on_failure":
			onFailure = v
		default:
			p.errorf(k, r.Name, "unknown key %q%s", k.Value, spec.DidYouMean(k.Value, ruleKeys))
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
	r.stepResults = len(r.OnFailure) > 0 || readsStepResults(r.Steps)
	return r
}

// readsStepResults reports whether an expression of steps may read the
// results of earlier steps: it names steps, or $env (the whole
// environment).
func readsStepResults(steps []*Step) bool {
	for _, s := range steps {
		var exprs []*Expr
		for _, e := range []*Expr{s.When, s.ForEach} {
			if e != nil {
				exprs = append(exprs, e)
			}
		}
		if s.Params != nil {
			exprs = s.Params.exprs(exprs)
		}
		for _, e := range exprs {
			if strings.Contains(e.Src, "steps") || strings.Contains(e.Src, "$env") {
				return true
			}
		}
	}
	return false
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
			if id := stepID(sn); validID(id) {
				defined[id] = true // reported already: no knock-on errors in later steps
			}
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
	if s.ForEach != nil {
		exprs = append(exprs, s.ForEach)
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
	timeoutSet := false
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
			s.Timeout, timeoutSet = p.duration(v, r.Name, "timeout"), true
		case "retry":
			s.Retry = p.parseRetry(v, r.Name).Merge(p.rs.Defaults.Retry)
		case "continue_on_error":
			if err := v.Decode(&s.ContinueOnError); err != nil {
				p.errorf(v, r.Name, "continue_on_error must be true or false")
			}
		case "for_each", "for_each_concurrency":
			p.parseForEach(k, v, r, s)
		default:
			if _, ok := p.opts.Actions.Definition(k.Value); !ok {
				hint := ""
				if s := spec.Suggest(k.Value, slices.Concat(p.kinds(), stepKeys)); s != "" {
					hint = fmt.Sprintf("did you mean %q? ", s)
				} else if owners := p.paramOf(k.Value); len(owners) > 0 {
					hint = fmt.Sprintf("%s is a parameter of %s: write it inside the action, e.g. %s: {…, %s: …}; ", k.Value, strings.Join(owners, ", "), owners[0], k.Value)
				}
				p.errorf(k, r.Name, "unknown key %q in step (%saction kinds: %s; step keys: %s)",
					k.Value, hint, strings.Join(p.kinds(), ", "), strings.Join(stepKeys, ", "))
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
		p.errorf(n, r.Name, "step has no action (one of: %s)", strings.Join(p.kinds(), ", "))
		return nil
	}
	if def, _ := p.opts.Actions.Definition(s.Kind); def.InProcess && !timeoutSet {
		s.Timeout = 0 // nothing to wait for: no timer (see spec.Definition)
	}
	s.Params = p.params(kindNode, r.Name, s.Kind)
	if s.Params == nil {
		return nil
	}
	p.checkItems(n, r, s)
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
// scalar or a list) into a map, and has the kind check them as written.
func (p *parser) params(n *yaml.Node, rule, kind string) *Value {
	def, _ := p.opts.Actions.Definition(kind)
	if bad := unquotedTemplate(n); bad != nil {
		p.errorf(bad, rule, "%s: a {{ … }} template must be quoted (\"{{ … }}\"): unquoted, YAML reads it as a mapping", kind)
		return nil
	}
	before := len(p.errs)
	var out *Value
	if n.Kind != yaml.MappingNode {
		if def.Shorthand == "" {
			p.errorf(n, rule, "%s takes a mapping of %s", kind, strings.Join(def.Keys(), ", "))
			return nil
		}
		v := p.value(n, rule)
		if v == nil {
			return nil
		}
		out = &Value{Pos: v.Pos, kind: kindMap, keys: []string{def.Shorthand}, vals: []*Value{v}}
	} else {
		out = &Value{Pos: p.pos(n), kind: kindMap}
		for _, kv := range p.pairs(n, rule, kind) {
			v := p.value(kv[1], rule)
			if v == nil {
				continue
			}
			out.keys = append(out.keys, kv[0].Value)
			out.vals = append(out.vals, v)
		}
	}
	if len(p.errs) == before { // a value that did not parse is one error, not several
		p.checkParams(n, rule, kind, def.Shorthand)
	}
	return out
}

// paramOf returns the kinds that take a parameter of that name.
func (p *parser) paramOf(key string) []string {
	var out []string
	for _, d := range p.opts.Actions.Definitions() {
		if _, ok := d.Param(key); ok {
			out = append(out, d.Kind)
		}
	}
	return out
}

// kinds returns the names of the action kinds.
func (p *parser) kinds() []string {
	defs := p.opts.Actions.Definitions()
	out := make([]string, len(defs))
	for i, d := range defs {
		out[i] = d.Kind
	}
	return out
}

// stepID returns the id: of a step node, if it has one.
func stepID(n *yaml.Node) string {
	if n.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "id" {
			return n.Content[i+1].Value
		}
	}
	return ""
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
	rs.indexes = make(map[string]*typeIndex, len(rs.byType))
	for t, list := range rs.byType {
		rs.indexes[t] = newTypeIndex(list)
	}
	rs.unread = rootAll &^ rs.readRoots()
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
