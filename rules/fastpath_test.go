package rules

import (
	"reflect"
	"slices"
	"testing"

	"github.com/eventfn/eventfn/event"
)

// fastExprs are expressions of the fast path's shapes (fastTaken says
// which must take it), and neighbours of them that must not.
var fastExprs = []string{
	// plain paths, strict
	"payload", "type", "source", "id", "error", "payload.a", "payload.a.b", "payload.a.b.c",
	`payload["a"]`, `payload["a"]["b"]`, `payload.a["b"].c`, "payload.n", "payload.f",
	"payload.s", "payload.list", "payload.nilv", "payload.nilmap", "payload.nilmap.x",
	"payload.s.x", "payload.list.x", "payload.ptr", "payload.strs", "payload.strs.a",
	"payload.obj", "payload.obj.Name", "payload.t", "payload.b",
	"vars.cluster", "vars.missing", "env.HOME", "secrets.token", "steps.s.json.x", "steps.s",
	`headers["x-foo"]`, "headers.destination", "headers.none",
	"item", "index", "item.name", "item.none", "item?.name", "item?.deep?.x",
	// optional chains
	"payload?.a", "payload?.a?.b", "payload?.a.b", "payload?.x.b", "payload?.nilv.b",
	"payload?.nilmap?.x", "payload?.nilmap", "payload?.s?.x", "payload?.list?.x",
	`payload?.["a"]`, `payload?.["a"]?.b`, `payload?.a?.["b"]`, `payload?.a["b"]`, `payload?.x["b"]`,
	`headers?.["x-foo"]`, `headers?.["none"]`, "vars?.missing", "nothere?.x",
	"payload?.ptr", "payload?.strs?.a",
	// ??
	"payload?.username ?? ''", "payload.username ?? ''", "payload?.a?.b ?? 'd'", "payload.nilv ?? 'd'",
	"payload?.nilmap ?? 'd'", "payload.nilmap ?? 'd'", "payload.n ?? 0", "payload?.none ?? 0",
	"payload?.none ?? 1.5", "payload?.none ?? -1", "payload?.none ?? true", "payload?.none ?? false",
	"payload?.none ?? nil", "payload.ptr ?? 'd'", "payload.nilptr ?? 'd'", "payload?.a.b ?? 'd'",
	`headers?.["x-foo"] ?? ''`, "type ?? ''", "item?.name ?? 'd'",
	// == and !=
	"payload.s == 'str'", "payload.s == 'other'", "payload?.s == 'str'", "payload?.none == 'x'",
	"payload.n == 0", "payload.n == 3", "payload.f == 3", "payload.f == 2.5", "payload.n == 3.0",
	"payload?.none == nil", "payload?.nilmap == nil", "payload.b == true", "payload.s != 'str'",
	"payload?.none != nil", "payload?.a != 'x'", "payload.ptr == 'p'", "payload.nilv == nil",
	"payload?.granted ?? false", "payload?.b ?? false", "payload?.s ?? false",
	"payload.list == nil", "payload.a == 'x'", "payload.s.x ?? 'd'",
	"(payload?.s ?? '') != ''", "(payload?.none ?? '') == ''",
	// in and not in over constant lists: strings only (the optimiser's
	// map: nil looks up "", other needles fail), mixed (runtime.Equal per
	// element), holding nil or empty (built by OpArray)
	"payload.s in ['str']", "payload.s in ['a', 'str']", "payload.s not in ['a', 'b']",
	"(payload?.s ?? '') not in ['done', 'str']", "(payload?.order_state ?? '') not in ['done', 'erred', 'canceled']",
	"payload?.none in ['', 'x']", "payload?.none in ['x']", "payload?.none not in ['']", "payload.n in ['x']",
	"payload.n in [1, 3]", "payload.n in [3.0]", "payload.f in [2.5, 'x']", "payload.n not in [1, 2]",
	"payload.b in [true, false]", "payload?.granted in [true, false]", "payload.s in [1, 'str', true]",
	"payload?.none in [nil]", "payload?.none in [1, nil]", "payload.nilmap in [nil, 1]", "payload.nilmap in ['']",
	"payload.nilmap not in ['x']", "payload?.nilmap in ['']", "payload.list in ['x', 1]", "payload.a in [1, 'x']",
	"payload.a in ['x']", "payload.list not in ['x']", "payload.ptr in ['p']", "payload.ptr in ['p', 1]",
	"payload.n in []", "payload.s not in []", "type in ['order', 'x']", "type not in ['order']",
	`headers?.["x-foo"] in ["bar"]`, "item?.name in ['i']", "index in [0, 2]", "payload.obj in ['o']",
	"payload.strs in [nil, 1]", "payload.obj in [nil]", "!(payload.s in ['str'])", "payload.t in ['other', nil]",
	// + over strings (others fall back: numbers add, mixed pairs fail)
	"vars.prefix + payload.s", "payload.a.b + 'x'", "'x' + payload.s + (payload?.none ?? '')",
	"payload.s + payload.t + payload.s", "payload.n + payload.n", "payload.n + 'x'", "payload.s + payload.n",
	"payload?.none + 'x'", "payload.ptr + 'x'", "'x' + payload.ptr", "type + '-' + id",
	"(payload?.username ?? '') + '@' + vars.cluster", "payload.f + 1", "payload.list + payload.list",
	"payload.s + 1", "vars.prefix + payload.s == 'wd_str'", "payload.a.b.c + payload.s",
	"payload.s + payload.s in ['strstr']", "item?.name + index",
	// !, && and || (short-circuit; an operand not a bool fails, the
	// right one's value is the result)
	"!payload.b", "!payload.s", "!payload?.none", "not payload.b", "!(payload?.granted ?? false)",
	"payload.n == 1 && payload.b", "payload.n == 3 && payload.b", "payload.b && payload.s",
	"payload.b || payload.none", "payload.s == 'x' || payload.none", "payload?.none == nil || payload.none",
	"payload.b and payload?.granted", "payload.nilv && true", "payload.ptr && true",
	"(payload?.username ?? '') != '' && payload?.granted in [true, false]", "payload.b && !payload.b || payload.b",
	"payload?.b ?? false || payload.b", "!payload.b || payload.s in ['str']", "payload?.granted && payload.n",
	"payload.b && payload.ptr", "!!payload.b",
	// not fast: operators, functions, dynamic keys, typed roots
	"type == 'order'", "len(payload.list)", "payload.list[0]", `payload[payload.k]`,
	"raw(payload.s)", "payload?.s ?? payload.t",
	"$env.payload.a", "'str' == payload.s",
	"payload.s == payload.t", "payload?.a?.b?.c ?? payload.n",
	"payload.s in payload.list", "payload.s in ['a', payload.t]", "payload.s contains 'x'", "-payload.n",
	"payload.s matches 'x'", "payload.n in 1..3", "payload.n - 1 > 0", "payload.n > len(payload.s)", "type == 'order' && payload.b", "payload.n - 1",
	"lower(vars.prefix + payload.s)", "payload.b ? 'y' : 'n'", "(payload.s in ['str']) == true",
	"payload.s in ['str'] ?? 1", // in (['str'] ?? 1)
	"payload.s || true",         // folded to true: a literal
}

