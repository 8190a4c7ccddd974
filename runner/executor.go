package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/rules"
	"github.com/eventfn/eventfn/telemetry"
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
//
// The items of a for_each step are remembered too, each under ItemSlot(step,
// item), a negative index: a plan cut off halfway through a for_each runs
// again only the items that had not completed.
type Progress interface {
	// Done returns the recorded result of step i, if it completed before.
	Done(i int) (actions.Result, bool)
	// Record stores the result of step i once it has completed.
	Record(i int, res actions.Result) error
}

// ItemSlot is the Progress index of item of for_each step step: negative,
// so that it is no step's, and distinct for every step below 2³¹ and item
// below 2³² (a for_each list is bounded far below either).
func ItemSlot(step, item int) int { return -1 - (step<<32 | item) }

// items is the Progress of the items of one for_each step (p nil: none).
type items struct {
	p    Progress
	step int
}

// done returns the recorded result of item k, if it completed before.
func (it items) done(k int) (actions.Result, bool) {
	if it.p == nil {
		return nil, false
	}
	return it.p.Done(ItemSlot(it.step, k))
}

// record stores the result of item k once it has completed.
func (it items) record(k int, res actions.Result) error {
	if it.p == nil {
		return nil
	}
	return it.p.Record(ItemSlot(it.step, k), res)
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
	// Tracer starts a span per plan and per step attempt (nil: none).
	Tracer trace.Tracer
	// Redactor masks secrets in span attributes and logged errors.
	Redactor *telemetry.Redactor
	// Emit takes the events emit steps derive from plan's event (nil:
	// emit steps fail with actions.ErrNoEmitter).
	Emit func(ctx context.Context, plan rules.Plan, e actions.Emitted) (string, error)
}

// Execute runs plan. It never panics on bad data: a step that fails to
// render fails the plan like any other failing step.
// The plan runs in a span of its own, a child of the one in ctx.
func (x *Executor) Execute(ctx context.Context, plan rules.Plan, prog Progress) PlanResult {
	return x.execute(ctx, plan, prog, true)
}

// execute is Execute; logPlan false leaves the plan's info line to the
// caller (the runner puts a message's only plan on the message's line).
func (x *Executor) execute(ctx context.Context, plan rules.Plan, prog Progress, logPlan bool) (res PlanResult) {
	r := plan.Rule
	res = PlanResult{Rule: r.Name, Key: plan.Key}
	var span trace.Span // nil when not tracing: see endPlan
	if x.tracing(ctx) {
		ctx, span = x.tracer().Start(ctx, "rule "+r.Name, trace.WithAttributes(AttrRule.String(r.Name), AttrKey.String(plan.Key)))
	}
	defer func() { x.endPlan(ctx, span, res, logPlan) }()
	if x.Emit != nil && emits(r) {
		ctx = actions.WithEmitter(ctx, func(ctx context.Context, e actions.Emitted) (string, error) {
			return x.Emit(ctx, plan, e)
		})
	}
	// Step results live in a copy of the event's environment, made only
	// for a rule whose expressions may read them (NeedsStepResults): the
	// other plans read the shared environment and never write it.
	env, steps := plan.Env, map[string]any(nil)
	if r.NeedsStepResults() {
		env, steps = maps.Clone(plan.Env), map[string]any{}
		env["steps"] = steps
	}
	req := actions.Request{Type: plan.Event.Type, Rule: r.Name, Key: plan.Key, MessageID: plan.Event.ID}
	for i, s := range r.Steps {
		if err := ctx.Err(); err != nil { // stopped between steps: resume here on redelivery
			res.Outcome, res.Err = Interrupted, fmt.Errorf("before step %s: %w", s.Label(), err)
			return res
		}
		if prog != nil {
			if done, ok := prog.Done(i); ok {
				res.Resumed++
				if span != nil {
					span.AddEvent("step resumed", trace.WithAttributes(AttrStep.String(s.Label())))
				}
				if s.ID != "" && steps != nil {
					steps[s.ID] = map[string]any(done)
				}
				continue
			}
		}
		// An emit step is never recorded done (nor its items): its events
		// live in the runner only, so a plan resumed after a stop emits
		// them again, under the same ids (see Runner.emit).
		record := prog
		if s.Kind == "emit" {
			record = nil
		}
		out, err := x.run(ctx, s, env, &req, plan, false, items{p: record, step: i})
		if out != nil {
			// Later steps (and the journal, for a resumed plan) get the
			// result with secrets masked.
			out = actions.Result(x.Redactor.Value(map[string]any(out)).(map[string]any))
		}
		if s.ID != "" && out != nil && steps != nil {
			steps[s.ID] = map[string]any(out)
		}
		if err != nil && ctx.Err() != nil {
			res.Outcome, res.Err = Interrupted, err
			return res
		}
		if err != nil && !s.ContinueOnError {
			res.Outcome, res.Err = Failed, err
			if !strings.HasPrefix(err.Error(), "step "+s.Label()+": ") { // a render error names its step already
				res.Err = fmt.Errorf("step %s: %w", s.Label(), err)
			}
			x.Metrics.StepFailures.WithLabelValues(s.Kind).Inc()
			x.onFailure(ctx, plan, env, res.Err, &req)
			return res
		}
		if err != nil {
			x.Logger.WarnContext(ctx, "step failed, continuing", "rule", r.Name, "step", s.Label(), "error", x.Redactor.Error(err))
		}
		if record != nil {
			if rerr := record.Record(i, out); rerr != nil {
				x.Logger.ErrorContext(ctx, "journal write failed", "rule", r.Name, "step", s.Label(), "error", rerr)
			}
		}
	}
	return res
}

