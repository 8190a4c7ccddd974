package actions

import (
	"reflect"
	"testing"
)

// reflectDecode is the reflection path decode takes for structs without a
// typed decoder.
func reflectDecode(p map[string]any, out any) error {
	return assign(reflect.ValueOf(out).Elem(), p, "")
}

// TestTypedDecodeAgreesWithReflection: the typed decoders of the built-in
// settings read the same values, and refuse the same ones, as the
// reflection decoder they replace.
func TestTypedDecodeAgreesWithReflection(t *testing.T) {
	inputs := []map[string]any{
		{"argv": []any{"x", 5, true, map[string]any{"a": 1}, nil}, "ok_exit_codes": []any{"0", 2.0}, "env": map[string]any{"A": 1, "B": nil}, "max_output": "10", "stdin": 3, "dir": "/d"},
		{"path": "/p", "args": []string{"a"}, "fatal_exit_codes": []any{1}},
		{"url": "http://x", "method": "put", "headers": map[string]any{"H": "v"}, "body": map[string]any{"a": []any{1}}, "ok_status": []any{200}, "max_response": 5.0, "hmac_secret_file": "/k"},
		{"message": "m", "level": "warn", "fields": map[string]any{"n": 1, "z": nil}},
		{"ok_exit_codes": []any{"zero"}},
		{"ok_exit_codes": 3},
		{"max_output": 1.5},
		{"env": []any{"x"}},
		{"argv": "not a list"},
		{"fields": "x"},
		{"ok_status": []any{map[string]any{}}},
	}
	news := []func() (typed, reflected any){
		func() (any, any) { return &ExecParams{}, &ExecParams{} },
		func() (any, any) { return &ScriptParams{}, &ScriptParams{} },
		func() (any, any) { return &WebhookParams{}, &WebhookParams{} },
		func() (any, any) { return &logParams{}, &logParams{} },
	}
	for _, in := range inputs {
		for _, mk := range news {
			typed, reflected := mk()
			terr := decode(in, typed)
			rerr := reflectDecode(in, reflected)
			if (terr == nil) != (rerr == nil) {
				t.Errorf("%T %v: typed %v, reflection %v", typed, in, terr, rerr)
				continue
			}
			if terr == nil && !reflect.DeepEqual(typed, reflected) {
				t.Errorf("%T %v:\n typed      %+v\n reflection %+v", typed, in, typed, reflected)
			}
		}
	}
}

func BenchmarkDecodeExec(b *testing.B) {
	in := map[string]any{"argv": []any{"sacctmgr", "add", "account", "a1", "parent=root"}, "env": map[string]any{"A": "1"}, "ok_exit_codes": []any{0, 1}}
	b.Run("typed", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var p ExecParams
			if err := decode(in, &p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reflection", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var p ExecParams
			if err := reflectDecode(in, &p); err != nil {
				b.Fatal(err)
			}
		}
	})
}
