package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"time"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/rules"
)

// Outcome is how a plan ended.
type Outcome int

// Plan outcomes.
const (
	// Success: every step ran (or was skipped by its when).
	Success Outcome = iota
	// Failed: a step failed for good; the rule's on_failure steps ran.
	Failed
	// Interrupted: the runner stopped mid-plan; the message must be
	// redelivered and the plan resumed.
	Interrupted
)

func (o Outcome) String() string {
	return [...]string{"success", "failed", "interrupted"}[o]
}

// Progress remembers which steps of a plan completed, so that a redelivered
// message resumes instead of repeating them. A nil Progress remembers nothing.
type Progress interface {
	// Done returns the recorded result of step i, if it completed before.
	Done(i int) (actions.Result, bool)
	// Record stores the result of step i once it has completed.
	Record(i int, res actions.Result) error
}

// PlanResult is what became of one plan.
type PlanResult struct {
	Rule    string
	Key     string
	Outcome Outcome
	// Err is the error that failed or interrupted the plan.
	Err error
	// Resumed counts steps skipped because they had completed before.
	Resumed int
}

// Executor runs plans: steps in order, each through the retry/timeout
// wrapper, then on_failure steps if one fails for good.
type Executor struct {
	Actions *actions.Registry
	Logger  *slog.Logger
	Metrics *Metrics
}

// Execute runs plan. It never panics on bad data: a step that fails to
// render fails the plan like any other failing step.
func (x *Executor) Execute(ctx context.Context, plan rules.Plan, prog Progress) PlanResult {
	r := plan.Rule
	res := PlanResult{Rule: r.Name, Key: plan.Key}
	env := maps.Clone(plan.Env)
	steps := map[string]any{}
	env["steps"] = steps
	req := actions.Request{Type: plan.Event.Type, Rule: r.Name, Key: plan.Key, MessageID: plan.Event.ID}
	for i, s := range r.Steps {
		if prog != nil {
			if done, ok := prog.Done(i); ok {
				res.Resumed++
				if s.ID != "" {
					steps[s.ID] = map[string]any(done)
				}
				continue
			}
		}
		out, err := x.step(ctx, s, env, &req, plan)
		if s.ID != "" && out != nil {
			steps[s.ID] = map[string]any(out)
		}
		if err != nil && ctx.Err() != nil {
			res.Outcome, res.Err = Interrupted, err
			return res
		}
		if err != nil && !s.ContinueOnError {
			res.Outcome, res.Err = Failed, fmt.Errorf("step %s: %w", s.Label(), err)
			x.Metrics.StepFailures.WithLabelValues(s.Kind).Inc()
			x.onFailure(ctx, plan, env, res.Err, &req)
			return res
		}
		if err != nil {
			x.Logger.WarnContext(ctx, "step failed, continuing", "rule", r.Name, "step", s.Label(), "error", err)
		}
		if prog != nil {
			if rerr := prog.Record(i, out); rerr != nil {
				x.Logger.ErrorContext(ctx, "journal write failed", "rule", r.Name, "step", s.Label(), "error", rerr)
			}
		}
	}
	return res
}

// step renders and runs one step. The result always carries ok (and error
// when it failed), so later steps and on_failure can inspect it.
func (x *Executor) step(ctx context.Context, s *rules.Step, env map[string]any, req *actions.Request, plan rules.Plan) (actions.Result, error) {
	params, run, err := rules.RenderStep(s, env, false)
	if err != nil {
		return actions.Result{"ok": false, "error": err.Error()}, actions.Permanent(err)
	}
	if !run {
		return actions.Result{"ok": true, "skipped": true}, nil
	}
	act, ok := x.Actions.Get(s.Kind)
	if !ok {
		return nil, actions.Permanent(fmt.Errorf("no action of kind %q", s.Kind))
	}
	req.Params = params
	if s.Kind == "script" && req.EventJSON == nil {
		req.EventJSON, _ = json.Marshal(plan.Event)
	}
	out, err := actions.Do(ctx, s.Retry, s.Timeout, func(ctx context.Context, attempt int) (actions.Result, error) {
		return act.Run(ctx, *req)
	}, func(a actions.Attempt) {
		result := "ok"
		if a.Err != nil {
			result = "error"
			x.Logger.WarnContext(ctx, "step attempt failed", "rule", plan.Rule.Name, "step", s.Label(),
				"kind", s.Kind, "attempt", a.Number, "error", a.Err)
		}
		x.Metrics.StepAttempts.WithLabelValues(s.Kind, result).Inc()
		x.Metrics.StepLatency.WithLabelValues(s.Kind).Observe(a.Duration.Seconds())
	})
	if out == nil {
		out = actions.Result{}
	}
	out["ok"] = err == nil
	if err != nil {
		out["error"] = err.Error()
	}
	return out, err
}

func (x *Executor) onFailure(ctx context.Context, plan rules.Plan, env map[string]any, cause error, req *actions.Request) {
	env["error"] = cause.Error()
	steps := env["steps"].(map[string]any)
	for _, s := range plan.Rule.OnFailure {
		out, err := x.step(ctx, s, env, req, plan)
		if s.ID != "" && out != nil {
			steps[s.ID] = map[string]any(out)
		}
		if err != nil {
			x.Logger.ErrorContext(ctx, "on_failure step failed", "rule", plan.Rule.Name, "step", s.Label(), "error", err)
			if ctx.Err() != nil {
				return
			}
		}
	}
}

// errInterrupted marks a message whose handling stopped with the runner.
var errInterrupted = errors.New("interrupted by shutdown")

var _ = time.Second
