// Package actions holds the things a rule's steps can do: run a command or a
// script, call a webhook, log, run SLURM commands, call the Waldur API. Each
// kind is a plug-in (Kind): its definition, load-time Check, Preview,
// Attributes and Run, registered once in Standard; retries and timeouts are
// applied once, by Do, around any of them.
package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/eventfn/eventfn/spec"
)

// Result is what a step returns; later steps read it as steps.<id>.
type Result map[string]any

// Request is one rendered invocation of an action.
type Request struct {
	// Params are the step's rendered parameters: a map whose keys are the
	// kind's Spec keys.
	Params map[string]any
	// EventJSON is the envelope of the event that triggered the plan, for
	// actions that pass it on (script stdin).
	EventJSON []byte
	// Type, Rule, Key and MessageID describe the plan, for actions that pass
	// them on (the EVENTFN_* environment of scripts).
	Type, Rule, Key, MessageID string
}

// Action is the part of a kind that does the work.
type Action interface {
	// Run performs the action once. An error is retried by Do unless it is
	// marked Permanent.
	Run(ctx context.Context, req Request) (Result, error)
}

// Kind is an action kind as a plug-in: its definition (parameters, for the
// loader, the schema and the reference), its load-time check, its preview
// (the exact effect Run would have), the attributes it puts on spans and
// logs, and Run. Each kind is registered once, in Standard.
type Kind interface {
	Action
	// Definition describes the kind's parameters and result.
	Definition() spec.Definition
	// Check reports what Run would refuse in params that can be known
	// before any event, beyond what the definition says (unknown keys,
	// types and enums are checked by the registry from the definition).
	// params are the step's values as written; strings containing {{ are
	// unknown values and are not checked.
	Check(params map[string]any) []error
	// Preview returns the exact effect Run would have for these rendered
	// parameters, without running anything, or the error Run would refuse
	// them with. Secrets are masked as ***.
	Preview(req Request) (Effect, error)
	// Attributes describe a request (res nil) or its result for spans and
	// log lines: the command line, the HTTP method and URL, the exit code
	// or status. The caller masks secrets and bounds lengths.
	Attributes(req Request, res Result) []attribute.KeyValue
}

// Attribute keys that kinds use, OpenTelemetry's semantic conventions
// where they name the thing.
const (
	AttrCommand  = attribute.Key("process.command_line")
	AttrExitCode = attribute.Key("process.exit.code")
	AttrMethod   = attribute.Key("http.request.method")
	AttrURL      = attribute.Key("url.full")
	AttrPath     = attribute.Key("url.path")
	AttrStatus   = attribute.Key("http.response.status_code")
)

// Effect is what a step would do: the commands it would run, the HTTP
// requests it would send, or the line it would log.
type Effect struct {
	Commands []Command     `json:"commands,omitempty" yaml:"commands,omitempty"`
	Requests []HTTPRequest `json:"requests,omitempty" yaml:"requests,omitempty"`
	Log      *LogLine      `json:"log,omitempty" yaml:"log,omitempty"`
	// Emit is the event an emit step would feed back into the runner.
	Emit *EmitPreview `json:"emit,omitempty" yaml:"emit,omitempty"`
}

// EmitPreview is the event an emit step would emit.
type EmitPreview struct {
	Type    string         `json:"type" yaml:"type"`
	Payload map[string]any `json:"payload,omitempty" yaml:"payload,omitempty"`
	Key     string         `json:"key,omitempty" yaml:"key,omitempty"`
}

// Command is one command line a step would run.
type Command struct {
	// Argv is the whole command line, binary first, every option included.
	Argv  []string          `json:"argv" yaml:"argv"`
	Env   map[string]string `json:"env,omitempty" yaml:"env,omitempty"`
	Dir   string            `json:"dir,omitempty" yaml:"dir,omitempty"`
	Stdin string            `json:"stdin,omitempty" yaml:"stdin,omitempty"`
}

// HTTPRequest is one request a step would send; secrets are ***.
type HTTPRequest struct {
	Method  string            `json:"method" yaml:"method"`
	URL     string            `json:"url" yaml:"url"`
	Headers map[string]string `json:"headers,omitempty" yaml:"headers,omitempty"`
	Body    string            `json:"body,omitempty" yaml:"body,omitempty"`
}

// LogLine is the line a log step would write.
type LogLine struct {
	Level   string         `json:"level" yaml:"level"`
	Message string         `json:"message" yaml:"message"`
	Fields  map[string]any `json:"fields,omitempty" yaml:"fields,omitempty"`
}