// fastTaken are fastExprs that must compile to a fast path.
var fastTaken = map[string]bool{}

func init() {
	for _, s := range fastExprs[:slices.Index(fastExprs, "type == 'order'")] {
		fastTaken[s] = true
	}
}

type named struct{ Name string }

// fastEnvs are environments the differential test evaluates every
// expression over: missing keys, nil, typed nils, nested maps, lists,
// strings, numbers (int and float64, as the event decoder gives them),
// values that are no JSON (pointers, a struct, a map[string]string).
func fastEnvs() map[string]map[string]any {
	str := "p"
	full := map[string]any{
		"a":        map[string]any{"b": map[string]any{"c": "deep"}},
		"n":        3,
		"f":        2.5,
		"s":        "str",
		"t":        "other",
		"b":        true,
		"granted":  true,
		"k":        "s",
		"username": "alice",
		"list":     []any{"x", 1.0, nil},
		"nilv":     nil,
		"nilmap":   map[string]any(nil),
		"ptr":      &str,
		"nilptr":   (*string)(nil),
		"strs":     map[string]string{"a": "b"},
		"obj":      named{Name: "o"},
	}
	base := func(payload any) map[string]any {
		return map[string]any{
			"type": "order", "source": "bench", "id": "m1", "error": "",
			"payload": payload,
			"headers": map[string]any{"x-foo": "bar", "destination": "/q"},
			"vars":    map[string]any{"cluster": "hpc", "prefix": "wd_"},
			"env":     map[string]any{"HOME": "/root"},
			"secrets": map[string]any{"token": "t0k"},
			"steps":   map[string]any{"s": map[string]any{"json": map[string]any{"x": 1}}},
		}
	}
	with := func(env map[string]any, k string, v any) map[string]any {
		env[k] = v
		return env
	}
	return map[string]map[string]any{
		"full":           base(full),
		"empty payload":  base(map[string]any{}),
		"nil payload":    base(nil),
		"typed nil":      base(map[string]any(nil)),
		"string payload": base("text"),
		"list payload":   base([]any{1, 2}),
		"a is string":    base(map[string]any{"a": "x", "s": 1, "n": 3.0, "f": 3}),
		"a is list":      base(map[string]any{"a": []any{map[string]any{"b": 1}}, "username": nil}),
		"a is nil":       base(map[string]any{"a": nil, "b": "true", "s": nil}),
		"empty strings":  base(map[string]any{"s": "", "t": "", "b": false, "n": 1, "granted": nil, "username": "", "order_state": "done"}),
		"b missing":      base(map[string]any{"a": map[string]any{}, "username": ""}),
		"b nil":          base(map[string]any{"a": map[string]any{"b": nil}, "granted": false}),
		"headers unread": with(base(full), "headers", map[string]any(nil)),
		"headers typed":  with(base(full), "headers", map[string]string{"x-foo": "bar"}),
		"loop":           with(base(full), loopVar, map[string]any{"item": map[string]any{"name": "i", "deep": nil}, "index": 2}),
		"loop nil item":  with(base(full), loopVar, map[string]any{"item": nil, "index": 0}),
		"loop str item":  with(base(full), loopVar, map[string]any{"item": "s", "index": 1}),
		"loop not map":   with(base(full), loopVar, []any{}),
		"only payload":   {"payload": full},
		"no env":         nil,
	}
}

