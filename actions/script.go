package actions

import (
	"context"
	"errors"
)

// ScriptParams are the parameters of a script step.
type ScriptParams struct {
	Path           string            `json:"path"`
	Args           []string          `json:"args"`
	Env            map[string]string `json:"env"`
	Dir            string            `json:"dir"`
	OKExitCodes    []int             `json:"ok_exit_codes"`
	FatalExitCodes []int             `json:"fatal_exit_codes"`
	MaxOutput      int               `json:"max_output"`
}

// Script runs an executable file with the event's JSON envelope on stdin and
// EVENTFN_TYPE, EVENTFN_RULE, EVENTFN_KEY and EVENTFN_MESSAGE_ID set.
type Script struct{}

// Run implements Action.
func (s *Script) Run(ctx context.Context, req Request) (Result, error) {
	var p ScriptParams
	if err := decode(req.Params, &p); err != nil {
		return nil, err
	}
	if p.Path == "" {
		return nil, Permanent(errors.New("script: empty path"))
	}
	env := map[string]string{
		"EVENTFN_TYPE": req.Type, "EVENTFN_RULE": req.Rule,
		"EVENTFN_KEY": req.Key, "EVENTFN_MESSAGE_ID": req.MessageID,
	}
	for k, v := range p.Env {
		env[k] = v
	}
	stdin := req.EventJSON
	if stdin == nil {
		// The runner could not encode the event (e.g. a number out of
		// range, 1e400): the script would read nothing and act on nothing.
		return nil, Permanent(errors.New("script: the event cannot be encoded as JSON for the script's stdin (a number out of range?)"))
	}
	return RunCommand(ctx, ExecParams{
		Argv: append([]string{p.Path}, p.Args...), Env: env, Dir: p.Dir,
		OKExitCodes: p.OKExitCodes, FatalExitCodes: p.FatalExitCodes, MaxOutput: p.MaxOutput,
	}, stdin)
}
