package actions

import (
	"strings"

	"go.opentelemetry.io/otel/attribute"

	"github.com/eventfn/eventfn/spec"
)

// slurmKind adapts the slurm action (actions/slurm.go) to the Kind shape.
type slurmKind struct{ *Slurm }

// Definition implements Kind.
func (s slurmKind) Definition() spec.Definition {
	d := spec.Definition{
		Kind:      "slurm",
		Doc:       "Runs SLURM commands (sacctmgr, scancel, sacct, scontrol) as argv, never through a shell: raw arguments, or exactly one friendly form. Names are checked before anything runs; sacctmgr runs with --parsable2 --noheader --immediate and cluster= from the slurm section.",
		Shorthand: slurmSpec.Shorthand,
		Result: []spec.Field{
			{Name: "exit_code", Type: spec.Integer, Doc: "Exit code of the last command."},
			{Name: "stdout", Type: spec.String, Doc: "Its output."},
			{Name: "rows", Type: spec.List, Doc: "Table output (show, list, sacct) as mappings."},
			{Name: "changed", Type: spec.Boolean, Doc: "False when sacctmgr answered that there was nothing to do."},
			{Name: "commands", Type: spec.List, Doc: "The argv of every command run."},
		},
		Example: `{slurm: {add_account: {name: "{{ vars.allocation_prefix + payload.resource_uuid }}", parent: "{{ vars.root_account }}"}}}`,
	}
	docs := map[string]spec.Param{
		"args":    {Type: spec.StringList, Doc: "Raw arguments of the command.", Example: "[show, assoc, format=account]"},
		"command": {Type: spec.String, Default: "sacctmgr", Enum: slurmTools, Doc: "The tool raw args are for."},
		"cluster": {Type: spec.String, Doc: "Cluster of this step (default: slurm.cluster).", Example: "hpc2"},
	}
	for _, k := range slurmSpec.Keys {
		p, ok := docs[k]
		if !ok {
			p = spec.Param{Type: spec.Any, Doc: "One operation, a mapping of " + strings.Join(formKeys[k], ", ") +
				" (the forms and the commands they run: examples/slurm-site/SLURM-REFERENCE.md)."}
		}
		p.Name = k
		d.Params = append(d.Params, p)
	}
	return d
}

// Check implements Kind: the forms and their keys (CheckSlurmParams), and,
// for a step whose values are all literals, the refusal Run would give.
func (s slurmKind) Check(params map[string]any) []error {
	if errs := CheckSlurmParams(params); len(errs) > 0 {
		return errs
	}
	if _, complete := literal(params); !complete {
		return nil
	}
	if _, err := s.Slurm.Preview(Request{Params: params}); err != nil {
		return []error{err}
	}
	return nil
}

// Preview implements Kind: the exact command lines Run would run.
func (s slurmKind) Preview(req Request) (Effect, error) {
	cmds, err := s.Slurm.Preview(req)
	if err != nil {
		return Effect{}, err
	}
	eff := Effect{}
	for _, c := range cmds {
		eff.Commands = append(eff.Commands, Command{Argv: c})
	}
	return eff, nil
}

// Attributes implements Kind: the commands run (or to be run) and the exit
// code.
func (s slurmKind) Attributes(req Request, res Result) []attribute.KeyValue {
	var lines []any
	if cmds, ok := res["commands"].([]any); ok {
		lines = cmds
	} else if cmds, err := s.Slurm.Preview(req); err == nil {
		for _, c := range cmds {
			lines = append(lines, toAnySlice(c))
		}
	}
	var attrs []attribute.KeyValue
	if len(lines) > 0 {
		text := ""
		for i, c := range lines {
			if i > 0 {
				text += "; "
			}
			text += CommandLine(list(c))
		}
		attrs = append(attrs, AttrCommand.String(text))
	}
	if code, ok := res["exit_code"].(int); ok {
		attrs = append(attrs, AttrExitCode.Int(code))
	}
	return attrs
}