// emits reports whether a step of r (on_failure's too) is an emit step,
// which needs the emitter in its context.
func emits(r *rules.Rule) bool {
	for _, s := range r.Steps {
		if s.Kind == "emit" {
			return true
		}
	}
	for _, s := range r.OnFailure {
		if s.Kind == "emit" {
			return true
		}
	}
	return false
}

// run runs a step: once, or once per item of its for_each, recording each
// item done in prog.
func (x *Executor) run(ctx context.Context, s *rules.Step, env map[string]any, req *actions.Request, plan rules.Plan, onFailure bool, prog items) (actions.Result, error) {
	if s.ForEach == nil {
		return x.step(ctx, s, env, req, plan, onFailure)
	}
	return x.forEach(ctx, s, env, req, plan, onFailure, prog)
}

// forEach runs s once per item of its for_each list, up to
// ForEachConcurrency at once, each item with its own retries and timeout.
// The result's items holds each item's result, in list order. An item
// that fails for good fails the step (the items not started by then do
// not run, and show ok: false), unless the step continues on error, when
// every item runs.
//
// An item that succeeded is recorded in prog (its result with secrets
// masked, as a step's) before the next one starts in its place: when the
// plan is cut off and its message comes again, the items recorded done are
// not run again, their recorded results standing in for them, and the rest
// run. An item that failed is not recorded: it runs again.
func (x *Executor) forEach(ctx context.Context, s *rules.Step, env map[string]any, req *actions.Request, plan rules.Plan, onFailure bool, prog items) (actions.Result, error) {
	list, err := s.ForEachItems(env)
	if err != nil {
		return actions.Result{"ok": false, "error": err.Error(), "items": []any{}}, actions.Permanent(err)
	}
	results := make([]any, len(list))
	errs := make([]error, len(list))
	sem := make(chan struct{}, max(s.ForEachConcurrency, 1))
	var wg sync.WaitGroup
	var failed atomic.Bool
	started, resumed := 0, 0
	for i, it := range list {
		if failed.Load() && !s.ContinueOnError || ctx.Err() != nil {
			break
		}
		if done, ok := prog.done(i); ok {
			results[i] = map[string]any(done)
			started++
			resumed++
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil || failed.Load() && !s.ContinueOnError {
			break
		}
		started++
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r := *req // each item renders its own parameters
			out, err := x.step(ctx, s, rules.ItemEnv(env, it, i), &r, plan, onFailure)
			if err == nil {
				out = actions.Result(x.Redactor.Value(map[string]any(out)).(map[string]any))
				if rerr := prog.record(i, out); rerr != nil {
					x.Logger.ErrorContext(ctx, "journal write failed", "rule", plan.Rule.Name, "step", s.Label(), "item", i, "error", rerr)
				}
			}
			results[i], errs[i] = map[string]any(out), err
			if err != nil {
				failed.Store(true)
			}
		}()
	}
	wg.Wait()
	if resumed > 0 {
		trace.SpanFromContext(ctx).AddEvent("for_each items resumed", trace.WithAttributes(AttrStep.String(s.Label()), attribute.Int("items", resumed)))
		x.Logger.InfoContext(ctx, "for_each resumed after its completed items", "rule", plan.Rule.Name, "step", s.Label(),
			"skipped_items", resumed, "items", len(list))
	}
	var first error
	for i := range list {
		if i >= started && results[i] == nil {
			results[i] = map[string]any{"ok": false, "error": "not run: an earlier item failed", "not_run": true}
			if ctx.Err() != nil {
				results[i] = map[string]any{"ok": false, "error": "not run: " + ctx.Err().Error(), "not_run": true}
			}
		}
		if errs[i] != nil && first == nil {
			first = fmt.Errorf("item %d: %w", i, errs[i])
		}
	}
	if first == nil && started < len(list) && ctx.Err() != nil {
		first = fmt.Errorf("item %d: %w", started, ctx.Err())
	}
	out := actions.Result{"items": results, "count": len(list), "ok": first == nil}
	if first != nil {
		out["error"] = first.Error()
	}
	return out, first
}

