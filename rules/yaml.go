package rules

import (
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// Limits of the loader: a rules file is trusted, but a mistake (or a file
// that is not a rules file at all) must not take the machine down.
const (
	// MaxFileBytes bounds each file read (the main file and each include).
	MaxFileBytes = 8 << 20
	// MaxNodes bounds the YAML nodes of a document once its aliases are
	// expanded (an alias bomb of a few hundred bytes expands to billions).
	MaxNodes = 1 << 20
	// MaxIncludes bounds the files that include: globs may add.
	MaxIncludes = 256
	// maxQuote bounds how much of a file an error message quotes.
	maxQuote = 80
)

// readFileLimited reads at most MaxFileBytes of a file, refusing a larger
// one (or an endless one such as /dev/zero) without reading it all.
func readFileLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxFileBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, MaxFileBytes)
	}
	return b, nil
}

// errTooManyNodes is an alias bomb, or a file far larger than a rules file.
var errTooManyNodes = fmt.Errorf("the document expands to more than %d YAML nodes (aliases, *name, repeat what they point to: nested ones multiply)", MaxNodes)

// checkExpansion counts the nodes of n with every alias expanded, without
// expanding anything (each node's expanded size is computed once), and
// refuses a document larger than MaxNodes. It also refuses an alias that
// contains itself.
func checkExpansion(n *yaml.Node) error {
	sizes := map[*yaml.Node]int{}
	var size func(n *yaml.Node, depth int) (int, error)
	size = func(n *yaml.Node, depth int) (int, error) {
		if n == nil {
			return 0, nil
		}
		if s, ok := sizes[n]; ok {
			if s < 0 {
				return 0, errors.New("an alias refers to a node that contains it")
			}
			return s, nil
		}
		if depth > 10_000 {
			return 0, errors.New("the document is nested more than 10,000 levels")
		}
		sizes[n] = -1 // in progress
		total := 1
		children := n.Content
		if n.Kind == yaml.AliasNode {
			children = []*yaml.Node{n.Alias}
		}
		for _, c := range children {
			s, err := size(c, depth+1)
			if err != nil {
				return 0, err
			}
			total += s
			if total > MaxNodes {
				return 0, errTooManyNodes
			}
		}
		sizes[n] = total
		return total, nil
	}
	_, err := size(n, 0)
	return err
}

// quoteLine quotes at most the first line of s, and at most maxQuote bytes
// of it, so that an error never prints a whole file.
func quoteLine(s string) string {
	cut := false
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s, cut = s[:i], true
	}
	if len(s) > maxQuote {
		s, cut = s[:maxQuote], true
		for len(s) > 0 && s[len(s)-1]&0xc0 == 0x80 { // do not split a UTF-8 sequence
			s = s[:len(s)-1]
		}
		if len(s) > 0 && s[len(s)-1] >= 0xc0 {
			s = s[:len(s)-1]
		}
	}
	q := fmt.Sprintf("%q", s)
	if cut {
		q += "…"
	}
	return q
}

// yamlError is a YAML parser error reduced to one line of bounded length.
func yamlError(err error) string {
	msg := err.Error()
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i] + " …"
	}
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	return strings.ToValidUTF8(msg, "?")
}

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

// DescribeNode says what a YAML node is, for messages: "a mapping", "a
// list", "empty", an alias, or a scalar's value quoted (its first line).
func DescribeNode(n *yaml.Node) string { return nodeKind(n) }

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
		return quoteLine(n.Value)
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
		msg := strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n  ")
		l.errorf(n, rule, "%s: %s", what, yamlError(errors.New(msg)))
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
