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
	"sort"
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
	return r
}

// SpecsOnly returns the specs of the built-in kinds, for loading rules
// without the means to run them (validate, dry-run).
func SpecsOnly() map[string]Spec { return Standard(Options{}).Specs() }

// decode converts rendered params into a typed struct through JSON, so that
// every kind reads its parameters the same way, with one clear error.
func decode(params map[string]any, out any) error {
	b, err := json.Marshal(params)
	if err != nil {
		return Permanent(fmt.Errorf("parameters: %w", err))
	}
	if err := json.Unmarshal(b, out); err != nil {
		return Permanent(fmt.Errorf("parameters: %w", err))
	}
	return nil
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
