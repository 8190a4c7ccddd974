package actions

import (
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"

	"github.com/eventfn/eventfn/spec"
)

var logLevels = []string{"debug", "info", "warn", "error"}

// Definition implements Kind.
func (l *Log) Definition() spec.Definition {
	return spec.Definition{
		Kind:      "log",
		Doc:       "Writes a line to eventfn's log.",
		InProcess: true,
		Shorthand: "message",
		Params: []spec.Param{
			{Name: "message", Type: spec.String, Required: true, Doc: "The message.", Example: `"order {{ payload.order_uuid }} done"`},
			{Name: "level", Type: spec.String, Default: "info", Enum: append(logLevels, "warning"), Doc: "debug, info, warn or error.", Example: "warn"},
			{Name: "fields", Type: spec.Mapping, Doc: "Attributes added to the line.", Example: `{order: "{{ payload.order_uuid }}"}`},
		},
		Result:  []spec.Field{{Name: "message", Type: spec.String, Doc: "The message logged."}},
		Example: `{log: "got {{ type }} {{ id }}"}`,
	}
}

// Check implements Kind (the level is checked from the definition).
func (l *Log) Check(params map[string]any) []error {
	lit, _ := literal(params)
	var p logParams
	if err := decode(lit, &p); err != nil {
		return []error{err}
	}
	return nil
}

// Preview implements Kind.
func (l *Log) Preview(req Request) (Effect, error) {
	var p logParams
	if err := decode(req.Params, &p); err != nil {
		return Effect{}, err
	}
	lvl := strings.ToLower(p.Level)
	switch lvl {
	case "":
		lvl = "info"
	case "warning":
		lvl = "warn"
	case "debug", "info", "warn", "error":
	default:
		return Effect{}, Permanent(fmt.Errorf("log: level %q: want debug, info, warn or error", p.Level))
	}
	return Effect{Log: &LogLine{Level: lvl, Message: p.Message, Fields: p.Fields}}, nil
}

// Attributes implements Kind: a log step has none of its own.
func (l *Log) Attributes(Request, Result) []attribute.KeyValue { return nil }
