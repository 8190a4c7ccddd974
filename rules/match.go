package rules

import (
	"fmt"
	"math/bits"
	"slices"

	"github.com/expr-lang/expr/ast"

	"github.com/eventfn/eventfn/event"
)

// Plan is a rule that matched an event: the unit the runner executes.
type Plan struct {
	Rule *Rule
	// Key orders plans: plans with the same key run in arrival order.
	Key   string
	Event *event.Event
	// Env is the expression environment the plan's steps render in.
	Env map[string]any
}

// Verdict says why a rule did or did not match an event.
type Verdict struct {
	Rule    *Rule
	Matched bool
	// When is the value of the rule's condition (true when it has none).
	When any
	// Err is set when the condition or key could not be evaluated.
	Err error
}

// Environment builds the expression environment of an event. secrets holds the
// values of the file's secrets (MaskedSecrets for dry-run).
//
// It holds only the names that some expression of the rules reads
// (conditions, keys, steps' conditions, for_each lists and templates,
// on_failure's too; all of them when one reads $env), found when the rules
// were loaded (readRoots). A name nothing reads would only cost: the
// headers copied into the map (each value boxed into an any, a dozen for a
// STOMP message), type, source and id boxed, and, past eight names, a map
// of several tables instead of one group (BenchmarkEnvironment). A name an
// expression reads is always there, so no expression sees the difference.
func (rs *Ruleset) Environment(ev *event.Event, secrets map[string]any) map[string]any {
	env := make(map[string]any, bits.OnesCount16(uint16(rootAll&^rs.unread)))
	if rs.reads(rootType) {
		env["type"] = ev.Type
	}
	if rs.reads(rootSource) {
		env["source"] = ev.Source
	}
	if rs.reads(rootID) {
		env["id"] = ev.ID
	}
	if rs.reads(rootPayload) {
		payload := ev.Payload
		if payload == nil {
			payload = map[string]any{}
		}
		env["payload"] = payload
	}
	if rs.reads(rootHeaders) {
		headers := make(map[string]any, len(ev.Headers))
		for k, v := range ev.Headers {
			headers[k] = v
		}
		env["headers"] = headers
	}
	if rs.reads(rootVars) {
		env["vars"] = rs.Vars
	}
	if rs.reads(rootEnv) {
		env["env"] = rs.Env
	}
	if rs.reads(rootSecrets) {
		env["secrets"] = secrets
	}
	// steps is not here: a plan whose rule reads step results adds its own
	// (Rule.NeedsStepResults); error is "" until on_failure sets it.
	if rs.reads(rootError) {
		env["error"] = ""
	}
	return env
}

// envRoot is a name of the expression environment that Environment fills.
type envRoot uint16

const (
	rootType envRoot = 1 << iota
	rootSource
	rootID
	rootPayload
	rootHeaders
	rootVars
	rootEnv
	rootSecrets
	rootError
	rootAll = rootError<<1 - 1
)

var rootNames = map[string]envRoot{"type": rootType, "source": rootSource, "id": rootID, "payload": rootPayload,
	"headers": rootHeaders, "vars": rootVars, "env": rootEnv, "secrets": rootSecrets, "error": rootError}

func (r envRoot) has(x envRoot) bool { return r&x != 0 }

// reads reports whether an expression of the rules may read root.
func (rs *Ruleset) reads(root envRoot) bool { return !rs.unread.has(root) }

// readRoots returns the names of the environment that an expression of the
// rules names: every one when an expression names $env or cannot be
// inspected.
func (rs *Ruleset) readRoots() envRoot {
	f := &rootFinder{}
	for _, r := range rs.Rules {
		exprs := r.exprs()
		for _, s := range slices.Concat(r.Steps, r.OnFailure) {
			if s.ForEach != nil {
				exprs = append(exprs, s.ForEach)
			}
		}
		for _, e := range exprs {
			if e == nil || e.program == nil {
				return rootAll // cannot tell: assume it reads everything
			}
			node := e.program.Node()
			ast.Walk(&node, f)
			if f.found == rootAll {
				return rootAll
			}
		}
	}
	return f.found
}

