// Package spec holds what the rules loader and the action kinds share: the
// definition of an action kind's parameters (for checks, the JSON Schema and
// the reference), the errors a kind's Check returns, the retry policy of a
// step, and "did you mean" suggestions. It imports nothing of eventfn, so
// that rules need not import actions.
package spec

import (
	"fmt"
	"sort"
	"strings"
)

// Type is the type of a parameter, as people write it in YAML.
type Type string

// The parameter types.
const (
	String      Type = "string"
	Integer     Type = "integer"
	Boolean     Type = "boolean"
	Duration    Type = "duration"
	List        Type = "list"
	StringList  Type = "list of strings"
	IntegerList Type = "list of integers"
	Mapping     Type = "mapping"
	StringMap   Type = "mapping of strings"
	Any         Type = "any"
)

// Param defines one parameter of an action kind.
type Param struct {
	// Name is the YAML key.
	Name string
	// Type is what the value must be once rendered.
	Type Type
	// Required parameters must be present.
	Required bool
	// Default is the value used when the key is absent, as text ("" = none).
	Default string
	// Enum, when set, lists the values allowed (case-insensitive).
	Enum []string
	// Doc says what the parameter does, in one sentence.
	Doc string
	// Example is a value in YAML flow syntax.
	Example string
}

// Field documents one key of a kind's result (steps.<id>.<key>).
type Field struct {
	Name string
	Type Type
	Doc  string
}

// Definition describes an action kind: its parameters, shorthand, result
// and an example. The loader checks steps against it; `eventfn schema` and
// `eventfn docs` are generated from it.
type Definition struct {
	// Kind is the step key that selects the kind (exec, webhook, …).
	Kind string
	// Doc says what the kind does, in a sentence or two.
	Doc string
	// Shorthand is the parameter that a scalar or list value stands for
	// (`exec: [ls, -l]` is `exec: {argv: [ls, -l]}`); "" for none.
	Shorthand string
	// Params are the parameters, in documentation order.
	Params []Param
	// Result lists the keys of the kind's result.
	Result []Field
	// Example is a whole step in YAML flow syntax.
	Example string
	// InProcess marks a kind that runs inside eventfn and never waits for
	// anything outside it (log): its steps get no default timeout, so
	// they cost no timer, unless the rule sets timeout: itself.
	InProcess bool
}

// Param returns the parameter named name.
func (d Definition) Param(name string) (Param, bool) {
	for _, p := range d.Params {
		if p.Name == name {
			return p, true
		}
	}
	return Param{}, false
}

// Keys returns the parameter names, in definition order.
func (d Definition) Keys() []string {
	out := make([]string, len(d.Params))
	for i, p := range d.Params {
		out[i] = p.Name
	}
	return out
}

// Catalog is what the rules loader needs of the action kinds: their
// definitions and their load-time checks. actions.Registry implements it.
type Catalog interface {
	// Definitions returns every kind's definition, sorted by kind.
	Definitions() []Definition
	// Definition returns the definition of one kind.
	Definition(kind string) (Definition, bool)
	// Check reports everything the kind's run would refuse in params, as
	// far as it can be known before any event: params hold the step's
	// values as written, strings containing {{ being unknown until
	// rendered. Errors that concern one parameter are *Error with its Path.
	Check(kind string, params map[string]any) []error
}

// Error is a problem with one parameter of a step.
type Error struct {
	// Path names the parameter: "method", "batch[0].path", "" for the
	// step's parameters as a whole.
	Path string
	// Msg says what is wrong, for people (no Go type names).
	Msg string
}

func (e *Error) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// Errorf returns an *Error for the parameter at path.
func Errorf(path, format string, args ...any) *Error {
	return &Error{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// IsTemplate reports whether v is a string holding {{ }}: a value known
// only once rendered, which load-time checks leave alone.
func IsTemplate(v any) bool {
	s, ok := v.(string)
	return ok && strings.Contains(s, "{{")
}

// Describe names the kind of a YAML value for people: "a string", "a
// list", "a mapping", "a number", "true or false", "empty".
func Describe(v any) string {
	switch t := v.(type) {
	case nil:
		return "empty"
	case string:
		return fmt.Sprintf("the string %.60q", t)
	case bool:
		return fmt.Sprintf("%v", t)
	case int, int64, uint64, float64, float32:
		return fmt.Sprintf("the number %v", t)
	case []any, []string:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return "a value"
}

// Suggest returns the candidate nearest to word by edit distance, when it is
// near enough to be a typo (at most a third of the word's length, at least
// one edit), else "".
func Suggest(word string, candidates []string) string {
	best, bestD := "", -1
	for _, c := range candidates {
		d := distance(strings.ToLower(word), strings.ToLower(c))
		if bestD < 0 || d < bestD || d == bestD && c < best {
			best, bestD = c, d
		}
	}
	limit := max(len(word)/3, 1)
	if bestD < 0 || bestD > limit || bestD >= len([]rune(word)) {
		return ""
	}
	return best
}

// DidYouMean returns ` (did you mean "x"?)` for the nearest candidate, or
// ` (known: a, b, c)` when none is near.
func DidYouMean(word string, candidates []string) string {
	if s := Suggest(word, candidates); s != "" {
		return fmt.Sprintf(" (did you mean %q?)", s)
	}
	sorted := append([]string(nil), candidates...)
	sort.Strings(sorted)
	if len(sorted) > 12 {
		sorted = append(sorted[:12], "…")
	}
	return " (known: " + strings.Join(sorted, ", ") + ")"
}

// distance is the Damerau–Levenshtein (optimal string alignment) distance.
func distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
