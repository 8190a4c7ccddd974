package rules

import (
	"fmt"

	"github.com/eventfn/eventfn/event"
)

// Candidate is a rule that may match an event, with its key evaluated
// first: the runner orders by the key at once, and evaluates the
// condition later, in its worker pool, so that an expensive condition
// holds up only the events of its own key.
type Candidate struct {
	Rule *Rule
	// Key orders the rule's plan, as Plan.Key.
	Key string
	// keyErr is the key's evaluation error: it is the rule's error only if
	// the condition holds (as in Match, which evaluates the key only then).
	keyErr error
}

// Candidates returns the rules that see ev and may match it (the index
// leaves out those whose guarding equality ev's payload already fails), in
// file order, each with its
// key evaluated over env. A key that cannot be evaluated gives the empty
// key; Match reports the error if the condition holds.
func (rs *Ruleset) Candidates(ev *event.Event, env map[string]any) []Candidate {
	rules := rs.indexedRules(ev) // less those whose guard ev fails (index.go)
	out := make([]Candidate, 0, len(rules))
	for _, r := range rules {
		c := Candidate{Rule: r}
		if r.Key != nil {
			k, err := r.Key.Eval(env)
			if err != nil {
				c.keyErr = fmt.Errorf("key: %w", err)
			} else {
				c.Key = Stringify(k)
			}
		}
		out = append(out, c)
	}
	return out
}

// Match evaluates the candidate's condition: the plan when it holds,
// matched false when it does not, or the error of its condition or key.
// The same as Ruleset.Match, for one rule.
func (c Candidate) Match(ev *event.Event, env map[string]any) (plan Plan, matched bool, err error) {
	v := c.Rule.verdict(env)
	switch {
	case v.Err != nil:
		return Plan{}, false, v.Err
	case !v.Matched:
		return Plan{}, false, nil
	case c.keyErr != nil:
		return Plan{}, false, c.keyErr
	}
	return Plan{Rule: c.Rule, Key: c.Key, Event: ev, Env: env}, true, nil
}
