// Package actions holds the things a rule's steps can do: run a command or a
// script, call a webhook, log, run SLURM commands, call the Waldur API. Each
// kind is a small type behind the Action interface; retries and timeouts are
// applied once, by Do, around any of them.
package actions

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"sort"
	"strconv"
	"strings"
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

// Action is one kind of step.
type Action interface {
	// Run performs the action once. An error is retried by Do unless it is
	// marked Permanent.
	Run(ctx context.Context, req Request) (Result, error)
}

// Spec describes the parameters a kind accepts, so that rules can be checked
// when they load.
type Spec struct {
	// Keys are the parameter names the kind accepts.
	Keys []string
	// Shorthand is the key that a scalar or list value stands for, e.g.
	// `exec: [ls, -l]` means `exec: {argv: [ls, -l]}`. Empty: no shorthand.
	Shorthand string
	// Required are keys that must be present.
	Required []string
}

// Registry maps kind names to their actions.
type Registry struct {
	actions map[string]Action
	specs   map[string]Spec
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{actions: map[string]Action{}, specs: map[string]Spec{}}
}

// Register adds a kind.
func (r *Registry) Register(kind string, spec Spec, a Action) {
	r.actions[kind] = a
	r.specs[kind] = spec
}

// Get returns the action of a kind.
func (r *Registry) Get(kind string) (Action, bool) {
	a, ok := r.actions[kind]
	return a, ok
}

// Specs returns the specs of all registered kinds.
func (r *Registry) Specs() map[string]Spec { return r.specs }

// Kinds returns the registered kind names, sorted.
func (r *Registry) Kinds() []string {
	out := make([]string, 0, len(r.specs))
	for k := range r.specs {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Options configure the standard registry.
type Options struct {
	// Logger receives log steps. Nil means slog.Default().
	Logger *slog.Logger
	// Waldur is the client used by waldur steps; nil leaves the kind
	// registered but failing with a clear error.
	Waldur WaldurCaller
	// Slurm configures slurm steps.
	Slurm SlurmConfig
}

// Standard returns a registry with every built-in kind.
func Standard(opts Options) *Registry {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	r := NewRegistry()
	r.Register("exec", execSpec, &Exec{})
	r.Register("script", scriptSpec, &Script{})
	r.Register("webhook", webhookSpec, NewWebhook())
	r.Register("log", logSpec, &Log{Logger: opts.Logger})
	r.Register("slurm", slurmSpec, NewSlurm(opts.Slurm))
	r.Register("waldur", waldurSpec, &Waldur{Client: opts.Waldur})
	r.Register("emit", emitSpec, Emit{})
	return r
}

// SpecsOnly returns the specs of the built-in kinds, for loading rules
// without the means to run them (validate, dry-run).
func SpecsOnly() map[string]Spec { return Standard(Options{}).Specs() }

// decode copies rendered params into a typed struct (fields named by their
// json tags), so that every kind reads its parameters the same way. Values
// are converted where a person would expect it: a number or a map rendered
// into a string field becomes its text (maps and lists as JSON), a numeric
// string into an int field becomes the number.
func decode(params map[string]any, out any) error {
	if err := assign(reflect.ValueOf(out).Elem(), params, ""); err != nil {
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
			return fmt.Errorf("%s: want an integer, got %T", name(path), src)
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
				return fmt.Errorf("%s: want a list, got %T", name(path), src)
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
			return fmt.Errorf("%s: want a mapping, got %T", name(path), src)
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
			return fmt.Errorf("%s: want a mapping, got %T", name(path), src)
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
	return fmt.Errorf("%s: unsupported parameter type %s", name(path), dst.Type())
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