// sameResult reports whether the fast path's result equals the VM's: the
// same value of the same type, the same error text.
func sameResult(fv any, ferr error, vv any, verr error) bool {
	if (ferr == nil) != (verr == nil) || ferr != nil && ferr.Error() != verr.Error() {
		return false
	}
	return reflect.DeepEqual(fv, vv)
}

// TestFastPathMatchesVM evaluates every expression over every environment
// with the fast path and on the VM (evalVM), as a when (expr.AsBool) and as
// a key or template: the value and the error must be the same.
func TestFastPathMatchesVM(t *testing.T) {
	envs := fastEnvs()
	var runs, fast int
	for _, src := range fastExprs {
		for _, asBool := range []bool{false, true} {
			e, err := compileExpr(src, Pos{}, asBool)
			if err != nil {
				continue // not a bool (e.g. `payload.a` is fine, `type` is not)
			}
			if want := fastTaken[src]; (e.fast != nil) != want {
				t.Errorf("%s (bool %v): fast path %v, want %v", src, asBool, e.fast != nil, want)
			}
			for name, env := range envs {
				runs++
				vv, verr := e.evalVM(env)
				if e.fast != nil {
					if _, ok := e.fast.eval(env); ok {
						fast++
					}
				}
				fv, ferr := e.Eval(env)
				if !sameResult(fv, ferr, vv, verr) {
					t.Errorf("%s (bool %v) over %s: fast path %#v, %v; VM %#v, %v", src, asBool, name, fv, ferr, vv, verr)
				}
			}
		}
	}
	// The table must exercise the fast path, not only its fallback.
	if runs < 2000 || fast < runs/4 {
		t.Errorf("%d runs, %d answered by the fast path", runs, fast)
	}
	t.Logf("%d runs, %d answered by the fast path", runs, fast)
}

