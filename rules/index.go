package rules

import (
	"github.com/expr-lang/expr/ast"
	exprparser "github.com/expr-lang/expr/parser"
)

// A guard is what a rule's `when` says about one payload field before
// anything else: `payload.F == "v"`, `payload.F in ["v", "w"]`, or either as
// the leftmost operand of `&&`. When the event's payload holds a string in F
// that is not among the values, the condition is false without an error
// (`&&` stops at its left operand), so the rule need not be evaluated.
type guard struct {
	field  string
	values []string
}

// guardOf finds the guard of a condition, if it has one.
func guardOf(src string) (guard, bool) {
	tree, err := exprparser.Parse(src)
	if err != nil {
		return guard{}, false
	}
	n := tree.Node
	for {
		b, ok := n.(*ast.BinaryNode)
		if !ok {
			return guard{}, false
		}
		switch b.Operator {
		case "&&", "and":
			n = b.Left
			continue
		case "==":
			if f, ok := payloadField(b.Left); ok {
				if s, ok := b.Right.(*ast.StringNode); ok {
					return guard{field: f, values: []string{s.Value}}, true
				}
			}
			if f, ok := payloadField(b.Right); ok {
				if s, ok := b.Left.(*ast.StringNode); ok {
					return guard{field: f, values: []string{s.Value}}, true
				}
			}
		case "in":
			f, ok := payloadField(b.Left)
			arr, isArr := b.Right.(*ast.ArrayNode)
			if !ok || !isArr || len(arr.Nodes) == 0 {
				return guard{}, false
			}
			g := guard{field: f}
			for _, e := range arr.Nodes {
				s, ok := e.(*ast.StringNode)
				if !ok {
					return guard{}, false
				}
				g.values = append(g.values, s.Value)
			}
			return g, true
		}
		return guard{}, false
	}
}

// payloadField recognises payload.F and payload["F"] (not payload?.F: its
// miss is nil, not an error, and nil == "v" is false either way, so it
// could be indexed too, but the plain form is what rules write).
func payloadField(n ast.Node) (string, bool) {
	m, ok := n.(*ast.MemberNode)
	if !ok || m.Optional {
		return "", false
	}
	id, ok := m.Node.(*ast.IdentifierNode)
	if !ok || id.Value != "payload" {
		return "", false
	}
	s, ok := m.Property.(*ast.StringNode)
	if !ok {
		return "", false
	}
	return s.Value, true
}

// typeIndex holds the rules of one event type, and, when several of them
// guard the same payload field, the rules that can match for each value of
// that field, in file order. With it, an order event meets only the rules
// for its order_state however many rules the type has.
type typeIndex struct {
	all []*Rule
	// field is the indexed payload field ("" = none).
	field string
	// byValue lists, per guarded value, the rules guarded by it and the
	// rules without a guard on field; rest the latter alone.
	byValue map[string][]*Rule
	rest    []*Rule
}

// minIndexed is how many rules must guard one field before indexing pays:
// below it, evaluating the conditions costs less than the lookup.
const minIndexed = 4

func newTypeIndex(rules []*Rule) *typeIndex {
	ix := &typeIndex{all: rules}
	guards := make([]guard, len(rules))
	count := map[string]int{}
	for i, r := range rules {
		if r.When == nil {
			continue
		}
		if g, ok := guardOf(r.When.Src); ok {
			guards[i] = g
			count[g.field]++
		}
	}
	best := 0
	for f, n := range count {
		if n > best || (n == best && f < ix.field) {
			ix.field, best = f, n
		}
	}
	if best < minIndexed {
		ix.field = ""
		return ix
	}
	ix.byValue = map[string][]*Rule{}
	for _, g := range guards {
		if g.field == ix.field {
			for _, v := range g.values {
				ix.byValue[v] = nil
			}
		}
	}
	for i, r := range rules {
		if guards[i].field != ix.field {
			ix.rest = append(ix.rest, r)
			for v := range ix.byValue {
				ix.byValue[v] = append(ix.byValue[v], r)
			}
			continue
		}
		for _, v := range guards[i].values {
			if l := ix.byValue[v]; len(l) == 0 || l[len(l)-1] != r { // a value listed twice
				ix.byValue[v] = append(l, r)
			}
		}
	}
	return ix
}

// candidates returns the rules that may match an event with this payload.
// When the field is missing or not a string every rule is returned, so
// that each reports what its condition gives (an error for a missing key).
func (ix *typeIndex) candidates(payload map[string]any) []*Rule {
	if ix.field == "" {
		return ix.all
	}
	s, ok := payload[ix.field].(string)
	if !ok {
		return ix.all
	}
	if l, ok := ix.byValue[s]; ok {
		return l
	}
	return ix.rest
}
