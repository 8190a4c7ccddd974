package config

import (
	"reflect"
	"strings"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/source"
)

// Sections returns the JSON Schemas of the sections this package reads
// (sources, runner, waldur, slurm), built from the very structs the loader
// decodes them into, so that `eventfn schema` cannot drift from what
// loads. A source is one of the registered kinds: name and url, plus that
// kind's own settings.
func Sections(reg *source.Registry) map[string]any {
	var kinds []any
	for _, k := range reg.Kinds() {
		s := structSchema(reflect.TypeOf(k.NewSettings()).Elem())
		props := s["properties"].(map[string]any)
		props["name"] = map[string]any{"type": "string", "description": "the source's name (logs, metrics, de-duplication)"}
		req := []any{"name"}
		var schemes []any
		for _, sc := range k.Schemes() {
			schemes = append(schemes, sc)
		}
		if len(schemes) > 0 {
			props["url"] = map[string]any{"type": "string", "description": "the URL; its scheme picks the kind: " + strings.Join(k.Schemes(), ", ")}
		}
		if imp := k.ImpliedBy(); imp != "" {
			req = append(req, imp)
		} else {
			req = append(req, "url")
		}
		s["required"] = req
		s["title"] = k.Name() + " source"
		kinds = append(kinds, s)
	}
	return map[string]any{
		"sources": map[string]any{"type": "array", "items": map[string]any{"anyOf": kinds}},
		"runner":  structSchema(reflect.TypeOf(RunnerSpec{})),
		"waldur":  structSchema(reflect.TypeOf(WaldurSpec{})),
		"slurm":   structSchema(reflect.TypeOf(actions.SlurmConfig{})),
	}
}

// structSchema describes a struct by its yaml tags: every key, its type, no
// other keys (the loader decodes strictly).
func structSchema(t reflect.Type) map[string]any {
	props := map[string]any{}
	fields, _ := yamlFields(t)
	for name, i := range fields {
		props[name] = typeSchema(t.Field(i).Type)
	}
	return map[string]any{"type": "object", "additionalProperties": false, "properties": props}
}

func typeSchema(t reflect.Type) map[string]any {
	if t == durationType {
		return map[string]any{"type": "string", "pattern": `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`, "description": "a Go duration such as 30s, 5m, 1h30m"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return typeSchema(t.Elem())
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float64, reflect.Float32:
		return map[string]any{"type": "number"}
	case reflect.Slice:
		return map[string]any{"type": "array", "items": typeSchema(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": typeSchema(t.Elem())}
	case reflect.Struct:
		return structSchema(t)
	}
	return map[string]any{}
}
