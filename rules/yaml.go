package rules

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// loader accumulates errors while reading one or more files.
type loader struct {
	errs ErrorList
	file string
	// lookup reads environment variables for ${VAR} expansion.
	lookup func(string) (string, bool)
}

func (l *loader) pos(n *yaml.Node) Pos { return Pos{File: l.file, Line: n.Line, Col: n.Column} }

func (l *loader) errorf(n *yaml.Node, rule, format string, args ...any) {
	l.errs = append(l.errs, Error{Pos: l.pos(n), Rule: rule, Msg: fmt.Sprintf(format, args...)})
}

// pairs returns the key/value nodes of a mapping, reporting duplicates.
func (l *loader) pairs(n *yaml.Node, rule, what string) [][2]*yaml.Node {
	if n.Kind != yaml.MappingNode {
		l.errorf(n, rule, "%s must be a mapping, not %s", what, nodeKind(n))
		return nil
	}
	seen := map[string]bool{}
	out := make([][2]*yaml.Node, 0, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if seen[k.Value] {
			l.errorf(k, rule, "duplicate key %q in %s", k.Value, what)
			continue
		}
		seen[k.Value] = true
		out = append(out, [2]*yaml.Node{k, n.Content[i+1]})
	}
	return out
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "empty"
		}
		return fmt.Sprintf("%q", n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "a document"
}

// decodeStrict decodes n into out (a pointer to a struct), reporting keys
// that no field's yaml tag names, at their positions.
func (l *loader) decodeStrict(n *yaml.Node, rule, what string, out any) {
	before := len(l.errs)
	l.checkKeys(n, rule, what, reflect.TypeOf(out).Elem())
	if len(l.errs) > before {
		return
	}
	if err := n.Decode(out); err != nil {
		msg := err.Error()
		msg = strings.TrimPrefix(msg, "yaml: unmarshal errors:\n  ")
		l.errorf(n, rule, "%s: %s", what, msg)
	}
}

func (l *loader) checkKeys(n *yaml.Node, rule, what string, t reflect.Type) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeFor[yaml.Node]() {
		return // kept raw, checked by whoever decodes it
	}
	switch t.Kind() {
	case reflect.Slice:
		if n.Kind == yaml.SequenceNode {
			for _, c := range n.Content {
				l.checkKeys(c, rule, what, t.Elem())
			}
		}
		return
	case reflect.Struct:
	default:
		return
	}
	if n.Kind != yaml.MappingNode {
		return // Decode reports the mismatch
	}
	fields := map[string]reflect.Type{}
	var names []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		fields[name] = f.Type
		names = append(names, name)
	}
	if t.String() == "time.Time" {
		return
	}
	for _, kv := range l.pairs(n, rule, what) {
		ft, ok := fields[kv[0].Value]
		if !ok {
			l.errorf(kv[0], rule, "unknown key %q in %s (known: %s)", kv[0].Value, what, strings.Join(names, ", "))
			continue
		}
		l.checkKeys(kv[1], rule, what+"."+kv[0].Value, ft)
	}
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandEnv replaces ${VAR} in every scalar below n with the variable's
// value, reporting variables that are not set. Only the configuration
// sections (sources, runner, waldur, slurm) are expanded, never rules.
func (l *loader) expandEnv(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode {
		if !strings.Contains(n.Value, "${") {
			return
		}
		n.Value = envRef.ReplaceAllStringFunc(n.Value, func(m string) string {
			name := m[2 : len(m)-1]
			v, ok := l.lookup(name)
			if !ok {
				l.errorf(n, "", "environment variable %s is not set", name)
			}
			return v
		})
		return
	}
	for _, c := range n.Content {
		l.expandEnv(c)
	}
}
