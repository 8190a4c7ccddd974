package rules

import (
	"reflect"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"
	"github.com/expr-lang/expr/vm/runtime"
)

// fastPath evaluates, without expr's VM, an expression made of plain
// member paths from a root of the environment and constant literals:
// payload.order_uuid, headers["x-foo"], payload?.username ?? "",
// payload.n == 0, (payload?.state ?? "") not in ["done", "erred"],
// vars.prefix + payload.uuid, a && !b || c, payload.limit > 0. Most of the rules' keys,
// conditions and {{ }} are such expressions, and a VM run costs a pooled
// VM and, per member access, strictGet's boxed argument slice.
//
// It is built from the compiled (patched, type-checked, optimised) tree and
// accepted only when the program's bytecode holds nothing but the opcodes
// that tree compiles to, so that what it mirrors is what the VM would run.
// It copies the VM's results only: wherever the VM would fail, or a value
// is of a kind whose handling is not plainly a map lookup (a pointer, a
// struct, a map of another type, a string or list indexed by a key), eval
// reports !ok and Expr.Eval runs the VM, which gives the error (its text
// and position) or the value. A fallback costs a failed lookup and the VM
// run; errors are rare on the hot path.
//
// A fastPath is a node of the expression's tree: a path, a literal, or an
// operator over operands (x, y) that are fastPaths themselves.
type fastPath struct {
	op fastOp
	// root is the environment key a path starts from (item and index
	// read loopVar's).
	root string
	segs []fastSeg
	// chain: the path is an expr chain (it holds a ?.), whose value the VM
	// turns into nil when it is a typed nil (a nil map, say).
	chain bool
	// lit is the literal of ?? or ==, as the compiler pushes it, or the
	// value of opLit.
	lit any
	// x and y are the operands: x of ??, ==, !=, in, not in and !; x and
	// y of +, &&, || and the comparisons.
	x, y *fastPath
	// The constant list of in: set when the optimiser made it a
	// map[string]struct{} (a list of strings only), else list.
	set  map[string]struct{}
	list []any
	// asBool: the program ends in expr's cast to bool (expr.AsBool).
	asBool bool
}

type fastOp uint8

const (
	opPath     fastOp = iota // the path's value
	opLit                    // lit
	opCoalesce               // x ?? lit
	opEqual                  // x == lit
	opNotEqual               // x != lit
	opIn                     // x in [lit, ...]
	opNotIn                  // x not in [lit, ...]
	opAdd                    // x + y, strings only
	opNot                    // !x
	opAnd                    // x && y
	opOr                     // x || y
	opLess                   // x < y, numbers or strings
	opMore                   // x > y
	opLessEq                 // x <= y
	opMoreEq                 // x >= y
)

// fastSeg is one member access of the path.
type fastSeg struct {
	key string
	// strict: a.b, a["b"], compiled to strictGet: a missing key is an
	// error. Else a?.b, or the loopVar's item/index: a missing key is nil.
	strict bool
	// optional: a?.b: when a is nil (or a typed nil), the rest of the
	// innermost chain holding it is skipped and gives nil; end is the
	// index of the segment after that chain.
	optional bool
	end      int
}

// fastOpcodes are the only opcodes the programs of the shapes newFastPath
// accepts compile to. A program with any other is left to the VM: a guard
// against a tree that compiles to something the analysis did not expect
// (OpEqualString on a string-typed root, OpLoadField, a function call,
// the non-short-circuit OpAnd).
var fastOpcodes = map[vm.Opcode]bool{
	vm.OpLoadFast: true, vm.OpPush: true, vm.OpFetch: true, vm.OpCall2: true,
	vm.OpJumpIfNil: true, vm.OpJumpIfNotNil: true, vm.OpPop: true, vm.OpNil: true,
	vm.OpDeref: true, vm.OpEqual: true, vm.OpNot: true, vm.OpCast: true,
	vm.OpTrue: true, vm.OpFalse: true,
	// in over a constant list: the optimiser's constant, or the list
	// built by OpArray (one holding nil is not folded).
	vm.OpIn: true, vm.OpArray: true,
	vm.OpAdd:         true,
	vm.OpJumpIfFalse: true, vm.OpJumpIfTrue: true, // && and ||
	vm.OpLess: true, vm.OpMore: true, vm.OpLessOrEqual: true, vm.OpMoreOrEqual: true,
}

