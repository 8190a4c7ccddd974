package rules

import (
	"fmt"
	"slices"

	"github.com/eventfn/eventfn/event"
)

// RenderedStep is a step as it would run: its parameters rendered for one
// event. It is what dry-run prints and rule tests compare.
type RenderedStep struct {
	ID     string         `json:"id,omitempty"`
	Kind   string         `json:"kind"`
	Params map[string]any `json:"params,omitempty"`
	// When is the step's condition, and WhenValue its value (absent when
	// it reads results that are not known in a dry run).
	When      string `json:"when,omitempty"`
	WhenValue *bool  `json:"when_value,omitempty"`
	// Skipped is true when the step's when is false.
	Skipped bool `json:"skipped,omitempty"`
	// Effect is what the step would do (its kind's Preview), when the
	// dry run was given a Preview function and the step's values are known.
	Effect any `json:"effect,omitempty"`
	// Pending names the earlier steps whose results the step reads but the
	// dry run does not know (give them with mocks); no Effect then.
	Pending []string `json:"pending,omitempty"`
	// Error is set when the step could not be rendered.
	Error string `json:"error,omitempty"`
	// Items are a for_each step's runs, one per item (their Params,
	// Skipped and Error), in order.
	Items []RenderedStep `json:"items,omitzero"`
}

// RenderedPlan is a matched rule with its steps rendered.
type RenderedPlan struct {
	Rule      string         `json:"rule"`
	Key       string         `json:"key,omitempty"`
	Steps     []RenderedStep `json:"steps"`
	OnFailure []RenderedStep `json:"on_failure,omitempty"`
	// FailedAt names the step whose mocked result failed the plan.
	FailedAt string `json:"failed_at,omitempty"`
}

// RuleError is a rule whose condition or key could not be evaluated.
type RuleError struct {
	Rule  string `json:"rule"`
	Error string `json:"error"`
}

// DryRunResult is what an event would do.
type DryRunResult struct {
	Plans  []RenderedPlan `json:"plans"`
	Errors []RuleError    `json:"errors,omitempty"`
}

// Mocks give step results by step id, for rendering steps that read
// steps.<id> of earlier ones. A mock with ok: false fails the plan at that
// step (its error field becomes `error`), so on_failure is rendered.
type Mocks map[string]map[string]any

// DryRun renders what ev would do, with no side effects: secrets are
// masked, step results come from mocks, and interpolations of results not
// mocked are shown as their source text.
func (rs *Ruleset) DryRun(ev *event.Event, mocks Mocks) DryRunResult {
	return rs.DryRunWith(ev, DryRunOptions{Mocks: mocks})
}

// PreviewFunc returns the effect a rendered step would have, or the error
// its run would refuse it with (actions.Registry.Preview, adapted).
type PreviewFunc func(s *Step, params map[string]any, p Plan) (any, error)

// DryRunOptions tune DryRunWith.
type DryRunOptions struct {
	// Mocks give the results of steps, by id.
	Mocks Mocks
	// Preview, when set, gives each step's effect; its errors fail the
	// plan at that step, as run would.
	Preview PreviewFunc
}

// DryRunWith is DryRun with a preview of each step's effect.
func (rs *Ruleset) DryRunWith(ev *event.Event, o DryRunOptions) DryRunResult {
	mocks := o.Mocks
	env := rs.Environment(ev, rs.MaskedSecrets())
	plans, failed := rs.Match(ev, env)
	out := DryRunResult{Plans: []RenderedPlan{}}
	for _, v := range failed {
		out.Errors = append(out.Errors, RuleError{Rule: v.Rule.Name, Error: v.Err.Error()})
	}
	for _, p := range plans {
		out.Plans = append(out.Plans, renderPlan(p, mocks, o.Preview))
	}
	return out
}

func renderPlan(p Plan, mocks Mocks, preview PreviewFunc) RenderedPlan {
	env := make(map[string]any, len(p.Env))
	for k, v := range p.Env {
		env[k] = v
	}
	steps := map[string]any{}
	env["steps"] = steps
	rp := RenderedPlan{Rule: p.Rule.Name, Key: p.Key, Steps: []RenderedStep{}}
	failure := ""
	for _, s := range p.Rule.Steps {
		rs := renderOne(s, env, p, preview)
		rp.Steps = append(rp.Steps, rs)
		if rs.Error != "" {
			failure = rs.Error
			rp.FailedAt = s.Label()
			break
		}
		if rs.Skipped && s.ID != "" { // as the executor records a skipped step
			steps[s.ID] = map[string]any{"ok": true, "skipped": true}
			continue
		}
		if m, ok := mocks[s.ID]; ok && s.ID != "" {
			steps[s.ID] = m
			if okv, has := m["ok"]; has && okv == false {
				failure, _ = m["error"].(string)
				if failure == "" {
					failure = "mocked failure"
				}
				rp.FailedAt = s.Label()
				break
			}
		}
	}
	if len(p.Rule.OnFailure) > 0 {
		if failure == "" {
			failure = "<error>"
		}
		env["error"] = failure
		for _, s := range p.Rule.OnFailure {
			rp.OnFailure = append(rp.OnFailure, renderOne(s, env, p, preview))
		}
	}
	return rp
}

func renderOne(s *Step, env map[string]any, p Plan, preview PreviewFunc) RenderedStep {
	if s.ForEach != nil {
		return renderEach(s, env, p, preview)
	}
	params, run, err := RenderStep(s, env, true)
	rs := RenderedStep{ID: s.ID, Kind: s.Kind, Params: params, Skipped: !run && err == nil}
	known, _ := env["steps"].(map[string]any)
	var exprs []*Expr
	if s.When != nil {
		exprs = append(exprs, s.When)
	}
	if s.Params != nil {
		exprs = s.Params.exprs(exprs)
	}
	for _, e := range exprs {
		for _, id := range e.steps {
			if _, ok := known[id]; !ok && !slices.Contains(rs.Pending, id) {
				rs.Pending = append(rs.Pending, id)
			}
		}
	}
	if s.When != nil {
		rs.When = s.When.Src
		if v, err := s.When.Eval(env); err == nil {
			if b, ok := v.(bool); ok {
				rs.WhenValue = &b
			}
		}
	}
	if err != nil {
		rs.Error = err.Error()
		return rs
	}
	if run && preview != nil && len(rs.Pending) == 0 {
		eff, err := preview(s, params, p)
		if err != nil {
			rs.Error = err.Error()
		}
		rs.Effect = eff
	}
	return rs
}

// renderEach renders a for_each step once per item. A list that reads
// results of steps that were not mocked is shown as one item, the
// expression's text.
func renderEach(s *Step, env map[string]any, p Plan, preview PreviewFunc) RenderedStep {
	rs := RenderedStep{ID: s.ID, Kind: s.Kind, Items: []RenderedStep{}}
	items, err := s.ForEachItems(env)
	if err != nil {
		if !s.ForEach.UsesSteps() {
			rs.Error = err.Error()
			return rs
		}
		items = []any{unknownItem{}}
	}
	for i, it := range items {
		one := renderOne(&Step{ID: s.ID, Name: s.Name, Kind: s.Kind, Params: s.Params, When: s.When, Pos: s.Pos}, ItemEnv(env, it, i), p, preview)
		one.ID = ""
		rs.Items = append(rs.Items, one)
		if one.Error != "" && rs.Error == "" {
			rs.Error = fmt.Sprintf("item %d: %s", i, one.Error)
		}
	}
	return rs
}
