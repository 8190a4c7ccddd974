package actions

import (
	"errors"

	"go.opentelemetry.io/otel/attribute"

	"github.com/eventfn/eventfn/spec"
)

// Definition implements Kind.
func (s *Script) Definition() spec.Definition {
	return spec.Definition{
		Kind:      "script",
		Doc:       "Runs an executable file with the event's JSON envelope on stdin and EVENTFN_TYPE, EVENTFN_RULE, EVENTFN_KEY and EVENTFN_MESSAGE_ID set.",
		Shorthand: "path",
		Params: append([]spec.Param{
			{Name: "path", Type: spec.String, Required: true, Doc: "The executable.", Example: "/usr/local/lib/eventfn/new-order"},
			{Name: "args", Type: spec.StringList, Doc: "Its arguments.", Example: `["{{ payload.order_uuid }}"]`},
		}, exitCodeParams...),
		Result:  commandResult,
		Example: `{script: {path: ./hooks/order.sh, args: ["{{ payload.order_uuid }}"]}}`,
	}
}

// Check implements Kind.
func (s *Script) Check(params map[string]any) []error {
	lit, _ := literal(params)
	var p ScriptParams
	if err := decode(lit, &p); err != nil {
		return []error{err}
	}
	if v, ok := params["path"].(string); ok && v == "" {
		return []error{spec.Errorf("path", "empty")}
	}
	return nil
}

// Preview implements Kind: the argv, environment and stdin Run gives.
func (s *Script) Preview(req Request) (Effect, error) {
	var p ScriptParams
	if err := decode(req.Params, &p); err != nil {
		return Effect{}, err
	}
	if p.Path == "" {
		return Effect{}, Permanent(errors.New("script: empty path"))
	}
	env := map[string]string{
		"EVENTFN_TYPE": req.Type, "EVENTFN_RULE": req.Rule,
		"EVENTFN_KEY": req.Key, "EVENTFN_MESSAGE_ID": req.MessageID,
	}
	for k, v := range p.Env {
		env[k] = v
	}
	return Effect{Commands: []Command{{Argv: append([]string{p.Path}, p.Args...), Env: env, Dir: p.Dir, Stdin: string(req.EventJSON)}}}, nil
}

// Attributes implements Kind.
func (s *Script) Attributes(req Request, res Result) []attribute.KeyValue {
	return commandAttrs(append([]any{req.Params["path"]}, list(req.Params["args"])...), res)
}