// TestFastPathAnswers pins the fast path's own answers for the common
// cases (beyond agreeing with the VM, it must answer them itself).
func TestFastPathAnswers(t *testing.T) {
	envs := fastEnvs()
	for _, c := range []struct {
		src    string
		asBool bool
		want   any
		env    string // of fastEnvs; "full" when empty
	}{
		{"payload?.a.b", false, nil, "nil payload"}, // the chain is skipped whole
		{"payload?.a?.b.c", false, nil, "a is nil"},
		{"payload?.a?.['b'] ?? 'd'", false, "d", "a is nil"},
		{"payload?.a.b", false, nil, "b nil"},
		{"item.name", false, "i", "loop"},
		{"index", false, 2, "loop"},
		{"payload.a.b.c", false, "deep", ""},
		{"payload?.none ?? ''", false, "", ""},
		{"payload?.username ?? ''", false, "alice", ""},
		{"payload?.nilmap", false, nil, ""},
		{"payload?.none ?? 0", false, 0, ""},
		{"payload?.none ?? 1.5", false, 1.5, ""},
		{"payload.n == 3.0", true, true, ""},
		{"payload.f == 2.5", true, true, ""},
		{"payload?.granted ?? false", true, true, ""},
		{"payload?.none", true, false, ""},
		{`headers["x-foo"]`, false, "bar", ""},
		{"vars.cluster", false, "hpc", ""},
		{"type", false, "order", ""},
		{"(payload?.order_state ?? '') not in ['done', 'erred']", true, true, ""},
		{"(payload?.order_state ?? '') not in ['done', 'erred']", true, false, "empty strings"},
		{"payload?.none in ['', 'x']", true, true, ""},
		{"payload.n in [3.0]", true, true, ""},
		{"payload.n in ['3', 2]", true, false, ""},
		{"payload?.none in [1, nil]", true, true, ""},
		{"payload.nilmap in [nil, 1]", true, true, ""},
		{"payload.a in [1, 'x']", true, false, ""},
		{"vars.prefix + payload.s", false, "wd_str", ""},
		{"'x' + payload.s + (payload?.none ?? '')", false, "xstr", ""},
		{"payload.b && payload.s", false, "str", ""},
		{"!payload.b", true, false, ""},
		{"payload?.none == nil || payload.none", true, true, ""},
		{"payload.b && false || payload?.granted", true, true, ""},
		{"payload.n > 1", true, true, ""},
		{"payload.n < 2.5", true, false, ""},
		{"payload.f <= payload.n", true, true, ""},
		{"payload.n >= 3.0", true, true, ""},
		{"payload.s < payload.t", false, false, ""},
		{"(payload?.none ?? -1) < 0", true, true, ""},
	} {
		e, err := compileExpr(c.src, Pos{}, c.asBool)
		if err != nil {
			t.Fatal(err)
		}
		if e.fast == nil {
			t.Errorf("%s: no fast path", c.src)
			continue
		}
		env := envs["full"]
		if c.env != "" {
			env = envs[c.env]
		}
		if v, ok := e.fast.eval(env); !ok || !reflect.DeepEqual(v, c.want) {
			t.Errorf("%s: fast path %#v (answered %v), want %#v", c.src, v, ok, c.want)
		}
	}
}

// TestFastPathKeepsExprFields: the fast path changes how an expression
// runs, not what the loader learns of it (taint, names, steps, items).
func TestFastPathKeepsExprFields(t *testing.T) {
	for _, c := range []struct {
		src            string
		tainted, items bool
		names, steps   []string
	}{
		{src: "vars.cluster", names: []string{"vars.cluster"}},
		{src: "vars?.cluster ?? 'x'"},
		{src: "secrets.token", names: []string{"secrets.token"}},
		{src: "env.HOME ?? ''", names: []string{"env.HOME"}},
		{src: "payload.a", tainted: true},
		{src: `headers["x"]`, tainted: true},
		{src: "steps.s.json", tainted: true, steps: []string{"s"}},
		{src: "item.name", tainted: true, items: true},
		{src: "index", tainted: true, items: true},
		{src: "type == 'x'", tainted: true},
	} {
		e, err := compileExpr(c.src, Pos{}, false)
		if err != nil {
			t.Fatal(err)
		}
		if e.tainted != c.tainted || e.items != c.items || e.raw || !slices.Equal(e.names, c.names) || !slices.Equal(e.steps, c.steps) {
			t.Errorf("%s: tainted %v items %v raw %v names %v steps %v; want %v %v false %v %v",
				c.src, e.tainted, e.items, e.raw, e.names, e.steps, c.tainted, c.items, c.names, c.steps)
		}
	}
}

// TestFastPathHeaders: an expression on headers, fast or not, still makes
// Environment box the headers in (the ruleset reads the program's tree),
// and reads them; a rule without one leaves them out.
func TestFastPathHeaders(t *testing.T) {
	ev := &event.Event{Type: "order", ID: "m", Payload: map[string]any{"order_uuid": "u"},
		Headers: map[string]string{"x-site": "hpc"}}
	rs := mustParse(t, `
version: 1
rules:
  - name: r
    on: order
    when: headers?.["x-site"] == "hpc"
    key: headers["x-site"]
    steps: [{log: "{{ headers?.['x-none'] ?? 'none' }} {{ payload.order_uuid }}"}]
`)
	r := rs.Rules[0]
	for _, e := range []*Expr{r.When, r.Key} {
		if e.fast == nil {
			t.Fatalf("%s: no fast path", e.Src)
		}
	}
	env := rs.Environment(ev, nil)
	cands := rs.Candidates(ev, env)
	if len(cands) != 1 || cands[0].Key != "hpc" {
		t.Fatalf("candidates %+v", cands)
	}
	plan, matched, err := cands[0].Match(ev, env)
	if err != nil || !matched {
		t.Fatalf("match: %v %v", matched, err)
	}
	params, _, err := RenderStep(plan.Rule.Steps[0], env, false)
	if err != nil || params["message"] != "none u" {
		t.Fatalf("render: %v %v", params, err)
	}

	// Without any expression on headers they are left out, and a fast
	// path over another root does not need them.
	rs = mustParse(t, "version: 1\nrules: [{name: r, on: order, key: payload.order_uuid, steps: [{log: hi}]}]\n")
	env = rs.Environment(ev, nil)
	if h, ok := env["headers"]; ok {
		t.Errorf("headers boxed though unread: %v", h)
	}
	if c := rs.Candidates(ev, env); c[0].Key != "u" {
		t.Errorf("key %q", c[0].Key)
	}
}