// rootFinder collects the environment names an expression's tree names.
type rootFinder struct{ found envRoot }

func (f *rootFinder) Visit(n *ast.Node) {
	id, ok := (*n).(*ast.IdentifierNode)
	if !ok {
		return
	}
	if id.Value == "$env" {
		f.found = rootAll
		return
	}
	f.found |= rootNames[id.Value]
}

// RulesFor returns the rules that see events of type t, in file order.
func (rs *Ruleset) RulesFor(t string) []*Rule {
	if list, ok := rs.byType[t]; ok {
		return list
	}
	return rs.byType["*"]
}

// indexedRules returns the rules that may match ev: those of its type, less
// the rules whose guard (index.go) its payload already fails.
func (rs *Ruleset) indexedRules(ev *event.Event) []*Rule {
	ix, ok := rs.indexes[ev.Type]
	if !ok {
		ix, ok = rs.indexes["*"]
	}
	if !ok {
		return nil
	}
	return ix.candidates(ev.Payload)
}

// Match returns the plans of the rules whose condition holds for ev, and the
// verdicts of rules whose condition or key failed to evaluate: such a rule
// is an error of that rule, never silently taken as false.
func (rs *Ruleset) Match(ev *event.Event, env map[string]any) (plans []Plan, failed []Verdict) {
	for _, r := range rs.indexedRules(ev) {
		v := r.verdict(env)
		if v.Err != nil {
			failed = append(failed, v)
			continue
		}
		if !v.Matched {
			continue
		}
		key := ""
		if r.Key != nil {
			k, err := r.Key.Eval(env)
			if err != nil {
				failed = append(failed, Verdict{Rule: r, Err: fmt.Errorf("key: %w", err)})
				continue
			}
			key = Stringify(k)
		}
		plans = append(plans, Plan{Rule: r, Key: key, Event: ev, Env: env})
	}
	return plans, failed
}

// Explain returns a verdict for every rule of the event's type.
func (rs *Ruleset) Explain(ev *event.Event, env map[string]any) []Verdict {
	rules := rs.RulesFor(ev.Type)
	out := make([]Verdict, 0, len(rules))
	for _, r := range rules {
		out = append(out, r.verdict(env))
	}
	return out
}

func (r *Rule) verdict(env map[string]any) Verdict {
	if r.When == nil {
		return Verdict{Rule: r, Matched: true, When: true}
	}
	v, err := r.When.Eval(env)
	if err != nil {
		return Verdict{Rule: r, Err: fmt.Errorf("when: %w", err)}
	}
	b, ok := v.(bool)
	if !ok {
		return Verdict{Rule: r, When: v, Err: fmt.Errorf("when: %s gave %s, not true or false", r.When.Src, describeValue(v))}
	}
	return Verdict{Rule: r, Matched: b, When: b}
}

// RenderStep evaluates a step's condition and renders its parameters over
// env. run is false when the step's when is false. With lenient set,
// interpolations of missing step results are left as text (dry-run).
func RenderStep(s *Step, env map[string]any, lenient bool) (params map[string]any, run bool, err error) {
	if s.When != nil {
		v, err := s.When.Eval(env)
		if err != nil {
			if lenient && s.When.unresolved(env) {
				v = true
			} else {
				return nil, false, fmt.Errorf("step %s: when: %w", s.Label(), err)
			}
		}
		if b, ok := v.(bool); !ok {
			return nil, false, fmt.Errorf("step %s: when gave %s, not true or false", s.Label(), describeValue(v))
		} else if !b {
			return nil, false, nil
		}
	}
	params = make(map[string]any, len(s.Params.keys))
	for i, k := range s.Params.keys {
		ctx := ParamContext(s.Kind, k, -1)
		r, err := s.Params.vals[i].RenderIn(env, lenient, ctx, func(i int) Context { return ParamContext(s.Kind, k, i) })
		if err != nil {
			return nil, false, fmt.Errorf("step %s: %s: %w", s.Label(), k, err)
		}
		params[k] = r
	}
	return params, true, nil
}