// step renders and runs one step. The result always carries ok (and error
// when it failed), so later steps and on_failure can inspect it. Each
// attempt runs in a span, a child of the plan's.
func (x *Executor) step(ctx context.Context, s *rules.Step, env map[string]any, req *actions.Request, plan rules.Plan, onFailure bool) (actions.Result, error) {
	params, run, err := rules.RenderStep(s, env, false)
	if err != nil {
		trace.SpanFromContext(ctx).AddEvent("step render failed", trace.WithAttributes(AttrStep.String(s.Label()),
			attribute.String("exception.message", x.Redactor.Error(err))))
		return actions.Result{"ok": false, "error": err.Error()}, actions.Permanent(err)
	}
	if !run {
		trace.SpanFromContext(ctx).AddEvent("step skipped", trace.WithAttributes(AttrStep.String(s.Label())))
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
	tracing := x.tracing(ctx)
	var attrs []attribute.KeyValue
	if tracing {
		attrs = stepAttrs(s, act, *req, onFailure, x.Redactor)
	}
	out, err := actions.Do(ctx, s.Retry, s.Timeout, func(ctx context.Context, attempt int) (actions.Result, error) {
		var span trace.Span // nil when not tracing
		if tracing {
			ctx, span = x.tracer().Start(ctx, "step "+s.Label(), trace.WithAttributes(attrs...),
				trace.WithAttributes(AttrAttempt.Int(attempt)))
		}
		start := time.Now()
		res, err := act.Run(ctx, *req)
		x.endAttempt(ctx, span, s, act, *req, attempt, res, err, time.Since(start))
		return res, err
	}, func(a actions.Attempt) {
		result := "ok"
		if a.Err != nil {
			result = "error"
			x.Logger.WarnContext(ctx, "step attempt failed", "rule", plan.Rule.Name, "step", s.Label(),
				"kind", s.Kind, "attempt", a.Number, "error", x.Redactor.Error(a.Err), "trace_id", telemetry.TraceID(ctx))
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
	if len(plan.Rule.OnFailure) == 0 {
		return // env may be the event's, shared: see NeedsStepResults
	}
	env["error"] = x.Redactor.Error(cause) // {{ error }} may go to Waldur, which customers read
	steps := env["steps"].(map[string]any)
	for _, s := range plan.Rule.OnFailure {
		out, err := x.run(ctx, s, env, req, plan, true, items{}) // on_failure steps are not recorded
		if s.ID != "" && out != nil {
			steps[s.ID] = x.Redactor.Value(map[string]any(out))
		}
		if err != nil {
			x.Logger.ErrorContext(ctx, "on_failure step failed", "rule", plan.Rule.Name, "step", s.Label(), "error", x.Redactor.Error(err))
			if ctx.Err() != nil {
				return
			}
		}
	}
}

// errInterrupted marks a message whose handling stopped with the runner.
var errInterrupted = errors.New("interrupted by shutdown")

// errDeadLetteredBefore is the reason given when a message that was
// dead-lettered comes back (see FateJournal).
var errDeadLetteredBefore = errors.New("dead-lettered before; its dead-lettering did not reach the broker")

var _ = time.Second