// newFastPath returns the fast path of prog, or nil when prog is not one of
// its shapes.
func newFastPath(prog *vm.Program) *fastPath {
	asBool := false
	for i, op := range prog.Bytecode {
		if !fastOpcodes[op] {
			return nil
		}
		if op == vm.OpCast {
			// expr.AsBool's cast (argument 3, runtime.ToBool), last.
			if prog.Arguments[i] != 3 || i != len(prog.Bytecode)-1 {
				return nil
			}
			asBool = true
		}
	}
	f := build(prog.Node())
	if f == nil || f.op == opLit {
		return nil
	}
	f.asBool = asBool
	return f
}

// build returns the fast path of the tree n, or nil when n is not one of
// its shapes.
func build(n ast.Node) *fastPath {
	switch b := n.(type) {
	case *ast.BinaryNode:
		f := &fastPath{}
		switch b.Operator {
		case "??", "==", "!=":
			lit, ok := literal(b.Right)
			if !ok {
				return nil
			}
			f.op, f.lit = opCoalesce, lit
			if b.Operator != "??" {
				if !isInterface(b.Left.Type()) {
					// Equality of a typed left (type == "x") compiles
					// to OpEqualString or OpEqualInt, which the guard
					// refuses too.
					return nil
				}
				f.op = opEqual
				if b.Operator == "!=" {
					f.op = opNotEqual
				}
			}
		case "in":
			if !f.constList(b.Right) {
				return nil
			}
			f.op = opIn
		case "+":
			f.op = opAdd
			if f.y = build(b.Right); f.y == nil {
				return nil
			}
		case "<", ">", "<=", ">=":
			f.op = compareOps[b.Operator]
			if f.y = build(b.Right); f.y == nil {
				return nil
			}
		case "&&", "and":
			f.op = opAnd
			if f.y = build(b.Right); f.y == nil {
				return nil
			}
		case "||", "or":
			f.op = opOr
			if f.y = build(b.Right); f.y == nil {
				return nil
			}
		default:
			return nil
		}
		if f.x = build(b.Left); f.x == nil {
			return nil
		}
		return f
	case *ast.UnaryNode:
		f := &fastPath{op: opNot}
		switch b.Operator {
		case "!", "not":
			if in, ok := b.Node.(*ast.BinaryNode); ok && in.Operator == "in" {
				// x not in [...] is not (x in [...]).
				if f = build(in); f == nil || f.op != opIn {
					return nil
				}
				f.op = opNotIn
				return f
			}
		default:
			return nil
		}
		if f.x = build(b.Node); f.x == nil {
			return nil
		}
		return f
	}
	if lit, ok := literal(n); ok {
		return &fastPath{op: opLit, lit: lit}
	}
	f := &fastPath{op: opPath}
	_, f.chain = n.(*ast.ChainNode)
	pb := pathBuilder{f: f}
	if !pb.walk(n) || f.root == "" {
		return nil
	}
	return f
}

// constList records the constant list of in, n, as the compiler pushes it:
// the optimiser's map[string]struct{} (strings only) or []any (numbers,
// strings and bools, folded), or the ArrayNode the compiler builds with
// OpArray (one holding nil, or empty). Others are left to the VM.
func (f *fastPath) constList(n ast.Node) bool {
	switch n := n.(type) {
	case *ast.ConstantNode:
		switch v := n.Value.(type) {
		case map[string]struct{}:
			f.set = v
			return true
		case []any:
			for _, e := range v {
				switch e.(type) {
				case nil, string, bool, int, float64:
				default:
					return false
				}
			}
			f.list = v
			return true
		}
	case *ast.ArrayNode:
		f.list = make([]any, 0, len(n.Nodes))
		for _, e := range n.Nodes {
			lit, ok := literal(e)
			if !ok {
				return false
			}
			f.list = append(f.list, lit)
		}
		return true
	}
	return false
}

// compareOps are the comparisons' operators.
var compareOps = map[string]fastOp{"<": opLess, ">": opMore, "<=": opLessEq, ">=": opMoreEq}

func isInterface(t reflect.Type) bool { return t == nil || t.Kind() == reflect.Interface }