// Spec is the short form of a definition: keys, shorthand and required
// keys, for kinds registered with FromSpec.
type Spec struct {
	// Keys are the parameter names the kind accepts.
	Keys []string
	// Shorthand is the key that a scalar or list value stands for, e.g.
	// `exec: [ls, -l]` means `exec: {argv: [ls, -l]}`. Empty: no shorthand.
	Shorthand string
	// Required are keys that must be present.
	Required []string
}

// FromSpec makes a Kind of an Action described only by its keys (tests, and
// kinds not yet written as plug-ins): parameters of any type, no checks
// beyond the keys, a preview that shows the parameters, no attributes.
func FromSpec(kind string, s Spec, a Action) Kind {
	def := spec.Definition{Kind: kind, Shorthand: s.Shorthand}
	for _, k := range s.Keys {
		def.Params = append(def.Params, spec.Param{Name: k, Type: spec.Any, Required: slices.Contains(s.Required, k)})
	}
	return specKind{Action: a, def: def}
}

type specKind struct {
	Action
	def spec.Definition
}

func (k specKind) Definition() spec.Definition                     { return k.def }
func (k specKind) Check(map[string]any) []error                    { return nil }
func (k specKind) Attributes(Request, Result) []attribute.KeyValue { return nil }
func (k specKind) Preview(req Request) (Effect, error) {
	return Effect{Log: &LogLine{Level: "info", Message: k.def.Kind + " (no preview)", Fields: req.Params}}, nil
}

// Registry maps kind names to their plug-ins. It implements spec.Catalog.
type Registry struct {
	kinds map[string]Kind
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{kinds: map[string]Kind{}} }

// Register adds a kind under its definition's name, replacing one of the
// same name.
func (r *Registry) Register(k Kind) { r.kinds[k.Definition().Kind] = k }

// Get returns the kind of that name.
func (r *Registry) Get(kind string) (Kind, bool) {
	k, ok := r.kinds[kind]
	return k, ok
}

