package rules

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Value is a step parameter: a literal, a string with {{ expr }}
// interpolations, or a list or map of Values. It is compiled at load and
// rendered per event.
type Value struct {
	Pos  Pos
	lit  any      // a literal without templates
	text []string // literal text around the expressions: len(text) == len(exprs)+1
	expr []*Expr
	list []*Value
	keys []string
	vals []*Value
	kind valueKind
}

type valueKind uint8

const (
	kindLiteral valueKind = iota
	kindTemplate
	kindList
	kindMap
)

// parseTemplate splits s into literal text and {{ expr }} parts.
func parseTemplate(s string, pos Pos) (*Value, error) {
	if !strings.Contains(s, "{{") {
		return &Value{Pos: pos, lit: s}, nil
	}
	v := &Value{Pos: pos, kind: kindTemplate}
	rest := s
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			v.text = append(v.text, rest)
			break
		}
		j := strings.Index(rest[i:], "}}")
		if j < 0 {
			return nil, fmt.Errorf("unclosed {{ in %q", s)
		}
		v.text = append(v.text, rest[:i])
		e, err := compileExpr(rest[i+2:i+j], pos, false)
		if err != nil {
			return nil, err
		}
		v.expr = append(v.expr, e)
		rest = rest[i+j+2:]
	}
	return v, nil
}

// exprs returns every expression in the value tree.
func (v *Value) exprs(out []*Expr) []*Expr {
	out = append(out, v.expr...)
	for _, c := range v.list {
		out = c.exprs(out)
	}
	for _, c := range v.vals {
		out = c.exprs(out)
	}
	return out
}

// Keys returns the keys of a map value, in file order.
func (v *Value) Keys() []string { return v.keys }

// Get returns the value of key k of a map value.
func (v *Value) Get(k string) (*Value, bool) {
	for i, key := range v.keys {
		if key == k {
			return v.vals[i], true
		}
	}
	return nil, false
}

// Render evaluates the value over env. A string that is exactly one
// {{ expr }} keeps the expression's type; other templates become strings.
// When lenient is set, an interpolation that fails because it reads a step
// result not present in env is kept as its source text (dry-run).
func (v *Value) Render(env map[string]any, lenient bool) (any, error) {
	switch v.kind {
	case kindLiteral:
		return v.lit, nil
	case kindList:
		out := make([]any, len(v.list))
		for i, c := range v.list {
			r, err := c.Render(env, lenient)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	case kindMap:
		out := make(map[string]any, len(v.keys))
		for i, c := range v.vals {
			r, err := c.Render(env, lenient)
			if err != nil {
				return nil, err
			}
			out[v.keys[i]] = r
		}
		return out, nil
	}
	if len(v.expr) == 1 && v.text[0] == "" && v.text[1] == "" {
		r, err := v.expr[0].Eval(env)
		if err != nil {
			if lenient && v.expr[0].unresolved(env) {
				return "{{ " + v.expr[0].Src + " }}", nil
			}
			return nil, err
		}
		return jsonSafe(r), nil
	}
	var b strings.Builder
	for i, e := range v.expr {
		b.WriteString(v.text[i])
		r, err := e.Eval(env)
		if err != nil {
			if lenient && e.unresolved(env) {
				b.WriteString("{{ " + e.Src + " }}")
				continue
			}
			return nil, err
		}
		b.WriteString(Stringify(r))
	}
	b.WriteString(v.text[len(v.text)-1])
	return b.String(), nil
}

// jsonSafe turns the maps with non-string keys that some expr functions
// return (fromPairs, groupBy) into map[string]any, so that every rendered
// value encodes as JSON, as actions and dry-run need. Values that need no
// change are returned as they are (they may be shared, e.g. vars).
func jsonSafe(v any) any {
	out, _ := safeValue(v)
	return out
}

func safeValue(v any) (any, bool) {
	switch t := v.(type) {
	case map[any]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			out[Stringify(k)], _ = safeValue(x)
		}
		return out, true
	case map[string]any:
		var out map[string]any
		for k, x := range t {
			if y, changed := safeValue(x); changed {
				if out == nil {
					out = make(map[string]any, len(t))
					for k2, x2 := range t {
						out[k2] = x2
					}
				}
				out[k] = y
			}
		}
		if out != nil {
			return out, true
		}
	case []any:
		var out []any
		for i, x := range t {
			if y, changed := safeValue(x); changed {
				if out == nil {
					out = append([]any(nil), t...)
				}
				out[i] = y
			}
		}
		if out != nil {
			return out, true
		}
	}
	return v, false
}

// Stringify formats a value for interpolation into a string: strings as
// they are, numbers and booleans plainly, nil as "", lists and maps as JSON.
func Stringify(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case nil:
		return ""
	case bool:
		return strconv.FormatBool(t)
	case int:
		return strconv.Itoa(t)
	case int64:
		return strconv.FormatInt(t, 10)
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64)
	case fmt.Stringer:
		return t.String()
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
