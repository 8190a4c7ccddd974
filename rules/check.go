package rules

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/eventfn/eventfn/spec"
)

// WaldurTypes are the event types Waldur sends (its observable object
// types), plus timer (the timer source's ticks).
var WaldurTypes = []string{
	"order", "user_role", "resource", "offering_user", "service_account", "course_account",
	"importable_resources", "resource_periodic_limits", "offering_resources_sync",
	"resource_api_key_rotation", "resource_end_date_change_request", "user_profile",
	"user_ssh_key", "user_lifecycle", "timer",
}

// knownTypes are the types rules may name in on: Waldur's, the sources',
// and those the file declares.
func (p *parser) knownTypes() []string {
	out := slices.Concat(WaldurTypes, p.opts.Types, p.declared)
	sort.Strings(out)
	return slices.Compact(out)
}

// declareTypes reads a types: list (top-level or a rule's): custom event
// types that on: may name.
func (p *parser) declareTypes(n *yaml.Node, rule string) {
	items := []*yaml.Node{n}
	if n.Kind == yaml.SequenceNode {
		items = n.Content
	}
	for _, c := range items {
		if c.Kind != yaml.ScalarNode || c.Tag != "!!str" || c.Value == "" || c.Value == "*" {
			p.errorf(c, rule, "types must list event type names, got %s", nodeKind(c))
			continue
		}
		p.declared = append(p.declared, c.Value)
	}
}

// parseOn reads a rule's on: one event type or a list of them, each a name.
func (p *parser) parseOn(v *yaml.Node, r *Rule) {
	items := []*yaml.Node{v}
	if v.Kind == yaml.SequenceNode {
		items = v.Content
		if len(items) == 0 {
			p.errorf(v, r.Name, "on is an empty list: name an event type or a list of them")
		}
	}
	for _, c := range items {
		if c.Kind != yaml.ScalarNode || c.Tag != "!!str" || c.Value == "" {
			p.errorf(c, r.Name, "on: %s is not an event type (write a name such as order, or \"*\")", nodeKind(c))
			continue
		}
		r.On = append(r.On, c.Value)
		p.onNodes = append(p.onNodes, onRef{node: c, file: p.file, rule: r.Name})
	}
}

// onRef is an on: entry, checked once every types: list is read.
type onRef struct {
	node *yaml.Node
	file string
	rule string
}

func (p *parser) checkOn() {
	known := p.knownTypes()
	for _, o := range p.onNodes {
		t := o.node.Value
		if t == "*" || slices.Contains(known, t) {
			continue
		}
		hint := fmt.Sprintf("known: %s; a custom type is declared with `types: [%s]`", strings.Join(known, ", "), t)
		if s := spec.Suggest(t, known); s != "" {
			hint = fmt.Sprintf("did you mean %q? a custom type is declared with `types: [%s]`", s, t)
		}
		p.errs = append(p.errs, Error{Pos: Pos{File: o.file, Line: o.node.Line, Col: o.node.Column}, Rule: o.rule,
			Msg: fmt.Sprintf("on: unknown event type %q (%s)", t, hint)})
	}
}

// checkNames reports vars.x, secrets.x and env.x that the file does not
// define, once per expression and name.
func (p *parser) checkNames() {
	defined := map[string][]string{
		"vars":    sortedKeys(p.rs.Vars),
		"secrets": sortedKeys(p.rs.Secrets),
		"env":     sortedKeys(p.rs.Env),
	}
	how := map[string]string{"vars": "vars:", "secrets": "secrets:", "env": "env:"}
	for _, r := range p.rs.Rules {
		for _, e := range r.exprs() {
			seen := map[string]bool{}
			for _, ref := range e.names {
				root, name, _ := strings.Cut(ref, ".")
				if seen[ref] || slices.Contains(defined[root], name) {
					continue
				}
				seen[ref] = true
				hint := ""
				if s := spec.Suggest(name, defined[root]); s != "" {
					hint = fmt.Sprintf(" (did you mean %s.%s?)", root, s)
				} else {
					hint = fmt.Sprintf(" (define it under %s, or write %s?.%s for an optional one)", how[root], root, name)
				}
				p.errs = append(p.errs, Error{Pos: e.Pos, Rule: r.Name, Msg: fmt.Sprintf("%s is not defined%s", ref, hint)})
			}
		}
	}
}

// exprs returns every expression of a rule: when, key, and those of its
// steps.
func (r *Rule) exprs() []*Expr {
	out := r.exprsOutsideSteps()
	for _, s := range slices.Concat(r.Steps, r.OnFailure) {
		if s.When != nil {
			out = append(out, s.When)
		}
		if s.Params != nil {
			out = s.Params.exprs(out)
		}
	}
	return out
}

// checkParams hands a step's parameters, as written, to its kind's check
// and reports what it refuses at the parameter's position.
func (p *parser) checkParams(kindNode *yaml.Node, rule, kind, shorthand string) {
	var raw any
	if err := kindNode.Decode(&raw); err != nil {
		p.errorf(kindNode, rule, "%s: the value cannot be read as YAML data", kind)
		return
	}
	params, isMap := raw.(map[string]any)
	if !isMap || kindNode.Kind != yaml.MappingNode {
		params = map[string]any{shorthand: raw}
	}
	for _, err := range p.opts.Actions.Check(kind, params) {
		n, msg := kindNode, fmt.Sprintf("%s: %v", kind, err)
		var pe *spec.Error
		if errors.As(err, &pe) {
			n = nodeAt(kindNode, pe.Path, shorthand, strings.HasPrefix(pe.Msg, "unknown key"))
			switch {
			case strings.HasPrefix(pe.Msg, "unknown key") && !strings.ContainsAny(pe.Path, ".["):
				msg = pe.Msg
			case strings.HasPrefix(pe.Msg, "unknown key"):
				parent := pe.Path[:strings.LastIndexAny(pe.Path, ".[")]
				msg = fmt.Sprintf("%s %s: %s", kind, parent, pe.Msg)
			case pe.Path == "":
				msg = fmt.Sprintf("%s: %s", kind, pe.Msg)
			default:
				msg = fmt.Sprintf("%s %s: %s", kind, pe.Path, pe.Msg)
			}
		}
		p.errorf(n, rule, "%s", msg)
	}
}

