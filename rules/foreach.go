package rules

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// MaxForEachItems bounds the list a for_each may give.
const MaxForEachItems = 10000

// MaxForEachConcurrency bounds for_each_concurrency.
const MaxForEachConcurrency = 64

// parseForEach reads a step's for_each (an expression giving a list,
// written bare or as one "{{ … }}") and for_each_concurrency (default 1).
func (p *parser) parseForEach(k, v *yaml.Node, r *Rule, s *Step) {
	if k.Value == "for_each_concurrency" {
		if err := v.Decode(&s.ForEachConcurrency); err != nil || s.ForEachConcurrency < 1 || s.ForEachConcurrency > MaxForEachConcurrency {
			p.errorf(v, r.Name, "for_each_concurrency %q: want a number from 1 to %d", v.Value, MaxForEachConcurrency)
		}
		return
	}
	if v.Kind != yaml.ScalarNode {
		p.errorf(v, r.Name, "for_each: want an expression giving a list, e.g. for_each: \"{{ steps.list.json }}\"")
		return
	}
	src := strings.TrimSpace(v.Value)
	if strings.HasPrefix(src, "{{") && strings.HasSuffix(src, "}}") && strings.Count(src, "{{") == 1 {
		src = strings.TrimSpace(src[2 : len(src)-2])
	}
	e, err := compileExpr(src, p.pos(v), false)
	if err != nil {
		p.errorf(v, r.Name, "for_each: %v", err)
		return
	}
	if e.items {
		p.errorf(v, r.Name, "for_each: item and index are bound inside the step, not in its for_each")
		return
	}
	s.ForEach = e
}

// checkItems refuses item and index in steps without for_each, and a
// for_each_concurrency without for_each.
func (p *parser) checkItems(n *yaml.Node, r *Rule, s *Step) {
	if s.ForEach != nil {
		if s.ForEachConcurrency == 0 {
			s.ForEachConcurrency = 1
		}
		return
	}
	if s.ForEachConcurrency != 0 {
		p.errorf(n, r.Name, "step %s: for_each_concurrency without for_each", s.Label())
	}
	exprs := s.Params.exprs(nil)
	if s.When != nil {
		exprs = append(exprs, s.When)
	}
	for _, e := range exprs {
		if e.items {
			p.errs = append(p.errs, Error{Pos: e.Pos, Rule: r.Name,
				Msg: fmt.Sprintf("%s: item and index are bound only in steps with for_each", e.Src)})
			return
		}
	}
}

// ForEachItems evaluates a for_each step's list over env.
func (s *Step) ForEachItems(env map[string]any) ([]any, error) {
	v, err := s.ForEach.Eval(env)
	if err != nil {
		return nil, fmt.Errorf("step %s: for_each: %w", s.Label(), err)
	}
	var items []any
	switch l := v.(type) {
	case nil:
	case []any:
		items = l
	case []string:
		for _, x := range l {
			items = append(items, x)
		}
	case []map[string]any:
		for _, x := range l {
			items = append(items, x)
		}
	default:
		return nil, fmt.Errorf("step %s: for_each gave %T, not a list", s.Label(), v)
	}
	if len(items) > MaxForEachItems {
		return nil, fmt.Errorf("step %s: for_each gave %d items (the limit is %d)", s.Label(), len(items), MaxForEachItems)
	}
	return items, nil
}

// ItemEnv returns env with item and index bound, for one item of a
// for_each step.
func ItemEnv(env map[string]any, item any, index int) map[string]any {
	out := make(map[string]any, len(env)+1)
	for k, v := range env {
		out[k] = v
	}
	out[loopVar] = map[string]any{"item": item, "index": index}
	return out
}

// unknownItem is the item of a dry-run for_each whose list reads results
// of steps that did not run: expressions reading it are shown as text.
type unknownItem struct{}

// unresolved reports whether, in a dry-run, the expression's failure over
// env is expected: it reads results of steps that did not run, or an item
// of such a list.
func (e *Expr) unresolved(env map[string]any) bool {
	if len(e.steps) > 0 {
		return true
	}
	loop, _ := env[loopVar].(map[string]any)
	_, unknown := loop["item"].(unknownItem)
	return e.items && unknown
}