// literal returns the value the compiler pushes for a constant node
// (compiler.IntegerNode and its neighbours), for the kinds of constants
// rules write: strings, bools, nil, ints and float64s. Others are left to
// the VM.
func literal(n ast.Node) (any, bool) {
	switch n := n.(type) {
	case *ast.StringNode:
		return n.Value, true
	case *ast.BoolNode:
		return n.Value, true
	case *ast.NilNode:
		return nil, true
	case *ast.IntegerNode:
		// The checker types a literal int; were it retyped (the compiler
		// would push an int64, a float64…), leave it to the VM.
		if n.Type() == nil || n.Type().Kind() == reflect.Int {
			return n.Value, true
		}
	case *ast.FloatNode:
		if n.Type() == nil || n.Type().Kind() == reflect.Float64 {
			return n.Value, true
		}
	case *ast.ConstantNode:
		switch n.Value.(type) {
		case nil, string, bool, int, int64, float64:
			return n.Value, true
		}
	}
	return nil, false
}

// pathBuilder flattens a path's tree into segments, as the compiler
// compiles it: a ?. jumps to the end of the innermost chain being compiled.
type pathBuilder struct {
	f *fastPath
	// chains holds, per chain being walked, its optional segments.
	chains [][]int
}

func (b *pathBuilder) walk(n ast.Node) bool {
	f := b.f
	switch n := n.(type) {
	case *ast.IdentifierNode:
		if _, root := compileEnv[n.Value]; !root {
			return false
		}
		f.root = n.Value
		return true
	case *ast.ChainNode:
		b.chains = append(b.chains, nil)
		if !b.walk(n.Node) {
			return false
		}
		for _, i := range b.chains[len(b.chains)-1] {
			f.segs[i].end = len(f.segs)
		}
		b.chains = b.chains[:len(b.chains)-1]
		return true
	case *ast.CallNode: // strictPatch's __get(a, "b")
		id, ok := n.Callee.(*ast.IdentifierNode)
		if !ok || id.Value != "__get" || len(n.Arguments) != 2 {
			return false
		}
		key, ok := n.Arguments[1].(*ast.StringNode)
		if !ok || !b.walk(n.Arguments[0]) {
			return false
		}
		f.segs = append(f.segs, fastSeg{key: key.Value, strict: true})
		return true
	case *ast.MemberNode: // a?.b, or item and index (loopVar.item)
		key, ok := n.Property.(*ast.StringNode)
		if !ok || n.Method {
			return false
		}
		if !n.Optional {
			// strictPatch turns every other plain access into __get.
			id, ok := n.Node.(*ast.IdentifierNode)
			if !ok || id.Value != loopVar {
				return false
			}
		}
		if n.Optional && len(b.chains) == 0 {
			return false // the compiler emits no jump outside a chain
		}
		if !b.walk(n.Node) {
			return false
		}
		if n.Optional {
			last := len(b.chains) - 1
			b.chains[last] = append(b.chains[last], len(f.segs))
		}
		f.segs = append(f.segs, fastSeg{key: key.Value, optional: n.Optional})
		return true
	}
	return false
}

// eval returns the expression's value over env, or ok false when the VM
// must run: it would fail, or the case is not one eval copies.
func (f *fastPath) eval(env map[string]any) (v any, ok bool) {
	if v, ok = f.value(env); !ok {
		return nil, false
	}
	if f.asBool {
		switch v.(type) { // runtime.ToBool: nil is false, not a bool fails
		case nil:
			return false, true
		case bool:
		default:
			return nil, false
		}
	}
	return v, true
}