// nodeAt finds the node a parameter path (key, key[0].sub) names under a
// step's kind node, or the nearest one that exists. With key set, the key
// node of the last step is returned rather than its value.
func nodeAt(n *yaml.Node, path, shorthand string, key bool) *yaml.Node {
	if path == "" {
		return n
	}
	if n.Kind != yaml.MappingNode { // shorthand: the node is the value of shorthand
		first, rest, _ := strings.Cut(path, ".")
		name, idx, _ := strings.Cut(first, "[")
		if name != shorthand {
			return n
		}
		path = rest
		if idx != "" {
			path = "[" + idx + "." + rest
			path = strings.TrimSuffix(path, ".")
		}
		if path == "" {
			return n
		}
	}
	cur := n
	for _, tok := range splitPath(path) {
		if i, err := strconv.Atoi(tok); err == nil && cur.Kind == yaml.SequenceNode {
			if i < 0 || i >= len(cur.Content) {
				return cur
			}
			cur = cur.Content[i]
			continue
		}
		if cur.Kind != yaml.MappingNode {
			return cur
		}
		found := false
		for j := 0; j+1 < len(cur.Content); j += 2 {
			if cur.Content[j].Value == tok {
				if key && tok == lastToken(path) {
					return cur.Content[j]
				}
				cur, found = cur.Content[j+1], true
				break
			}
		}
		if !found {
			return cur
		}
	}
	return cur
}

// splitPath splits "a[0].b" into a, 0, b.
func splitPath(path string) []string {
	path = strings.NewReplacer("[", ".", "]", "").Replace(path)
	return strings.FieldsFunc(path, func(r rune) bool { return r == '.' })
}

func lastToken(path string) string {
	toks := splitPath(path)
	if len(toks) == 0 {
		return ""
	}
	return toks[len(toks)-1]
}

// describeValue names a value for people, never by its Go type.
func describeValue(v any) string { return spec.Describe(v) }

var retryKeys = []string{"attempts", "backoff", "initial", "max", "jitter"}

// parseRetry reads a retry: mapping, each mistake at its position.
func (p *parser) parseRetry(n *yaml.Node, rule string) spec.Retry {
	var r spec.Retry
	for _, kv := range p.pairs(n, rule, "retry") {
		k, v := kv[0], kv[1]
		switch k.Value {
		case "attempts":
			if err := v.Decode(&r.Attempts); err != nil || v.Tag != "!!int" || r.Attempts < 1 {
				p.errorf(v, rule, "retry attempts %s: want a whole number, at least 1", nodeKind(v))
			}
		case "backoff":
			r.Backoff = v.Value
			if !slices.Contains([]string{"constant", "exponential", "fibonacci"}, v.Value) {
				p.errorf(v, rule, "retry backoff %s: want constant, exponential or fibonacci", nodeKind(v))
			}
		case "initial":
			r.Initial = p.duration(v, rule, "retry initial")
		case "max":
			r.Max = p.duration(v, rule, "retry max")
		case "jitter":
			if err := v.Decode(&r.Jitter); err != nil || (v.Tag != "!!float" && v.Tag != "!!int") || r.Jitter < 0 || r.Jitter > 1 {
				p.errorf(v, rule, "retry jitter %s: want a fraction between 0 and 1, such as 0.2", nodeKind(v))
			}
		default:
			p.errorf(k, rule, "unknown key %q in retry%s", k.Value, spec.DidYouMean(k.Value, retryKeys))
		}
	}
	return r
}

// duration reads a positive duration such as 30s or 5m.
func (p *parser) duration(v *yaml.Node, rule, what string) time.Duration {
	d, err := time.ParseDuration(v.Value)
	if err != nil || d <= 0 || v.Kind != yaml.ScalarNode {
		p.errorf(v, rule, "%s %s: want a duration such as 30s or 5m", what, nodeKind(v))
		return 0
	}
	return d
}

// parseDefaults reads the defaults: section.
func (p *parser) parseDefaults(n *yaml.Node) {
	for _, kv := range p.pairs(n, "", "defaults") {
		k, v := kv[0], kv[1]
		switch k.Value {
		case "timeout":
			p.rs.Defaults.Timeout = p.duration(v, "", "defaults timeout")
		case "retry":
			p.rs.Defaults.Retry = p.parseRetry(v, "")
		default:
			p.errorf(k, "", "unknown key %q in defaults%s", k.Value, spec.DidYouMean(k.Value, []string{"timeout", "retry"}))
		}
	}
	p.rs.Defaults.Retry = p.rs.Defaults.Retry.Merge(DefaultDefaults.Retry)
	if p.rs.Defaults.Timeout == 0 {
		p.rs.Defaults.Timeout = DefaultDefaults.Timeout
	}
}

// unquotedTemplate finds a {{ … }} written without quotes, which YAML reads
// as a mapping whose key is a mapping.
func unquotedTemplate(n *yaml.Node) *yaml.Node {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Kind == yaml.MappingNode {
				return n
			}
			if bad := unquotedTemplate(n.Content[i+1]); bad != nil {
				return bad
			}
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			if bad := unquotedTemplate(c); bad != nil {
				return bad
			}
		}
	}
	return nil
}
