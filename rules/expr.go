package rules

import (
	"fmt"
	"strings"
	"sync"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"
	"github.com/expr-lang/expr/vm/runtime"
)

// Expr is a compiled expression of the rules' one expression language, expr.
type Expr struct {
	Src     string
	Pos     Pos
	program *vm.Program
	// steps are the step ids the expression reads (steps.<id>).
	steps []string
	// items is true when the expression reads item or index.
	items bool
	// tainted is true when the expression reads anything but vars, env
	// and secrets: its value may come from the event.
	tainted bool
	// raw is true when the whole expression is raw(...): the rule opts
	// its value out of contextual checks.
	raw bool
	// names are the vars.x, secrets.x and env.x it reads without ?.
	names []string
	// vms holds idle VMs for program: expr.Run allocates a VM and its
	// stack on every run, and a rule's when runs for every event of its
	// type. Pooled per expression, a VM's buffers fit its program.
	vms sync.Pool
	// fast, when set, evaluates the expression (a plain member path) by
	// map lookups, without the VM (fastpath.go). program stays the
	// expression's meaning: the VM runs whenever fast declines.
	fast *fastPath
}

// compileEnv is the shape of the expression environment, for type checks.
// Values are placeholders; only their types matter.
var compileEnv = map[string]any{
	"type":    "",
	"source":  "",
	"id":      "",
	"payload": map[string]any{},
	"headers": map[string]any{},
	"vars":    map[string]any{},
	"env":     map[string]any{},
	"secrets": map[string]any{},
	"steps":   map[string]any{},
	"error":   "",
	// item and index, bound in steps with for_each only (checked at load:
	// see checkItems), are read from here: a value of any type.
	loopVar: map[string]any{},
}

// loopVar holds a for_each step's item and index: the expressions' item
// and index become loopVar.item and loopVar.index.
const loopVar = "__loop"

// strictGet is the function every plain member access (a.b, a["b"]) becomes:
// a key missing from a map is an error instead of a silent nil. Optional
// access (a?.b) keeps expr's own behaviour and yields nil.
func strictGet(params ...any) (any, error) {
	from, key := params[0], params[1]
	if m, ok := from.(map[string]any); ok {
		k, isStr := key.(string)
		if !isStr {
			return nil, fmt.Errorf("cannot index a map with %T", key)
		}
		v, found := m[k]
		if !found {
			return nil, fmt.Errorf("no key %q (use ?. or `??` for optional fields)", k)
		}
		return v, nil
	}
	if from == nil {
		return nil, fmt.Errorf("cannot read %v of nil", key)
	}
	return safeFetch(from, key)
}

func safeFetch(from, key any) (v any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	return runtime.Fetch(from, key), nil
}

// strictPatch rewrites member accesses into strictGet calls and records the
// steps.<id> references.
type strictPatch struct {
	steps []string
	items bool
	names []string
	// optional is true below a ?. chain, where misses must stay nil.
	// tainted is set when an identifier other than the trusted ones
	// (vars, env, secrets, function names) is read.
	tainted bool
	// raws counts raw(...) calls.
	raws int
}

// trustedIdents are the names whose values come from the rules file or the
// site, never from an event.
var trustedIdents = map[string]bool{"vars": true, "env": true, "secrets": true, "raw": true, "__get": true}

func (p *strictPatch) Visit(node *ast.Node) {
	if id, ok := (*node).(*ast.IdentifierNode); ok && (id.Value == "item" || id.Value == "index") {
		p.items = true
		p.tainted = true // an item of a list that may come from the event
		ast.Patch(node, &ast.MemberNode{Node: &ast.IdentifierNode{Value: loopVar}, Property: &ast.StringNode{Value: id.Value}})
		return
	}
	if c, ok := (*node).(*ast.CallNode); ok {
		if id, ok := c.Callee.(*ast.IdentifierNode); ok && id.Value == "raw" {
			p.raws++
		}
	}
	if id, ok := (*node).(*ast.IdentifierNode); ok && !trustedIdents[id.Value] {
		p.tainted = true
	}
	if _, ok := (*node).(*ast.PointerNode); ok {
		p.tainted = true // closure arguments (#) of a tainted list
	}
	m, ok := (*node).(*ast.MemberNode)
	if !ok {
		return
	}
	if id, ok := m.Node.(*ast.IdentifierNode); ok {
		if s, ok := m.Property.(*ast.StringNode); ok {
			switch id.Value {
			case "steps":
				p.steps = append(p.steps, s.Value)
			case "vars", "secrets", "env":
				if !m.Optional {
					p.names = append(p.names, id.Value+"."+s.Value)
				}
			}
		}
	}
	if m.Optional || m.Method {
		return
	}
	ast.Patch(node, &ast.CallNode{
		Callee:    &ast.IdentifierNode{Value: "__get"},
		Arguments: []ast.Node{m.Node, m.Property},
	})
}