// value is eval without the final cast.
func (f *fastPath) value(env map[string]any) (any, bool) {
	switch f.op {
	case opPath:
		return f.path(env)
	case opLit:
		return f.lit, true
	}
	x, ok := f.x.operand(env)
	if !ok {
		return nil, false
	}
	switch f.op {
	case opCoalesce:
		if isNil(x) { // OpJumpIfNotNil
			return f.lit, true
		}
		return x, true
	case opEqual:
		return runtime.Equal(x, f.lit), true
	case opNotEqual:
		return !runtime.Equal(x, f.lit), true
	case opIn, opNotIn:
		in, ok := f.in(x)
		return in != (f.op == opNotIn), ok
	case opNot:
		b, isBool := x.(bool) // OpNot: not a bool fails
		return !b, isBool
	case opAnd, opOr:
		// OpJumpIfFalse/OpJumpIfTrue: not a bool fails; else the value
		// decides, or is dropped for y's, unchecked.
		b, isBool := x.(bool)
		if !isBool {
			return nil, false
		}
		if b == (f.op == opOr) {
			return b, true
		}
		return f.y.operand(env)
	case opAdd:
		// runtime.Add: string + string concatenates; numbers, times
		// and the errors of other pairs are left to the VM.
		s, isStr := x.(string)
		if !isStr {
			return nil, false
		}
		y, ok := f.y.operand(env)
		t, isStr := y.(string)
		if !ok || !isStr {
			return nil, false
		}
		return s + t, true
	case opLess, opMore, opLessEq, opMoreEq:
		y, ok := f.y.operand(env)
		if !ok {
			return nil, false
		}
		return compare(f.op, x, y)
	}
	return nil, false
}

// compare is runtime.Less and its neighbours (OpLess…) for the pairs JSON
// gives them: two numbers (int or float64, compared as the VM compares
// them) or two strings. Any other pair (nil, a bool, a time, mixed) is
// left to the VM, which gives its value or its error.
func compare(op fastOp, x, y any) (any, bool) {
	switch x.(type) {
	case int, float64:
		switch y.(type) {
		case int, float64:
		default:
			return nil, false
		}
	case string:
		if _, isStr := y.(string); !isStr {
			return nil, false
		}
	default:
		return nil, false
	}
	switch op {
	case opLess:
		return runtime.Less(x, y), true
	case opMore:
		return runtime.More(x, y), true
	case opLessEq:
		return runtime.LessOrEqual(x, y), true
	}
	return runtime.MoreOrEqual(x, y), true
}

// operand is value as an operator's operand: the VM dereferences it first
// (OpDeref); pointers are left to it.
func (f *fastPath) operand(env map[string]any) (any, bool) {
	v, ok := f.value(env)
	if !ok || v != nil && isPointer(v) {
		return nil, false
	}
	return v, true
}

// in is runtime.In over the constant list, for the needles it plainly
// handles. Over the optimiser's map[string]struct{} (reflect's MapIndex)
// a nil needle looks up "", a string itself, and any other panics: the VM
// reports the error. Over a list each element is compared by
// runtime.Equal (1 == 1.0, nil equals a typed nil).
func (f *fastPath) in(x any) (bool, bool) {
	if f.set != nil {
		switch x := x.(type) {
		case nil:
			_, found := f.set[""]
			return found, true
		case string:
			_, found := f.set[x]
			return found, true
		}
		return false, false
	}
	for _, e := range f.list {
		if runtime.Equal(e, x) {
			return true, true
		}
	}
	return false, true
}

// path returns the path's value over env, or ok false when the VM must
// run.
func (f *fastPath) path(env map[string]any) (any, bool) {
	cur := env[f.root] // OpLoadFast
	for i := 0; i < len(f.segs); i++ {
		s := &f.segs[i]
		if s.optional && isNil(cur) { // OpJumpIfNil: the value stays
			i = s.end - 1
			continue
		}
		m, isMap := cur.(map[string]any)
		if !isMap {
			// strictGet: nil is an error, others go to runtime.Fetch,
			// as do ?. and item: a string or list indexed by a
			// key is an error, structs and other maps are not plain.
			return nil, false
		}
		x, found := m[s.key]
		if !found && s.strict {
			return nil, false // strictGet: no key
		}
		cur = x // a missing key of ?. is nil (runtime.Fetch)
	}
	if f.chain && isNil(cur) {
		cur = nil // ChainNode: a typed nil becomes nil
	}
	return cur, true
}

// isNil is runtime.IsNil, without reflection for JSON's types.
func isNil(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case string, bool, float64, int:
		return false
	case map[string]any:
		return t == nil
	case []any:
		return t == nil
	}
	return runtime.IsNil(v)
}

// isPointer reports whether v is a value OpDeref would change.
func isPointer(v any) bool {
	switch v.(type) {
	case string, bool, float64, int, map[string]any, []any:
		return false
	}
	return reflect.TypeOf(v).Kind() == reflect.Pointer
}