// TestFastPathErrorsAreTheVMs: a fast expression that fails reports the
// VM's error, position and all.
func TestFastPathErrorsAreTheVMs(t *testing.T) {
	env := fastEnvs()["full"]
	for src, want := range map[string]string{
		"payload.none":      `payload.none: no key "none" (use ?. or ` + "`??`" + ` for optional fields) (1:9)`,
		"payload?.nilv.b":   `payload?.nilv.b: cannot read b of nil (1:15)`,
		"payload.none ?? 1": `payload.none ?? 1: no key "none" (use ?. or ` + "`??`" + ` for optional fields) (1:9)`,
	} {
		e, err := compileExpr(src, Pos{}, false)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.Eval(env); err == nil || err.Error() != want {
			t.Errorf("%s: error %v, want %s", src, err, want)
		}
	}
}

// FuzzFastPathMatchesVM: any expression over any JSON payload (decoded as
// events are) gives the same value and error with the fast path as on the
// VM. The payload is also the for_each item and a step's result, so that
// every root sees the random tree.
func FuzzFastPathMatchesVM(f *testing.F) {
	for i, src := range fastExprs {
		f.Add(src, []string{`{"a": {"b": {"c": 1}}, "s": "x", "n": 0}`, `{"a": null, "username": "u"}`,
			`{"a": [1, {"b": 2}], "n": 1.5, "b": true}`, `{}`, `{"a": {"b": null}, "s": "str", "granted": false}`}[i%5], i%2 == 0)
	}
	f.Add("payload.a?.b.c ?? 'z'", `{"a": {}}`, false)
	f.Add(`payload?.["a b"]?.["c.d"] == 1`, `{"a b": {"c.d": 1}}`, true)
	f.Add("steps.s.a?.b ?? nil", `{"a": {"b": [1]}}`, false)
	f.Add("item.a.b != 'x'", `{"a": {"b": "x"}}`, true)
	f.Add("(payload?.s ?? '') not in ['x', 'y', 1, true, 2.5]", `{"s": 1.0}`, true)
	f.Add("payload?.n in ['', nil, 0]", `{"n": null}`, true)
	f.Add("vars.cluster + payload.a.s + (item?.t ?? '-')", `{"a": {"s": "x"}, "t": 1}`, false)
	f.Add("payload.b && !(payload?.c ?? false) || payload.d in [1]", `{"b": true, "c": false, "d": 1}`, true)
	f.Add("payload.n > 1 && payload.s <= 'm' || payload?.x >= 2.5", `{"n": 2, "s": "a", "x": null}`, true)
	f.Fuzz(func(t *testing.T, src, payload string, asBool bool) {
		e, err := compileExpr(src, Pos{}, asBool)
		if err != nil {
			return
		}
		ev, err := event.DecodePayload([]byte(payload), "x", "", event.Limits{})
		if err != nil {
			return
		}
		ev.Headers = map[string]string{"x-foo": "bar"}
		rs := &Ruleset{Vars: map[string]any{"cluster": "hpc", "p": ev.Payload}, Env: map[string]any{"HOME": "/"}}
		env := rs.Environment(ev, map[string]any{"token": "t"})
		env["steps"] = map[string]any{"s": ev.Payload}
		env = ItemEnv(env, ev.Payload, 1)
		vv, verr := e.evalVM(env)
		fv, ferr := e.Eval(env)
		if !sameResult(fv, ferr, vv, verr) {
			t.Fatalf("%s over %s: fast path %#v, %v; VM %#v, %v", src, payload, fv, ferr, vv, verr)
		}
	})
}