// Kinds returns the registered kind names, sorted.
func (r *Registry) Kinds() []string {
	out := make([]string, 0, len(r.kinds))
	for k := range r.kinds {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Definitions implements spec.Catalog.
func (r *Registry) Definitions() []spec.Definition {
	out := make([]spec.Definition, 0, len(r.kinds))
	for _, name := range r.Kinds() {
		out = append(out, r.kinds[name].Definition())
	}
	return out
}

// Definition implements spec.Catalog.
func (r *Registry) Definition(kind string) (spec.Definition, bool) {
	k, ok := r.kinds[kind]
	if !ok {
		return spec.Definition{}, false
	}
	return k.Definition(), true
}

// Check implements spec.Catalog: the definition's checks (keys, required
// keys, types, allowed values), then the kind's own.
func (r *Registry) Check(kind string, params map[string]any) []error {
	k, ok := r.kinds[kind]
	if !ok {
		return []error{spec.Errorf("", "unknown action kind %q", kind)}
	}
	errs := CheckDefinition(k.Definition(), params)
	// The kind checks the other keys: one error per cause, none repeated.
	bad := map[string]bool{}
	for _, err := range errs {
		var pe *spec.Error
		if !errors.As(err, &pe) || pe.Path == "" {
			return errs
		}
		bad[rootKey(pe.Path)] = true
	}
	rest := make(map[string]any, len(params))
	for key, v := range params {
		if !bad[key] {
			rest[key] = v
		}
	}
	for _, err := range k.Check(rest) {
		var pe *spec.Error
		if len(bad) > 0 && (!errors.As(err, &pe) || pe.Path == "") {
			continue // may be a knock-on of a key left out
		}
		errs = append(errs, err)
	}
	return errs
}

// rootKey returns the parameter a path starts with: "batch" of "batch[0].path".
func rootKey(path string) string {
	if i := strings.IndexAny(path, ".["); i >= 0 {
		return path[:i]
	}
	return path
}

// Preview returns the effect of a rendered step of that kind.
func (r *Registry) Preview(kind string, req Request) (Effect, error) {
	k, ok := r.kinds[kind]
	if !ok {
		return Effect{}, Permanent(fmt.Errorf("no action of kind %q", kind))
	}
	return k.Preview(req)
}

// Options configure the standard registry.
type Options struct {
	// Logger receives log steps. Nil means slog.Default().
	Logger *slog.Logger
	// Waldur is the client used by waldur steps; nil leaves the kind
	// registered but failing with a clear error.
	Waldur WaldurCaller
	// WaldurURL is the API root waldur steps call, for previews.
	WaldurURL string
	// Slurm configures slurm steps.
	Slurm SlurmConfig
}

// Standard returns a registry with every built-in kind: one line per kind.
func Standard(opts Options) *Registry {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	r := NewRegistry()
	r.Register(&Exec{})
	r.Register(&Script{})
	r.Register(NewWebhook())
	r.Register(&Log{Logger: opts.Logger})
	r.Register(slurmKind{NewSlurm(opts.Slurm)})
	r.Register(waldurKind{Waldur: &Waldur{Client: opts.Waldur}, apiURL: opts.WaldurURL})
	r.Register(Emit{})
	return r
}

// Builtin returns the built-in kinds with no means to reach Waldur, for
// loading rules without running them (validate, dry-run, tests).
func Builtin() *Registry { return Standard(Options{}) }

// decode copies rendered params into a typed struct (fields named by their
// json tags), so that every kind reads its parameters the same way. Values
// are converted where a person would expect it: a number or a map rendered
// into a string field becomes its text (maps and lists as JSON), a numeric
// string into an int field becomes the number.
//
// The built-in kinds' settings structs decode themselves (typedDecoder),
// without reflection; other structs go through reflection.
func decode(p map[string]any, out any) error {
	if td, ok := out.(typedDecoder); ok {
		if err := td.decodeParams(p); err != nil {
			return Permanent(fmt.Errorf("parameters: %w", err))
		}
		return nil
	}
	if err := assign(reflect.ValueOf(out).Elem(), p, ""); err != nil {
		return Permanent(fmt.Errorf("parameters: %w", err))
	}
	return nil
}

func assign(dst reflect.Value, src any, path string) error {
	if src == nil {
		return nil
	}
	switch dst.Kind() {
	case reflect.Interface:
		dst.Set(reflect.ValueOf(src))
		return nil
	case reflect.String:
		dst.SetString(text(src))
		return nil
	case reflect.Bool:
		b, ok := src.(bool)
		if !ok {
			return fmt.Errorf("%s: want true or false, got %v", name(path), src)
		}
		dst.SetBool(b)
		return nil
	case reflect.Int, reflect.Int64:
		switch n := src.(type) {
		case int:
			dst.SetInt(int64(n))
		case int64:
			dst.SetInt(n)
		case float64:
			if n != float64(int64(n)) {
				return fmt.Errorf("%s: want an integer, got %v", name(path), n)
			}
			dst.SetInt(int64(n))
		case string:
			i, err := strconv.Atoi(strings.TrimSpace(n))
			if err != nil {
				return fmt.Errorf("%s: want an integer, got %q", name(path), n)
			}
			dst.SetInt(int64(i))
		default:
			return fmt.Errorf("%s: want an integer, got %s", name(path), spec.Describe(src))
		}
		return nil
	case reflect.Slice:
		list, ok := src.([]any)
		if !ok {
			if ss, ok2 := src.([]string); ok2 {
				list = make([]any, len(ss))
				for i, s := range ss {
					list[i] = s
				}
			} else {
				return fmt.Errorf("%s: want a list, got %s", name(path), spec.Describe(src))
			}
		}
		sl := reflect.MakeSlice(dst.Type(), len(list), len(list))
		for i, e := range list {
			if err := assign(sl.Index(i), e, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		dst.Set(sl)
		return nil
	case reflect.Map:
		m, ok := src.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: want a mapping, got %s", name(path), spec.Describe(src))
		}
		mv := reflect.MakeMapWithSize(dst.Type(), len(m))
		for k, e := range m {
			v := reflect.New(dst.Type().Elem()).Elem()
			if err := assign(v, e, path+"."+k); err != nil {
				return err
			}
			mv.SetMapIndex(reflect.ValueOf(k), v)
		}
		dst.Set(mv)
		return nil
	case reflect.Struct:
		m, ok := src.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: want a mapping, got %s", name(path), spec.Describe(src))
		}
		t := dst.Type()
		for i := 0; i < t.NumField(); i++ {
			tag, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
			if v, ok := m[tag]; ok && tag != "" {
				if err := assign(dst.Field(i), v, strings.TrimPrefix(path+"."+tag, ".")); err != nil {
					return err
				}
			}
		}
		return nil
	case reflect.Pointer:
		v := reflect.New(dst.Type().Elem())
		if err := assign(v.Elem(), src, path); err != nil {
			return err
		}
		dst.Set(v)
		return nil
	}
	return fmt.Errorf("%s: cannot take %s", name(path), spec.Describe(src))
}

func name(path string) string {
	if path == "" {
		return "value"
	}
	return path
}

// text formats a rendered value for a string parameter.
func text(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case bool:
		return strconv.FormatBool(t)
	case int:
		return strconv.Itoa(t)
	case int64:
		return strconv.FormatInt(t, 10)
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// parseJSON returns b decoded when it holds one JSON value, else nil.
func parseJSON(b []byte) any {
	if len(b) == 0 || !json.Valid(b) {
		return nil
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil
	}
	return v
}

// CheckDefinition checks params against a definition: unknown keys (with
// "did you mean"), missing required keys, literal values of the wrong type
// and values outside an enum. Values containing {{ are left alone.
func CheckDefinition(def spec.Definition, params map[string]any) []error {
	var errs []error
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, ok := def.Param(k); !ok {
			errs = append(errs, spec.Errorf(k, "unknown key %q for %s%s", k, def.Kind, spec.DidYouMean(k, def.Keys())))
		}
	}
	for _, p := range def.Params {
		v, present := params[p.Name]
		if !present {
			if p.Required {
				errs = append(errs, spec.Errorf("", "%s needs %s", def.Kind, p.Name))
			}
			continue
		}
		if err := checkType(p.Name, p.Type, v); err != nil {
			errs = append(errs, err)
			continue
		}
		if len(p.Enum) > 0 && !spec.IsTemplate(v) && v != nil {
			s := strings.ToLower(text(v))
			if !slices.ContainsFunc(p.Enum, func(e string) bool { return strings.ToLower(e) == s }) {
				errs = append(errs, spec.Errorf(p.Name, "%q is not one of %s%s", text(v), strings.Join(p.Enum, ", "), suggestOnly(text(v), p.Enum)))
			}
		}
	}
	return errs
}

func suggestOnly(word string, candidates []string) string {
	if s := spec.Suggest(strings.ToUpper(word), candidates); s != "" {
		return fmt.Sprintf(" (did you mean %s?)", s)
	}
	return ""
}

// checkType reports a literal value that cannot be a t once rendered.
func checkType(path string, t spec.Type, v any) error {
	if v == nil || spec.IsTemplate(v) {
		return nil
	}
	bad := func(want string) error { return spec.Errorf(path, "want %s, got %s", want, spec.Describe(v)) }
	scalar := func(x any) bool {
		switch x.(type) {
		case []any, map[string]any:
			return false
		}
		return true
	}
	switch t {
	case spec.String:
		if !scalar(v) {
			return bad("a string")
		}
	case spec.Boolean:
		if _, ok := v.(bool); !ok {
			return bad("true or false")
		}
	case spec.Integer:
		if !isInteger(v) {
			return bad("an integer")
		}
	case spec.Duration:
		s, ok := v.(string)
		if !ok {
			return bad("a duration such as 30s or 5m")
		}
		if _, err := time.ParseDuration(s); err != nil {
			return bad("a duration such as 30s or 5m")
		}
	case spec.List, spec.StringList, spec.IntegerList:
		l, ok := v.([]any)
		if !ok {
			return bad("a list")
		}
		for i, e := range l {
			ep := fmt.Sprintf("%s[%d]", path, i)
			switch {
			case t == spec.StringList && !scalar(e) && !spec.IsTemplate(e):
				return spec.Errorf(ep, "want a string, got %s", spec.Describe(e))
			case t == spec.IntegerList && !spec.IsTemplate(e) && !isInteger(e):
				return spec.Errorf(ep, "want an integer, got %s", spec.Describe(e))
			}
		}
	case spec.Mapping, spec.StringMap:
		m, ok := v.(map[string]any)
		if !ok {
			return bad("a mapping")
		}
		if t == spec.StringMap {
			for k, e := range m {
				if !scalar(e) && !spec.IsTemplate(e) {
					return spec.Errorf(path+"."+k, "want a string, got %s", spec.Describe(e))
				}
			}
		}
	}
	return nil
}

func isInteger(v any) bool {
	switch n := v.(type) {
	case int, int64, uint64:
		return true
	case float64:
		return n == float64(int64(n))
	case string:
		_, err := strconv.Atoi(strings.TrimSpace(n))
		return err == nil || spec.IsTemplate(n)
	}
	return false
}

// literal returns params without the values that hold {{ (unknown until
// rendered), for checks that run a kind's own parsing at load.
func literal(params map[string]any) (map[string]any, bool) {
	out := make(map[string]any, len(params))
	complete := true
	for k, v := range params {
		if hasTemplate(v) {
			complete = false
			continue
		}
		out[k] = v
	}
	return out, complete
}

// hasTemplate reports whether v holds a {{ anywhere.
func hasTemplate(v any) bool {
	switch t := v.(type) {
	case string:
		return spec.IsTemplate(t)
	case []any:
		return slices.ContainsFunc(t, hasTemplate)
	case map[string]any:
		for _, e := range t {
			if hasTemplate(e) {
				return true
			}
		}
	}
	return false
}

// WithRun returns k with its Run replaced by a's (a wrapper that times or
// gates the kind's own Run), everything else unchanged.
func WithRun(k Kind, a Action) Kind { return wrapped{Kind: k, run: a} }

type wrapped struct {
	Kind
	run Action
}

func (w wrapped) Run(ctx context.Context, req Request) (Result, error) { return w.run.Run(ctx, req) }