func compileExpr(src string, pos Pos, asBool bool) (*Expr, error) {
	src = strings.TrimSpace(src)
	if src == "" {
		return nil, fmt.Errorf("empty expression")
	}
	patch := &strictPatch{}
	opts := []expr.Option{
		expr.Env(compileEnv),
		expr.Function("__get", strictGet),
		expr.Patch(patch),
		expr.Function("raw", rawFunc, new(func(any) any)),
	}
	if asBool {
		opts = append(opts, expr.AsBool())
	}
	prog, err := expr.Compile(src, opts...)
	if err != nil {
		return nil, fmt.Errorf("expression %q: %s", src, oneLine(err.Error()))
	}
	isRaw := patch.raws == 1 && wrapsWhole(src, "raw(")
	if patch.raws > 0 && !isRaw {
		return nil, fmt.Errorf("expression %q: raw(...) must wrap the whole expression, once", src)
	}
	return &Expr{Src: src, Pos: pos, program: prog, steps: patch.steps, tainted: patch.tainted && !isRaw, raw: isRaw, items: patch.items, names: patch.names,
		fast: newFastPath(prog)}, nil
}

// rawFunc is raw(x): x unchanged. The compiler notes it: the value is then
// exempt from the checks of the place it is rendered into.
func rawFunc(params ...any) (any, error) { return params[0], nil }

// Tainted reports whether the expression's value may come from the event
// (it reads more than vars, env and secrets, and is not raw(...)).
func (e *Expr) Tainted() bool { return e.tainted }

// Raw reports whether the expression is raw(...), opted out of escaping.
func (e *Expr) Raw() bool { return e.raw }

// Eval runs the expression over env. It may run concurrently.
func (e *Expr) Eval(env map[string]any) (any, error) {
	if e.fast != nil {
		if v, ok := e.fast.eval(env); ok {
			return v, nil
		}
		// Declined (an error to report, or a value it does not copy):
		// the VM gives the value or the error, text and all.
	}
	return e.evalVM(env)
}

// evalVM runs the expression on expr's VM: Eval without the fast path.
func (e *Expr) evalVM(env map[string]any) (any, error) {
	m, _ := e.vms.Get().(*vm.VM)
	if m == nil {
		m = &vm.VM{}
	}
	v, err := m.Run(e.program, env)
	// Drop references to env's values (the payload) before pooling.
	clear(m.Stack[:cap(m.Stack)])
	clear(m.Variables)
	e.vms.Put(m)
	if err != nil {
		return nil, fmt.Errorf("%s: %s", e.Src, oneLine(err.Error()))
	}
	return v, nil
}

// UsesSteps reports whether the expression reads results of earlier steps.
func (e *Expr) UsesSteps() bool { return len(e.steps) > 0 }

func oneLine(s string) string {
	// expr errors carry a caret drawing on extra lines; keep the first line.
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// wrapsWhole reports whether src is exactly fn(...): the parenthesis that
// fn opens closes at the end of src (string literals skipped).
func wrapsWhole(src, fn string) bool {
	if !strings.HasPrefix(src, fn) || !strings.HasSuffix(src, ")") {
		return false
	}
	depth := 0
	var quote byte
	for i := len(fn) - 1; i < len(src); i++ {
		c := src[i]
		switch {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'' || c == '`':
			quote = c
		case c == '(':
			depth++
		case c == ')':
			depth--
			if depth == 0 {
				return i == len(src)-1
			}
		}
	}
	return false
}
