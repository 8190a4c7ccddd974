package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
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

// Render evaluates the value over env as free text (Text context). A
// string that is exactly one {{ expr }} keeps the expression's type; other
// templates become strings. When lenient is set, an interpolation that fails
// because it reads a step result not present in env is kept as its source
// text (dry-run).
func (v *Value) Render(env map[string]any, lenient bool) (any, error) {
	return v.RenderIn(env, lenient, Text, nil)
}

// RenderIn evaluates the value over env for the context ctx: every value
// interpolated from an expression that may read the event (see
// Expr.Tainted) is escaped or checked for ctx, while literal text and
// values of vars, env and secrets are written as they are. elem, when not
// nil, gives the context of each element of a list value (by index); else
// elements take ctx.
func (v *Value) RenderIn(env map[string]any, lenient bool, ctx Context, elem func(int) Context) (any, error) {
	if elem == nil {
		elem = func(int) Context { return ctx }
	}
	switch v.kind {
	case kindLiteral:
		return v.lit, nil
	case kindList:
		out := make([]any, len(v.list))
		for i, c := range v.list {
			r, err := c.RenderIn(env, lenient, elem(i), nil)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	case kindMap:
		out := make(map[string]any, len(v.keys))
		for i, c := range v.vals {
			r, err := c.RenderIn(env, lenient, Text, nil)
			if err != nil {
				return nil, err
			}
			out[v.keys[i]] = r
		}
		return out, nil
	}
	if len(v.expr) == 1 && v.text[0] == "" && v.text[1] == "" {
		e := v.expr[0]
		r, err := e.Eval(env)
		if err != nil {
			if lenient && e.unresolved(env) {
				return "{{ " + e.Src + " }}", nil
			}
			return nil, err
		}
		r = jsonSafe(r)
		if e.tainted {
			if err := checkWhole(r, ctx, elem); err != nil {
				return nil, fmt.Errorf("%s: %w", e.Src, err)
			}
		}
		return r, nil
	}
	// One buffer for the whole string, where growing it as the pieces
	// arrive made three for a message of two uuids or names.
	n := len(v.expr) * pieceGuess
	for _, t := range v.text {
		n += len(t)
	}
	var b strings.Builder
	b.Grow(n)
	trusted := -1 // length of the text before the first event value
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
		s := Stringify(r)
		if e.tainted && ctx != Text {
			if trusted < 0 {
				trusted = b.Len()
			}
			s, err = escapePiece(ctx, b.String(), s)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", e.Src, err)
			}
		}
		b.WriteString(s)
	}
	b.WriteString(v.text[len(v.text)-1])
	out := b.String()
	if ctx == Path && trusted >= 0 {
		if err := underDir(out, out[:trusted]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// pieceGuess is the room a template leaves per interpolated value: a uuid
// (32 hex digits) or a name fits.
const pieceGuess = 32

// Context is the kind of place a step parameter is rendered into. It says
// how a value interpolated from the event is escaped or checked there,
// like html/template does for HTML, so that event data cannot change what
// the rule means. Literal text and values of vars, env and secrets are
// never changed; an expression written as raw(...) is exempt too.
type Context uint8

const (
	// Text is free text: values are written as they are (actions check
	// their own, e.g. control characters in headers).
	Text Context = iota
	// URL is an absolute URL: event values are escaped as a path segment,
	// a query component or a fragment by their position, and may not stand
	// in the scheme, userinfo, host or port (before the first / after ://).
	URL
	// URLPath is a URL path relative to a base (Waldur's /api/): event
	// values are escaped by position as in URL.
	URLPath
	// Path is a file path: event values may not be absolute or hold ".."
	// and the result must stay under the directory its text before the
	// first event value names (which must name one).
	Path
	// Argv is one command-line word: a word that begins with an event
	// value may not begin with "-".
	Argv
	// SlurmArg is a raw sacctmgr/scancel argument: each event value must be
	// a single safe name (letters, digits, _ . @ -; no "=", ",", whitespace;
	// not a sacctmgr keyword such as where, set, and, withassoc).
	SlurmArg
)

var contextNames = [...]string{Text: "text", URL: "url", URLPath: "url path", Path: "path", Argv: "argv", SlurmArg: "slurm argument"}

func (c Context) String() string {
	if int(c) < len(contextNames) {
		return contextNames[c]
	}
	return "context(" + strconv.Itoa(int(c)) + ")"
}

// ParamContext returns the context that parameter param of action kind is
// rendered in; index is the position in a list parameter (-1 for the
// parameter itself). This is the one table of contexts: parameters not
// named here are Text.
func ParamContext(kind, param string, index int) Context {
	switch kind + "." + param {
	case "webhook.url":
		return URL
	case "waldur.path":
		return URLPath
	case "exec.argv":
		if index == 0 { // the program
			return Path
		}
		return Argv
	case "script.args":
		return Argv
	case "script.path", "script.dir", "exec.dir":
		return Path
	case "slurm.args":
		return SlurmArg
	}
	return Text
}

// checkWhole checks a value that is one event expression as a whole: a
// string (or number) as an interpolation with no text before it, a list
// element by element.
func checkWhole(v any, ctx Context, elem func(int) Context) error {
	switch t := v.(type) {
	case []any:
		for i, x := range t {
			if err := checkWhole(x, elem(i), func(int) Context { return Text }); err != nil {
				return fmt.Errorf("element %d: %w", i, err)
			}
		}
		return nil
	case map[string]any, nil, bool:
		return nil
	}
	if ctx == Text {
		return nil
	}
	s := Stringify(v)
	if _, err := escapePiece(ctx, "", s); err != nil {
		return err
	}
	if ctx == URL || ctx == URLPath {
		// escapePiece would have changed it; a whole URL from the event is refused above
		if esc, _ := escapePiece(ctx, "", s); esc != s {
			return fmt.Errorf("%q is not a safe URL path segment", s)
		}
	}
	return nil
}

// escapePiece escapes or checks event value val for ctx, given the text
// written before it.
func escapePiece(ctx Context, prefix, val string) (string, error) {
	switch ctx {
	case URL, URLPath:
		return urlPiece(prefix, val, ctx == URLPath)
	case Path:
		switch {
		case strings.ContainsRune(val, 0):
			return "", errors.New("a path from the event holds a NUL byte")
		case filepath.IsAbs(val):
			return "", fmt.Errorf("path %q from the event is absolute", val)
		case hasDotDot(val):
			return "", fmt.Errorf("path %q from the event holds \"..\"", val)
		case !strings.Contains(prefix, "/"):
			return "", fmt.Errorf("a path built from event values (%q) needs a directory written in the rule before them", val)
		}
		return val, nil
	case Argv:
		if prefix == "" && strings.HasPrefix(val, "-") {
			return "", fmt.Errorf("argument %q from the event starts with \"-\" (would be read as an option; write raw(...) if the rule means it)", val)
		}
		return val, nil
	case SlurmArg:
		if err := safeSlurmName(val); err != nil {
			return "", fmt.Errorf("slurm argument %q from the event: %w", val, err)
		}
		return val, nil
	}
	return val, nil
}

func hasDotDot(p string) bool {
	for _, part := range strings.Split(filepath.ToSlash(p), "/") {
		if part == ".." {
			return true
		}
	}
	return false
}

// underDir checks that path p, cleaned, stays under the directory that
// prefix (the text before the first event value) names.
func underDir(p, prefix string) error {
	dir := filepath.Clean(prefix[:strings.LastIndex(prefix, "/")+1])
	clean := filepath.Clean(p)
	if dir == "/" && strings.HasPrefix(clean, "/") {
		return nil
	}
	if clean != dir && !strings.HasPrefix(clean, dir+string(filepath.Separator)) {
		return fmt.Errorf("path %q leaves %s", p, dir)
	}
	return nil
}

// urlPiece escapes val for its position in a URL whose text so far is
// prefix.
func urlPiece(prefix, val string, relative bool) (string, error) {
	switch {
	case strings.Contains(prefix, "#"):
		return escapeSegment(val), nil
	case strings.Contains(prefix, "?"):
		return url.QueryEscape(val), nil
	}
	if !relative {
		i := strings.Index(prefix, "://")
		if i < 0 || !strings.Contains(prefix[i+3:], "/") {
			return "", fmt.Errorf("value %q from the event would stand in the scheme, host, port or userinfo of the URL (write them in the rule, up to the first /)", val)
		}
	}
	if val == "." || val == ".." {
		return "", fmt.Errorf("path segment %q from the event", val)
	}
	return escapeSegment(val), nil
}

// escapeSegment percent-encodes every byte of s but the unreserved ones
// (RFC 3986: letters, digits, - . _ ~), so that s is one path segment.
func escapeSegment(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

var slurmNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.@-]*$`)

// slurmKeywords are words sacctmgr reads as commands, entities or
// keywords. It accepts abbreviations of five letters or more (witha for
// withassoc), so such a prefix of one is refused too.
var slurmKeywords = strings.Fields(`add create delete remove modify update list show dump load archive
	clear reconfigure shutdown help version where set and or withassoc withcoord withdeleted
	withsubaccounts withrawqos wassoc wcoord wdeleted wsubaccounts wolimits wopinfo woplimits
	noparse parsable parsable2 oneliner immediate readonly quiet verbose names tree format
	account accounts user users association associations cluster clusters qos coordinator
	event events federation problem reservation resource runawayjobs stats transaction tres wckey
	configuration instance`)

// safeSlurmName explains why s is not a single safe SLURM name.
func safeSlurmName(s string) error {
	switch {
	case s == "":
		return errors.New("empty")
	case len(s) > 128:
		return errors.New("longer than 128 bytes")
	case !slurmNameRE.MatchString(s):
		return errors.New("not a single name (letters, digits and _ . @ -; no \"=\", \",\" or whitespace)")
	}
	low := strings.ToLower(s)
	for _, k := range slurmKeywords {
		if low == k || len(low) >= 5 && strings.HasPrefix(k, low) {
			return fmt.Errorf("is the sacctmgr keyword %q (or an abbreviation of it)", k)
		}
	}
	return nil
}

// RawUses returns a notice for every raw(...) in step parameters: the
// places where the rules let event data through unescaped. `validate`
// prints them.
func (rs *Ruleset) RawUses() ErrorList {
	var out ErrorList
	for _, r := range rs.Rules {
		for _, s := range append(append([]*Step(nil), r.Steps...), r.OnFailure...) {
			if s.Params == nil {
				continue
			}
			for i, k := range s.Params.keys {
				for _, e := range s.Params.vals[i].exprs(nil) {
					if e.raw {
						out = append(out, Error{Pos: e.Pos, Rule: r.Name,
							Msg: fmt.Sprintf("notice: %s in %s %s: event data passes unchecked (%s)", e.Src, s.Kind, k, ParamContext(s.Kind, k, 1))})
					}
				}
			}
		}
	}
	return out.sorted()
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
