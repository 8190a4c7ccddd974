package actions

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"go.opentelemetry.io/otel/attribute"

	"github.com/eventfn/eventfn/spec"
)

var exitCodeParams = []spec.Param{
	{Name: "env", Type: spec.StringMap, Doc: "Variables added to the command's minimal environment (PATH, HOME, LANG, LC_ALL, TZ, SLURM_CONF, TMPDIR).", Example: "{MODE: create}"},
	{Name: "dir", Type: spec.String, Doc: "Working directory.", Example: "/srv/site"},
	{Name: "ok_exit_codes", Type: spec.IntegerList, Default: "[0]", Doc: "Exit codes that count as success.", Example: "[0, 3]"},
	{Name: "fatal_exit_codes", Type: spec.IntegerList, Doc: "Exit codes that fail the step at once, without retries.", Example: "[2]"},
	{Name: "max_output", Type: spec.Integer, Default: "1048576", Doc: "Bytes of stdout and of stderr kept (each); the rest is read and dropped.", Example: "65536"},
}

var commandResult = []spec.Field{
	{Name: "exit_code", Type: spec.Integer, Doc: "The command's exit code."},
	{Name: "stdout", Type: spec.String, Doc: "Its standard output (up to max_output)."},
	{Name: "stderr", Type: spec.String, Doc: "Its standard error (up to max_output)."},
	{Name: "json", Type: spec.Any, Doc: "stdout parsed, when it is JSON; else null."},
	{Name: "ok", Type: spec.Boolean, Doc: "Whether the step succeeded."},
}

// Definition implements Kind.
func (e *Exec) Definition() spec.Definition {
	return spec.Definition{
		Kind:      "exec",
		Doc:       "Runs a command as an argv list, never through a shell: event data can only ever be one argv word.",
		Shorthand: "argv",
		Params: append([]spec.Param{
			{Name: "argv", Type: spec.StringList, Required: true, Doc: "The command and its arguments.", Example: `[echo, "order {{ payload.order_uuid }}"]`},
			{Name: "stdin", Type: spec.String, Doc: "Text written to the command's standard input.", Example: `"{{ payload }}"`},
		}, exitCodeParams...),
		Result:  commandResult,
		Example: `{id: echo, exec: [echo, "{{ payload.order_uuid }}"]}`,
	}
}

// Check implements Kind: what decoding and RunCommand refuse in literals.
func (e *Exec) Check(params map[string]any) []error {
	lit, _ := literal(params)
	var p ExecParams
	if err := decode(lit, &p); err != nil {
		return []error{err}
	}
	if argv, ok := params["argv"].([]any); ok {
		if len(argv) == 0 {
			return []error{spec.Errorf("argv", "empty: give the command and its arguments")}
		}
		if s, ok := argv[0].(string); ok && s == "" {
			return []error{spec.Errorf("argv[0]", "empty command name")}
		}
	}
	return nil
}

// Preview implements Kind: the argv as RunCommand runs it.
func (e *Exec) Preview(req Request) (Effect, error) {
	var p ExecParams
	if err := decode(req.Params, &p); err != nil {
		return Effect{}, err
	}
	if len(p.Argv) == 0 || p.Argv[0] == "" {
		return Effect{}, Permanent(fmt.Errorf("exec: empty argv"))
	}
	return Effect{Commands: []Command{{Argv: p.Argv, Env: p.Env, Dir: p.Dir, Stdin: p.Stdin}}}, nil
}

// Attributes implements Kind.
func (e *Exec) Attributes(req Request, res Result) []attribute.KeyValue {
	return commandAttrs(list(req.Params["argv"]), res)
}

func commandAttrs(argv []any, res Result) []attribute.KeyValue {
	attrs := []attribute.KeyValue{AttrCommand.String(CommandLine(argv))}
	if code, ok := res["exit_code"].(int); ok {
		attrs = append(attrs, AttrExitCode.Int(code))
	}
	return attrs
}

// CommandLine formats an argv for people: words joined by spaces, quoted
// where they hold spaces or quotes.
func CommandLine(argv []any) string {
	parts := make([]string, len(argv))
	for i, w := range argv {
		s := text(w)
		if s == "" || strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || r == '"' || r == '\'' }) >= 0 {
			s = strconv.Quote(s)
		}
		parts[i] = s
	}
	return strings.Join(parts, " ")
}

func list(v any) []any {
	switch t := v.(type) {
	case []any:
		return t
	case []string:
		out := make([]any, len(t))
		for i, s := range t {
			out[i] = s
		}
		return out
	case nil:
		return nil
	}
	return []any{v}
}
