package rules

import (
	"sort"
	"strings"

	"github.com/eventfn/eventfn/spec"
)

// SchemaID is where the published schema of the rules file lives.
const SchemaID = "https://raw.githubusercontent.com/eventfn/eventfn/main/eventfn.schema.json"

// Schema returns a JSON Schema (draft-07, what YAML language servers read
// best) of the rules file, built from
// the rule format the loader reads and the action definitions of cat.
// sections gives the schemas of the other top-level keys (sources, runner,
// waldur, slurm), which their own package defines; a key not given is an
// open object.
func Schema(cat spec.Catalog, sections map[string]any) map[string]any {
	template := map[string]any{"type": "string", "pattern": `\{\{`, "description": "a {{ expr }} template, rendered per event"}
	expr := map[string]any{"type": "string", "description": "an expr expression (https://expr-lang.org)"}
	duration := map[string]any{"type": "string", "pattern": `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`, "description": "a Go duration such as 30s, 5m, 1h30m"}
	retry := map[string]any{
		"type": "object", "additionalProperties": false,
		"description": "how often and how far apart a failing step is retried",
		"properties": map[string]any{
			"attempts": map[string]any{"type": "integer", "minimum": 1, "description": "tries in total, the first included"},
			"backoff":  map[string]any{"enum": []any{"constant", "exponential", "fibonacci"}},
			"initial":  duration,
			"max":      duration,
			"jitter":   map[string]any{"type": "number", "minimum": 0, "maximum": 1},
		},
	}
	var kinds []any
	stepProps := map[string]any{
		"id":                map[string]any{"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$", "description": "results readable by later steps as steps.<id>"},
		"name":              map[string]any{"type": "string"},
		"when":              expr,
		"timeout":           duration,
		"retry":             retry,
		"continue_on_error": map[string]any{"type": "boolean"},
		"for_each": map[string]any{"type": "string",
			"description": "an expr list (or {{ list }}): the step runs once per item, with item and index bound"},
		"for_each_concurrency": map[string]any{"type": "integer", "minimum": 1, "maximum": 64,
			"description": "items run at once (default 1)"},
	}
	for _, d := range cat.Definitions() {
		stepProps[d.Kind] = kindSchema(d, template)
		kinds = append(kinds, map[string]any{"required": []any{d.Kind}})
	}
	step := map[string]any{
		"type": "object", "additionalProperties": false,
		"properties": stepProps,
		"oneOf":      kinds,
	}
	steps := map[string]any{"type": "array", "items": step}
	onType := map[string]any{"type": "string", "minLength": 1, "examples": toAny(append(append([]string{}, WaldurTypes...), "*"))}
	typesList := map[string]any{"type": "array", "items": map[string]any{"type": "string", "minLength": 1}, "description": "custom event types that on: may name"}
	rule := map[string]any{
		"type": "object", "additionalProperties": false,
		"required": []any{"name", "on", "steps"},
		"properties": map[string]any{
			"name":        map[string]any{"type": "string", "minLength": 1},
			"description": map[string]any{"type": "string"},
			"on":          map[string]any{"oneOf": []any{onType, map[string]any{"type": "array", "minItems": 1, "items": onType}}},
			"types":       typesList,
			"when":        expr,
			"key":         expr,
			"steps":       steps,
			"on_failure":  steps,
		},
	}
	secret := map[string]any{
		"type": "object", "additionalProperties": false,
		"properties": map[string]any{"file": map[string]any{"type": "string"}, "env": map[string]any{"type": "string"}},
		"oneOf":      []any{map[string]any{"required": []any{"file"}}, map[string]any{"required": []any{"env"}}},
	}
	props := map[string]any{
		"version":  map[string]any{"const": 1},
		"vars":     map[string]any{"type": "object", "description": "site constants: vars.<name>"},
		"env":      map[string]any{"type": "array", "items": map[string]any{"type": "string"}, "description": "environment variables rules may read: env.<name>"},
		"secrets":  map[string]any{"type": "object", "additionalProperties": secret},
		"defaults": map[string]any{"type": "object", "additionalProperties": false, "properties": map[string]any{"timeout": duration, "retry": retry}},
		"include":  map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "array", "items": map[string]any{"type": "string"}}}},
		"types":    typesList,
		"rules":    map[string]any{"type": "array", "items": rule},
	}
	for _, k := range []string{"sources", "runner", "waldur", "slurm"} {
		if s, ok := sections[k]; ok {
			props[k] = s
		} else if k == "sources" {
			props[k] = map[string]any{"type": "array", "items": map[string]any{"type": "object"}}
		} else {
			props[k] = map[string]any{"type": "object"}
		}
	}
	return map[string]any{
		"$schema":              "http://json-schema.org/draft-07/schema#",
		"$id":                  SchemaID,
		"title":                "eventfn rules file",
		"type":                 "object",
		"required":             []any{"version"},
		"additionalProperties": false,
		"properties":           props,
	}
}

// kindSchema is the schema of one action kind's value: a mapping of its
// parameters, or its shorthand's value.
func kindSchema(d spec.Definition, template map[string]any) map[string]any {
	props := map[string]any{}
	var required []any
	for _, p := range d.Params {
		props[p.Name] = paramSchema(p, template)
		if p.Required {
			required = append(required, p.Name)
		}
	}
	m := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if len(required) > 0 {
		m["required"] = required
	}
	out := map[string]any{"description": d.Doc}
	if sp, ok := d.Param(d.Shorthand); ok && d.Shorthand != "" {
		out["anyOf"] = []any{m, paramSchema(sp, template)}
	} else {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func paramSchema(p spec.Param, template map[string]any) map[string]any {
	var s map[string]any
	str := map[string]any{"type": []any{"string", "number", "boolean"}}
	switch p.Type {
	case spec.String:
		s = str
	case spec.Integer:
		s = map[string]any{"anyOf": []any{map[string]any{"type": "integer"}, template}}
	case spec.Boolean:
		s = map[string]any{"anyOf": []any{map[string]any{"type": "boolean"}, template}}
	case spec.Duration:
		s = map[string]any{"type": "string"}
	case spec.List:
		s = map[string]any{"anyOf": []any{map[string]any{"type": "array"}, template}}
	case spec.StringList:
		s = map[string]any{"anyOf": []any{map[string]any{"type": "array", "items": str}, template}}
	case spec.IntegerList:
		s = map[string]any{"anyOf": []any{map[string]any{"type": "array", "items": map[string]any{"anyOf": []any{map[string]any{"type": "integer"}, template}}}, template}}
	case spec.Mapping:
		s = map[string]any{"anyOf": []any{map[string]any{"type": "object"}, template}}
	case spec.StringMap:
		s = map[string]any{"anyOf": []any{map[string]any{"type": "object", "additionalProperties": str}, template}}
	default:
		s = map[string]any{}
	}
	if len(p.Enum) > 0 {
		var enum []any
		for _, e := range p.Enum {
			enum = append(enum, e)
			if l := strings.ToLower(e); l != e {
				enum = append(enum, l)
			} else if u := strings.ToUpper(e); u != e {
				enum = append(enum, u)
			}
		}
		s = map[string]any{"anyOf": []any{map[string]any{"enum": enum}, template}}
	}
	doc := p.Doc
	if p.Default != "" {
		doc += " Default: " + p.Default + "."
	}
	if doc != "" {
		s["description"] = doc
	}
	return s
}

func toAny(ss []string) []any {
	sort.Strings(ss)
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
