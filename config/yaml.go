package config

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/eventfn/eventfn/rules"
)

// loader accumulates the problems of one file, each with its position.
type loader struct {
	errs rules.ErrorList
	file string
	// lookup reads environment variables for ${VAR} expansion.
	lookup func(string) (string, bool)
	// unset holds the variables already reported as unset.
	unset map[string]bool
	// poisoned holds the scalars that used an unset variable: their
	// value is not checked again (one error per cause).
	poisoned map[*yaml.Node]bool
}

func (l *loader) pos(n *yaml.Node) rules.Pos {
	return rules.Pos{File: l.file, Line: n.Line, Col: n.Column}
}

func (l *loader) errorf(n *yaml.Node, format string, args ...any) {
	l.errs = append(l.errs, rules.Error{Pos: l.pos(n), Msg: fmt.Sprintf(format, args...)})
}

func (l *loader) parseDoc(src []byte) *yaml.Node {
	// The rules package's parser: the same limits on size and on alias
	// expansion for every file.
	root, errs := rules.ParseDocument(l.file, src)
	l.errs = append(l.errs, errs...)
	return root
}

// pairs returns the key/value nodes of a mapping, reporting duplicates.
func (l *loader) pairs(n *yaml.Node, what string) [][2]*yaml.Node {
	if n.Kind != yaml.MappingNode {
		l.errorf(n, "%s must be a mapping, not %s", what, nodeKind(n))
		return nil
	}
	seen := map[string]bool{}
	out := make([][2]*yaml.Node, 0, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if seen[k.Value] {
			l.errorf(k, "duplicate key %q in %s", k.Value, what)
			continue
		}
		seen[k.Value] = true
		out = append(out, [2]*yaml.Node{k, n.Content[i+1]})
	}
	return out
}

// nodeKind describes a node for a message: the rules package's words, so
// that both halves of the file say it alike.
func nodeKind(n *yaml.Node) string { return rules.DescribeNode(n) }

var durationType = reflect.TypeFor[time.Duration]()

// decodeStrict decodes mapping n into out (a pointer to a struct with
// yaml tags) field by field: a key no field names, and a value of the
// wrong shape, are reported at their positions in words (never a Go type).
func (l *loader) decodeStrict(n *yaml.Node, what string, out any) {
	l.decodeValue(n, what, reflect.ValueOf(out).Elem())
}

func (l *loader) decodeValue(n *yaml.Node, what string, v reflect.Value) {
	if l.poisoned[n] {
		return
	}
	if n.Kind == yaml.AliasNode {
		// Settings have a fixed shape, so following an alias cannot
		// multiply the work beyond the text's size.
		if n.Alias != nil {
			l.decodeValue(n.Alias, what, v)
		}
		return
	}
	t := v.Type()
	switch {
	case t.Kind() == reflect.Pointer:
		if n.Tag == "!!null" {
			return
		}
		p := reflect.New(t.Elem())
		l.decodeValue(n, what, p.Elem())
		v.Set(p)
		return
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			l.errorf(n, "%s must be a mapping, not %s", what, nodeKind(n))
			return
		}
		fields, names := yamlFields(t)
		for _, kv := range l.pairs(n, what) {
			i, ok := fields[kv[0].Value]
			if !ok {
				l.errorf(kv[0], "unknown key %q in %s (known: %s)", kv[0].Value, what, strings.Join(names, ", "))
				continue
			}
			l.decodeValue(kv[1], what+"."+kv[0].Value, v.Field(i))
		}
		return
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			l.errorf(n, "%s must be a list, not %s", what, nodeKind(n))
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, c := range n.Content {
			l.decodeValue(c, fmt.Sprintf("%s[%d]", what, i), s.Index(i))
		}
		v.Set(s)
		return
	}
	if n.Kind != yaml.ScalarNode {
		l.errorf(n, "%s must be %s, not %s", what, want(t), nodeKind(n))
		return
	}
	if t == durationType {
		d, err := time.ParseDuration(n.Value)
		if err != nil {
			l.errorf(n, "%s: %q is not a duration (write e.g. 30s, 5m or 1h)", what, n.Value)
			return
		}
		v.SetInt(int64(d))
		return
	}
	if t.Kind() == reflect.String && n.Tag != "!!str" && n.Tag != "!!null" {
		// 1, true and the like are strings here as they are written.
		v.SetString(n.Value)
		return
	}
	p := reflect.New(t)
	if err := n.Decode(p.Interface()); err != nil {
		l.errorf(n, "%s: %q is not %s", what, n.Value, want(t))
		return
	}
	v.Set(p.Elem())
}

// decodeFields is decodeStrict for a mapping whose keys are checked again
// afterwards: it returns the keys that were refused (unknown, or a value
// of the wrong shape, or one using an unset variable), so that later checks
// of those keys add no knock-on errors.
func (l *loader) decodeFields(n *yaml.Node, what string, out any) map[string]bool {
	bad := map[string]bool{}
	v := reflect.ValueOf(out).Elem()
	t := v.Type()
	fields, names := yamlFields(t)
	for _, kv := range l.pairs(n, what) {
		i, ok := fields[kv[0].Value]
		if !ok {
			l.errorf(kv[0], "unknown key %q in %s (known: %s)", kv[0].Value, what, strings.Join(names, ", "))
			bad[kv[0].Value] = true
			continue
		}
		before := len(l.errs)
		l.decodeValue(kv[1], what+"."+kv[0].Value, v.Field(i))
		if len(l.errs) > before || l.poisonedBelow(kv[1]) {
			bad[kv[0].Value] = true
		}
	}
	return bad
}

// poisonedBelow reports whether n or a node below it used an unset variable.
func (l *loader) poisonedBelow(n *yaml.Node) bool {
	if l.poisoned[n] {
		return true
	}
	for _, c := range n.Content {
		if l.poisonedBelow(c) {
			return true
		}
	}
	return false
}

// want names, for people, what a value of type t looks like.
func want(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	}
	return "a value"
}

// envRef matches ${VAR} and ${VAR:-default}.
var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}`)

// expandEnv replaces ${VAR} in every scalar below n with the variable's
// value, and ${VAR:-default} with the default when VAR is unset or empty.
// A variable left unset is reported once, at its first use. Only the
// configuration sections (sources, runner, waldur, slurm) are expanded,
// never rules.
func (l *loader) expandEnv(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode {
		if !strings.Contains(n.Value, "${") {
			return
		}
		n.Value = envRef.ReplaceAllStringFunc(n.Value, func(m string) string {
			sub := envRef.FindStringSubmatch(m)
			name, hasDefault := sub[1], strings.Contains(m, ":-")
			v, ok := l.lookup(name)
			switch {
			case hasDefault && (!ok || v == ""):
				return sub[2]
			case !ok:
				l.poisoned[n] = true
				if !l.unset[name] {
					l.unset[name] = true
					l.errorf(n, "environment variable %s is not set: set it, give it in a file with --env-file FILE, or write ${%s:-default}", name, name)
				}
			}
			return v
		})
		// A scalar that was quoted for ${…} keeps its type from the
		// value, so that ports and timeouts decode.
		if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) == 0 {
			n.Tag = ""
		}
		return
	}
	for _, c := range n.Content {
		l.expandEnv(c)
	}
}

// yamlFields returns the yaml keys of struct type t (exported fields with a
// yaml tag) with their field indexes, and the keys in field order.
func yamlFields(t reflect.Type) (fields map[string]int, names []string) {
	fields = map[string]int{}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !t.Field(i).IsExported() {
			continue
		}
		fields[name] = i
		names = append(names, name)
	}
	return fields, names
}
