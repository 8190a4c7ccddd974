package actions

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// SlurmConfig configures slurm steps; the rules file's top-level slurm:
// section decodes into it.
type SlurmConfig struct {
	// BinDir, when set, is the directory of the SLURM commands whose own
	// path is not set (the Python agent's slurm_bin_path).
	BinDir string `yaml:"bin_dir"`
	// Sacctmgr, Scancel, Sacct and Scontrol are the paths of the commands
	// (default: the name, in BinDir or on PATH).
	Sacctmgr string `yaml:"sacctmgr"`
	Scancel  string `yaml:"scancel"`
	Sacct    string `yaml:"sacct"`
	Scontrol string `yaml:"scontrol"`
	// Cluster, when set, is added to every command as cluster=<name>
	// (sacctmgr) or --clusters=<name> (scancel, sacct, scontrol), unless a
	// step sets its own cluster.
	Cluster string `yaml:"cluster"`
	// Conf, when set, is passed to the commands as SLURM_CONF.
	Conf string `yaml:"conf"`
}

// binary returns the path of a SLURM command.
func (c SlurmConfig) binary(tool string) string {
	var p string
	switch tool {
	case "sacctmgr":
		p = c.Sacctmgr
	case "scancel":
		p = c.Scancel
	case "sacct":
		p = c.Sacct
	case "scontrol":
		p = c.Scontrol
	}
	if p != "" {
		return p
	}
	if c.BinDir != "" {
		return filepath.Join(c.BinDir, tool)
	}
	return tool
}

// slurmForms are the friendly forms of a slurm step, one operation each.
var slurmForms = []string{
	"add_account", "modify_account", "remove_account", "add_user", "remove_user",
	"set_limits", "set_qos", "show_assoc", "cancel",
}

var slurmSpec = Spec{
	Keys:      append([]string{"args", "command", "cluster"}, slurmForms...),
	Shorthand: "args",
}

// slurmTools are the commands a slurm step may run.
var slurmTools = []string{"sacctmgr", "scancel", "sacct", "scontrol"}

// Slurm runs SLURM commands as argv, never through a shell. A step gives
// either raw arguments (args, with command naming the tool, sacctmgr by
// default) or exactly one friendly form:
//
//	add_account:    {name, parent?, description?, organization?, fairshare?, qos?, default_qos?}
//	modify_account: {name, set: {key: value, ...}}
//	remove_account: name | {name}
//	add_user:       {user, account, default_account?, partition?, qos?, default_qos?, fairshare?}
//	remove_user:    {user | all_users: true, account}
//	set_limits:     {account, limits: {tres: n}, kind?: GrpTRESMins, factors?, tres?, user?}
//	set_qos:        {account, qos, default_qos?}
//	show_assoc:     {account?, user?, parent?, format?}
//	cancel:         {account, user?}
//
// Names (accounts, users, QoS, partitions, clusters) are checked before
// anything runs: letters, digits and _ . @ -, not starting with -. user and
// account (and name of modify/remove_account) also take lists, which become
// sacctmgr's comma-separated lists; an empty list means there is nothing to
// do. sacctmgr runs with --parsable2 --noheader --immediate; its no-op
// answers ("Nothing new added", "Nothing deleted", "Nothing modified",
// "already exists") count as success with changed: false.
type Slurm struct{ cfg SlurmConfig }

// NewSlurm returns a slurm action.
func NewSlurm(cfg SlurmConfig) *Slurm { return &Slurm{cfg: cfg} }

// slurmCommand is one command a slurm step runs.
type slurmCommand struct {
	tool string   // sacctmgr, scancel, sacct or scontrol
	args []string // after the tool's own flags
	// table is true when the output is a table with a header line that
	// becomes rows (sacctmgr show/list, sacct).
	table bool
	// writes is true when the command changes something.
	writes bool
}

// argv returns the whole command line: binary, own flags, arguments.
func (c slurmCommand) argv(cfg SlurmConfig) []string {
	out := []string{cfg.binary(c.tool)}
	switch c.tool {
	case "sacctmgr":
		out = append(out, "--parsable2")
		if !c.table {
			out = append(out, "--noheader")
		}
		out = append(out, "--immediate")
	case "sacct":
		out = append(out, "--parsable2")
	}
	return append(out, c.args...)
}

// Commands returns the command lines a slurm step with these (rendered)
// parameters would run, without running them, or the error that refuses
// them. For dry runs, traces and tests.
func (s *Slurm) Commands(params map[string]any) ([][]string, error) {
	cmds, _, err := s.plan(params)
	if err != nil {
		return nil, err
	}
	out := make([][]string, len(cmds))
	for i, c := range cmds {
		out[i] = c.argv(s.cfg)
	}
	return out, nil
}

// Run implements Action.
func (s *Slurm) Run(ctx context.Context, req Request) (Result, error) {
	cmds, extra, err := s.plan(req.Params)
	if err != nil {
		return nil, err
	}
	res := Result{"exit_code": 0, "stdout": "", "stderr": "", "rows": []any{}, "changed": false, "commands": []any{}}
	for k, v := range extra {
		res[k] = v
	}
	var env map[string]string
	if s.cfg.Conf != "" {
		env = map[string]string{"SLURM_CONF": s.cfg.Conf}
	}
	var stdout, stderr strings.Builder
	var commands []any
	var firstErr error
	for _, c := range cmds {
		argv := c.argv(s.cfg)
		commands = append(commands, toAnySlice(argv))
		out, err := RunCommand(ctx, ExecParams{Argv: argv, Env: env}, nil)
		if out != nil {
			stdout.WriteString(out["stdout"].(string))
			stderr.WriteString(out["stderr"].(string))
			if code := out["exit_code"].(int); code != 0 && res["exit_code"] == 0 {
				res["exit_code"] = code
			}
		}
		err = s.judge(c, argv, out, err)
		switch {
		case err != nil:
			if ctx.Err() != nil {
				res["stdout"], res["stderr"], res["commands"] = stdout.String(), stderr.String(), commands
				return res, err
			}
			if firstErr == nil {
				firstErr = err
			}
		case out != nil && out["exit_code"].(int) == 0:
			if c.writes {
				res["changed"] = true
			}
			if c.table {
				res["rows"] = parseTable(out["stdout"].(string))
			}
		}
	}
	res["stdout"], res["stderr"] = stdout.String(), stderr.String()
	if commands != nil {
		res["commands"] = commands
	}
	return res, firstErr
}

// judge turns a command's outcome into the step's error: nil for success
// and for sacctmgr's no-op answers, a retryable error for failures to reach
// slurmdbd or slurmctld, a permanent one for everything else.
func (s *Slurm) judge(c slurmCommand, argv []string, out Result, err error) error {
	if err == nil {
		return nil
	}
	var xe *ExitError
	if !errors.As(err, &xe) || out == nil {
		return fmt.Errorf("slurm: %s: %w", c.tool, err)
	}
	text := out["stdout"].(string) + "\n" + out["stderr"].(string)
	if c.tool == "sacctmgr" && xe.ExitCode == 1 && isNoop(text) {
		return nil
	}
	msg := strings.TrimSpace(out["stderr"].(string))
	if msg == "" {
		msg = strings.TrimSpace(out["stdout"].(string))
	}
	if len(msg) > 500 {
		msg = msg[:500] + "…"
	}
	e := fmt.Errorf("slurm: %s exited with code %d: %s", strings.Join(argv, " "), xe.ExitCode, msg)
	if isTransient(text) {
		return e
	}
	return Permanent(e)
}

var noopAnswers = []string{"nothing new added", "nothing deleted", "nothing modified", "already exists"}

// isNoop reports whether sacctmgr's output says there was nothing to do.
func isNoop(out string) bool {
	l := strings.ToLower(out)
	if strings.Contains(l, "error") || strings.Contains(l, "doesn't exist") || strings.Contains(l, "does not exist") {
		return false
	}
	return slices.ContainsFunc(noopAnswers, func(s string) bool { return strings.Contains(l, s) })
}

var transientAnswers = []string{
	"connection refused", "persistent connection", "problem talking to the database",
	"unable to contact", "socket timed out", "timed out", "zero bytes were transmitted",
	"lock wait timeout", "deadlock", "resource temporarily unavailable", "connection reset",
	"try again", "no route to host", "network is unreachable", "communication error",
}

// isTransient reports whether a failure looks like slurmdbd, slurmctld or
// the database being unreachable or busy: worth another attempt.
func isTransient(out string) bool {
	l := strings.ToLower(out)
	return slices.ContainsFunc(transientAnswers, func(s string) bool { return strings.Contains(l, s) })
}

// parseTable turns --parsable2 output with a header line into rows keyed by
// the header names, lowercased, spaces as _ ("Def QOS" → def_qos).
func parseTable(out string) []any {
	rows := []any{}
	var header []string
	for line := range strings.SplitSeq(out, "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		fields := strings.Split(line, "|")
		if header == nil {
			for _, f := range fields {
				header = append(header, strings.ReplaceAll(strings.ToLower(strings.TrimSpace(f)), " ", "_"))
			}
			continue
		}
		row := make(map[string]any, len(header))
		for i, h := range header {
			v := ""
			if i < len(fields) {
				v = fields[i]
			}
			row[h] = v
			if strings.Contains(h, "tres") {
				if m, ok := parseTRES(v); ok {
					row[h+"_map"] = m
				}
			}
		}
		rows = append(rows, row)
	}
	return rows
}

// memUnits scale the unit suffixes sacctmgr shows memory-like TRES in
// (mem=30G) to its base unit, megabytes.
var memUnits = map[byte]float64{'K': 1.0 / 1024, 'M': 1, 'G': 1024, 'T': 1024 * 1024, 'P': 1024 * 1024 * 1024}

// parseTRES reads a TRES list such as "cpu=1000,mem=30G,gres/gpu=4" into
// numbers, memory in megabytes. ok is false when it is not such a list.
func parseTRES(s string) (map[string]any, bool) {
	if s == "" {
		return nil, false
	}
	out := map[string]any{}
	for part := range strings.SplitSeq(s, ",") {
		k, v, found := strings.Cut(part, "=")
		if !found || k == "" || v == "" {
			return nil, false
		}
		f := 1.0
		if u, ok := memUnits[v[len(v)-1]]; ok {
			f, v = u, v[:len(v)-1]
		}
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, false
		}
		n *= f
		if n == math.Trunc(n) && math.Abs(n) < 1<<53 {
			out[k] = int64(n)
		} else {
			out[k] = n
		}
	}
	return out, true
}

// plan checks a step's parameters and turns them into commands. Every
// error is permanent: the same parameters will never pass.
func (s *Slurm) plan(params map[string]any) ([]slurmCommand, Result, error) {
	var forms []string
	for _, f := range slurmForms {
		if _, ok := params[f]; ok {
			forms = append(forms, f)
		}
	}
	_, hasArgs := params["args"]
	switch {
	case len(forms) > 1:
		return nil, nil, Permanent(fmt.Errorf("slurm: one operation per step, got %s", strings.Join(forms, " and ")))
	case len(forms) == 1 && hasArgs:
		return nil, nil, Permanent(fmt.Errorf("slurm: give args or %s, not both", forms[0]))
	case len(forms) == 0 && !hasArgs:
		return nil, nil, Permanent(fmt.Errorf("slurm: nothing to run: give args or one of %s", strings.Join(slurmForms, ", ")))
	}
	cluster, err := s.cluster(params)
	if err != nil {
		return nil, nil, err
	}
	b := &slurmBuilder{cluster: cluster}
	if hasArgs {
		b.op = "args"
		cmd, err := b.raw(params)
		if err != nil {
			return nil, nil, Permanent(err)
		}
		return []slurmCommand{cmd}, nil, nil
	}
	b.op = forms[0]
	if c, ok := params["command"]; ok && c != nil && c != "" {
		want := "sacctmgr"
		if b.op == "cancel" {
			want = "scancel"
		}
		if c != want {
			return nil, nil, Permanent(fmt.Errorf("slurm %s: runs %s, not %v (leave command out)", b.op, want, c))
		}
	}
	cmds, extra, err := b.form(params[b.op])
	if err != nil {
		return nil, nil, Permanent(err)
	}
	return cmds, extra, nil
}

// cluster returns the step's cluster, else the configured one, checked.
func (s *Slurm) cluster(params map[string]any) (string, error) {
	c := s.cfg.Cluster
	if v, ok := params["cluster"]; ok && v != nil {
		str, isStr := v.(string)
		if !isStr {
			return "", Permanent(fmt.Errorf("slurm: cluster must be a name, got %T", v))
		}
		c = str
	}
	if c == "" {
		return "", nil
	}
	if err := checkName(c); err != nil {
		return "", Permanent(fmt.Errorf("slurm: cluster %q refused: %v", c, err))
	}
	return c, nil
}

// slurmBuilder builds the commands of one step.
type slurmBuilder struct {
	op      string // the form (or "args"), for error messages
	cluster string
}

func (b *slurmBuilder) errorf(format string, args ...any) error {
	return fmt.Errorf("slurm %s: "+format, append([]any{b.op}, args...)...)
}

// raw builds a command from args (and command).
func (b *slurmBuilder) raw(params map[string]any) (slurmCommand, error) {
	tool := "sacctmgr"
	if v, ok := params["command"]; ok && v != nil && v != "" {
		s, isStr := v.(string)
		if !isStr || !slices.Contains(slurmTools, s) {
			return slurmCommand{}, b.errorf("command %v: want one of %s", v, strings.Join(slurmTools, ", "))
		}
		tool = s
	}
	list, ok := params["args"].([]any)
	if !ok {
		return slurmCommand{}, b.errorf("args must be a list of arguments, got %s", describe(params["args"]))
	}
	if len(list) == 0 {
		return slurmCommand{}, b.errorf("args is empty")
	}
	args := make([]string, 0, len(list)+1)
	for i, v := range list {
		s, err := scalarString(v)
		if err != nil {
			return slurmCommand{}, b.errorf("args[%d]: %v", i, err)
		}
		if err := checkArg(s); err != nil {
			return slurmCommand{}, b.errorf("args[%d] %q refused: %v", i, s, err)
		}
		args = append(args, s)
	}
	cmd := slurmCommand{tool: tool, args: args, writes: true}
	verb := strings.ToLower(args[0])
	switch tool {
	case "sacctmgr":
		if verb == "show" || verb == "list" {
			cmd.table, cmd.writes = true, false
		}
		cmd.args = b.injectCluster(args)
	case "sacct":
		cmd.table, cmd.writes = true, false
	case "scontrol":
		if verb == "show" || verb == "ping" || verb == "version" {
			cmd.writes = false
		}
	}
	if tool != "sacctmgr" && b.cluster != "" {
		cmd.args = append([]string{"--clusters=" + b.cluster}, cmd.args...)
	}
	return cmd, nil
}

// clusterFree are sacctmgr entities that belong to no cluster.
var clusterFree = []string{"qos", "tres", "cluster", "clusters", "federation", "federations", "event", "events", "runaway", "runawayjobs", "resource", "resources", "configuration", "stats"}

// injectCluster adds cluster=<name> to raw sacctmgr arguments: before set
// (a condition of a modify), else at the end; not for entities without a
// cluster, nor when the arguments name a cluster themselves.
func (b *slurmBuilder) injectCluster(args []string) []string {
	if b.cluster == "" {
		return args
	}
	if len(args) > 1 && slices.Contains(clusterFree, strings.ToLower(args[1])) {
		return args
	}
	for _, a := range args {
		l := strings.ToLower(a)
		if strings.HasPrefix(l, "cluster=") || strings.HasPrefix(l, "clusters=") {
			return args
		}
	}
	out := slices.Clone(args)
	if i := slices.IndexFunc(out, func(a string) bool { return strings.EqualFold(a, "set") }); i >= 0 {
		return slices.Insert(out, i, "cluster="+b.cluster)
	}
	return append(out, "cluster="+b.cluster)
}

// formKeys are the keys each friendly form accepts.
var formKeys = map[string][]string{
	"add_account":    {"name", "parent", "description", "organization", "fairshare", "qos", "default_qos"},
	"modify_account": {"name", "set"},
	"remove_account": {"name"},
	"add_user":       {"user", "account", "default_account", "partition", "qos", "default_qos", "fairshare"},
	"remove_user":    {"user", "all_users", "account"},
	"set_limits":     {"account", "limits", "kind", "factors", "tres", "user"},
	"set_qos":        {"account", "qos", "default_qos"},
	"show_assoc":     {"account", "user", "parent", "format"},
	"cancel":         {"account", "user"},
}

// form builds the commands of a friendly form from its value.
func (b *slurmBuilder) form(v any) ([]slurmCommand, Result, error) {
	m, err := b.formMap(v)
	if err != nil {
		return nil, nil, err
	}
	switch b.op {
	case "add_account":
		return b.addAccount(m)
	case "modify_account":
		return b.modifyAccount(m)
	case "remove_account":
		return b.removeAccount(m)
	case "add_user":
		return b.addUser(m)
	case "remove_user":
		return b.removeUser(m)
	case "set_limits":
		return b.setLimits(m)
	case "set_qos":
		return b.setQoS(m)
	case "show_assoc":
		return b.showAssoc(m)
	case "cancel":
		return b.cancel(m)
	}
	return nil, nil, b.errorf("unknown form")
}

// formMap returns a form's value as a map, accepting the scalar shorthand of
// remove_account (the name) and an empty show_assoc.
func (b *slurmBuilder) formMap(v any) (map[string]any, error) {
	switch t := v.(type) {
	case map[string]any:
		allowed := formKeys[b.op]
		for k := range t {
			if !slices.Contains(allowed, k) {
				return nil, b.errorf("unknown key %q (known: %s)", k, strings.Join(allowed, ", "))
			}
		}
		return t, nil
	case nil:
		if b.op == "show_assoc" {
			return map[string]any{}, nil
		}
	case string, []any:
		if b.op == "remove_account" {
			return map[string]any{"name": t}, nil
		}
	}
	return nil, b.errorf("takes a mapping of %s, got %s", strings.Join(formKeys[b.op], ", "), describe(v))
}

func sacctmgr(writes bool, args ...string) slurmCommand {
	return slurmCommand{tool: "sacctmgr", args: args, writes: writes, table: !writes}
}

func (b *slurmBuilder) withCluster(args []string) []string {
	if b.cluster == "" {
		return args
	}
	return append(args, "cluster="+b.cluster)
}

func (b *slurmBuilder) addAccount(m map[string]any) ([]slurmCommand, Result, error) {
	name, err := b.name(m, "name", true)
	if err != nil {
		return nil, nil, err
	}
	args := []string{"add", "account", name}
	for _, o := range []struct{ key, arg string }{{"parent", "parent"}, {"default_qos", "defaultqos"}} {
		v, err := b.name(m, o.key, false)
		if err != nil {
			return nil, nil, err
		}
		if v != "" {
			args = append(args, o.arg+"="+v)
		}
	}
	if qos, present, err := b.names(m, "qos", false); err != nil {
		return nil, nil, err
	} else if present && len(qos) > 0 {
		args = append(args, "qos="+strings.Join(qos, ","))
	}
	for _, k := range []string{"description", "organization"} {
		t, err := b.text(m, k)
		if err != nil {
			return nil, nil, err
		}
		if t != "" {
			args = append(args, k+"="+t)
		}
	}
	if fs, err := b.setting(m, "fairshare"); err != nil {
		return nil, nil, err
	} else if fs != "" {
		args = append(args, "fairshare="+fs)
	}
	return []slurmCommand{sacctmgr(true, b.withCluster(args)...)}, nil, nil
}

// where returns "where <conditions> [cluster=<c>]".
func (b *slurmBuilder) where(conds ...string) []string {
	return b.withCluster(append([]string{"where"}, conds...))
}

func (b *slurmBuilder) modifyAccount(m map[string]any) ([]slurmCommand, Result, error) {
	names, err := b.nameList(m, "name")
	if err != nil || len(names) == 0 {
		return nil, nil, err
	}
	set, ok := m["set"].(map[string]any)
	if !ok || len(set) == 0 {
		return nil, nil, b.errorf("set must be a non-empty mapping of settings, got %s", describe(m["set"]))
	}
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := append([]string{"modify", "account"}, b.where("name="+strings.Join(names, ","))...)
	args = append(args, "set")
	for _, k := range keys {
		if !settingKey.MatchString(k) {
			return nil, nil, b.errorf("set: key %q refused: a setting name holds letters, digits and _ only", k)
		}
		var val string
		switch strings.ToLower(k) {
		case "description", "organization":
			s, isStr := set[k].(string)
			if !isStr || s == "" {
				return nil, nil, b.errorf("set.%s must be non-empty text, got %s", k, describe(set[k]))
			}
			if err := checkText(s); err != nil {
				return nil, nil, b.errorf("set.%s %q refused: %v", k, s, err)
			}
			val = s
		default:
			v, err := settingValue(set[k])
			if err != nil {
				return nil, nil, b.errorf("set.%s: %v", k, err)
			}
			val = v
		}
		args = append(args, k+"="+val)
	}
	return []slurmCommand{sacctmgr(true, args...)}, nil, nil
}

func (b *slurmBuilder) removeAccount(m map[string]any) ([]slurmCommand, Result, error) {
	names, err := b.nameList(m, "name")
	if err != nil || len(names) == 0 {
		return nil, nil, err
	}
	args := append([]string{"remove", "account"}, b.where("name="+strings.Join(names, ","))...)
	return []slurmCommand{sacctmgr(true, args...)}, nil, nil
}

func (b *slurmBuilder) addUser(m map[string]any) ([]slurmCommand, Result, error) {
	users, err := b.nameList(m, "user")
	if err != nil {
		return nil, nil, err
	}
	accounts, err := b.nameList(m, "account")
	if err != nil || len(users) == 0 || len(accounts) == 0 {
		return nil, nil, err
	}
	args := []string{"add", "user", strings.Join(users, ","), "account=" + strings.Join(accounts, ",")}
	for _, o := range []struct{ key, arg string }{{"default_account", "defaultaccount"}, {"partition", "partition"}, {"default_qos", "defaultqos"}} {
		v, err := b.name(m, o.key, false)
		if err != nil {
			return nil, nil, err
		}
		if v != "" {
			args = append(args, o.arg+"="+v)
		}
	}
	if qos, present, err := b.names(m, "qos", false); err != nil {
		return nil, nil, err
	} else if present && len(qos) > 0 {
		args = append(args, "qos="+strings.Join(qos, ","))
	}
	if fs, err := b.setting(m, "fairshare"); err != nil {
		return nil, nil, err
	} else if fs != "" {
		args = append(args, "fairshare="+fs)
	}
	return []slurmCommand{sacctmgr(true, b.withCluster(args)...)}, nil, nil
}

func (b *slurmBuilder) removeUser(m map[string]any) ([]slurmCommand, Result, error) {
	all := false
	if v, ok := m["all_users"]; ok && v != nil {
		bv, isBool := v.(bool)
		if !isBool {
			return nil, nil, b.errorf("all_users must be true or false, got %s", describe(v))
		}
		all = bv
	}
	_, hasUser := m["user"]
	if all == hasUser {
		return nil, nil, b.errorf("give user (a name or a list) or all_users: true, exactly one")
	}
	accounts, err := b.nameList(m, "account")
	if err != nil || len(accounts) == 0 {
		return nil, nil, err
	}
	var conds []string
	if hasUser {
		users, err := b.nameList(m, "user")
		if err != nil || len(users) == 0 {
			return nil, nil, err
		}
		conds = append(conds, "name="+strings.Join(users, ","))
	}
	conds = append(conds, "account="+strings.Join(accounts, ","))
	args := append([]string{"remove", "user"}, b.where(conds...)...)
	return []slurmCommand{sacctmgr(true, args...)}, nil, nil
}

// tresKinds are the association limits set_limits may set, by lower-case name.
var tresKinds = map[string]string{}

func init() {
	for _, k := range []string{"GrpTRESMins", "GrpTRES", "GrpTRESRunMins", "MaxTRES", "MaxTRESMins", "MaxTRESPerJob", "MaxTRESPerNode", "MaxTRESMinsPerJob"} {
		tresKinds[strings.ToLower(k)] = k
	}
}

func (b *slurmBuilder) setLimits(m map[string]any) ([]slurmCommand, Result, error) {
	accounts, err := b.nameList(m, "account")
	if err != nil {
		return nil, nil, err
	}
	kind := "GrpTRESMins"
	if v, ok := m["kind"]; ok && v != nil && v != "" {
		s, _ := v.(string)
		k, known := tresKinds[strings.ToLower(s)]
		if !known {
			names := make([]string, 0, len(tresKinds))
			for _, n := range tresKinds {
				names = append(names, n)
			}
			sort.Strings(names)
			return nil, nil, b.errorf("kind %v: want one of %s", v, strings.Join(names, ", "))
		}
		kind = k
	}
	limits, ok := m["limits"].(map[string]any)
	if !ok {
		if m["limits"] != nil {
			return nil, nil, b.errorf("limits must be a mapping of TRES to numbers, got %s", describe(m["limits"]))
		}
		limits = map[string]any{}
	}
	factors, err := numberMap(m, "factors")
	if err != nil {
		return nil, nil, b.errorf("%v", err)
	}
	rename := map[string]string{}
	if v, ok := m["tres"]; ok && v != nil {
		t, isMap := v.(map[string]any)
		if !isMap {
			return nil, nil, b.errorf("tres must map components to TRES names, got %s", describe(v))
		}
		for k, n := range t {
			s, isStr := n.(string)
			if !isStr || !tresName.MatchString(s) {
				return nil, nil, b.errorf("tres.%s: %v is not a TRES name (cpu, mem, gres/gpu, billing, ...)", k, n)
			}
			rename[k] = s
		}
	}
	keys := make([]string, 0, len(limits))
	for k := range limits {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	applied := map[string]any{}
	ignored := []any{}
	var parts []string
	for _, k := range keys {
		if limits[k] == nil || (factors != nil && !hasKey(factors, k)) {
			ignored = append(ignored, k)
			continue
		}
		name := k
		if r, ok := rename[k]; ok {
			name = r
		}
		if !tresName.MatchString(name) {
			return nil, nil, b.errorf("limits: %q is not a TRES name (cpu, mem, gres/gpu, billing, ...)", name)
		}
		n, err := toNumber(limits[k])
		if err != nil {
			return nil, nil, b.errorf("limits.%s: %v", k, err)
		}
		var v int64
		if n == -1 {
			v = -1 // clears the limit: never scaled
		} else {
			if n < 0 {
				return nil, nil, b.errorf("limits.%s: %v is negative (only -1, which clears a limit, is allowed)", k, n)
			}
			f := 1.0
			if factors != nil {
				f = factors[k]
			}
			scaled := math.Round(n * f)
			if scaled > math.MaxInt64/2 {
				return nil, nil, b.errorf("limits.%s: %v × %v is too large", k, n, f)
			}
			v = int64(scaled)
		}
		applied[name] = v
		parts = append(parts, name+"="+strconv.FormatInt(v, 10))
	}
	extra := Result{"applied": applied, "ignored": ignored}
	if len(parts) == 0 || len(accounts) == 0 {
		return nil, extra, nil
	}
	set := []string{"set", kind + "=" + strings.Join(parts, ",")}
	if _, hasUser := m["user"]; hasUser {
		users, err := b.nameList(m, "user")
		if err != nil || len(users) == 0 {
			return nil, extra, err
		}
		args := append([]string{"modify", "user"}, b.where("name="+strings.Join(users, ","), "account="+strings.Join(accounts, ","))...)
		return []slurmCommand{sacctmgr(true, append(args, set...)...)}, extra, nil
	}
	args := append([]string{"modify", "account"}, b.where("name="+strings.Join(accounts, ","))...)
	return []slurmCommand{sacctmgr(true, append(args, set...)...)}, extra, nil
}

func (b *slurmBuilder) setQoS(m map[string]any) ([]slurmCommand, Result, error) {
	accounts, err := b.nameList(m, "account")
	if err != nil {
		return nil, nil, err
	}
	qos, err := b.nameList(m, "qos")
	if err != nil {
		return nil, nil, err
	}
	if len(qos) == 0 {
		return nil, nil, b.errorf("qos is empty")
	}
	def, err := b.name(m, "default_qos", false)
	if err != nil || len(accounts) == 0 {
		return nil, nil, err
	}
	args := append([]string{"modify", "account"}, b.where("name="+strings.Join(accounts, ","))...)
	args = append(args, "set", "qos="+strings.Join(qos, ","))
	if def != "" {
		args = append(args, "defaultqos="+def)
	}
	return []slurmCommand{sacctmgr(true, args...)}, nil, nil
}

// defaultAssocFormat are the columns show_assoc asks for by default.
var defaultAssocFormat = []string{"Cluster", "Account", "User", "Partition", "ParentName", "Share", "GrpTRESMins", "GrpTRES", "MaxTRESMins", "QOS", "DefaultQOS"}

func (b *slurmBuilder) showAssoc(m map[string]any) ([]slurmCommand, Result, error) {
	var conds []string
	for _, k := range []string{"account", "user", "parent"} {
		names, present, err := b.names(m, k, false)
		if err != nil {
			return nil, nil, err
		}
		if !present {
			continue
		}
		if len(names) == 0 { // an empty filter matches nothing: do not list everything
			return nil, nil, nil
		}
		conds = append(conds, k+"="+strings.Join(names, ","))
	}
	format := defaultAssocFormat
	if _, ok := m["format"]; ok {
		f, _, err := b.names(m, "format", true)
		if err != nil {
			return nil, nil, err
		}
		if len(f) > 0 {
			format = f
		}
	}
	args := []string{"show", "assoc"}
	if len(conds) > 0 || b.cluster != "" {
		args = append(args, b.where(conds...)...)
	}
	args = append(args, "format="+strings.Join(format, ","))
	return []slurmCommand{sacctmgr(false, args...)}, nil, nil
}

func (b *slurmBuilder) cancel(m map[string]any) ([]slurmCommand, Result, error) {
	accounts, err := b.nameList(m, "account")
	if err != nil {
		return nil, nil, err
	}
	users := []string{""}
	if _, ok := m["user"]; ok {
		if users, err = b.nameList(m, "user"); err != nil {
			return nil, nil, err
		}
	}
	var cmds []slurmCommand
	for _, a := range accounts {
		for _, u := range users {
			var args []string
			if b.cluster != "" {
				args = append(args, "--clusters="+b.cluster)
			}
			args = append(args, "--account="+a)
			if u != "" {
				args = append(args, "--user="+u)
			}
			cmds = append(cmds, slurmCommand{tool: "scancel", args: append(args, "--full"), writes: true})
		}
	}
	return cmds, nil, nil
}

// --- parameter checks ---

var (
	nameRE     = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.@-]*$`)
	settingKey = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)
	settingVal = regexp.MustCompile(`^[A-Za-z0-9_.,:=@/+*%-]+$`)
	tresName   = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*(/[A-Za-z0-9_.:-]+)?$`)
)

// maxNameLen bounds names; SLURM's own limits are lower than any sane use.
const maxNameLen = 128

// checkName explains why s is not a safe SLURM name, or returns nil.
func checkName(s string) error {
	switch {
	case s == "":
		return errors.New("empty")
	case strings.HasPrefix(s, "-"):
		return errors.New(`starts with "-" (would be read as an option)`)
	case strings.ContainsFunc(s, unicode.IsControl):
		return errors.New("contains control characters")
	case strings.ContainsFunc(s, unicode.IsSpace):
		return errors.New("contains whitespace")
	case strings.Contains(s, "="):
		return errors.New(`contains "=" (would be read as another setting)`)
	case strings.Contains(s, ","):
		return errors.New(`contains "," (would be read as a list)`)
	case len(s) > maxNameLen:
		return fmt.Errorf("longer than %d bytes", maxNameLen)
	case !nameRE.MatchString(s):
		return errors.New("a name may hold only letters, digits and _ . @ -")
	}
	return nil
}

// checkText explains why s is not acceptable free text (a description or
// an organization), or returns nil. Free text goes to sacctmgr as one
// argument, key=text, never through a shell: spaces, quotes, = and ; are
// harmless there (sacctmgr stores quotes as `); control characters are not
// accepted.
func checkText(s string) error {
	switch {
	case !utf8.ValidString(s):
		return errors.New("not valid UTF-8")
	case strings.ContainsFunc(s, unicode.IsControl):
		return errors.New("contains control characters (newlines, tabs, ...)")
	case len(s) > 1024:
		return errors.New("longer than 1024 bytes")
	}
	return nil
}

// checkArg explains why s may not be a raw argument, or returns nil. The
// action adds its own options; arguments may not add more.
func checkArg(s string) error {
	switch {
	case s == "":
		return errors.New("empty")
	case strings.HasPrefix(s, "-"):
		return errors.New(`starts with "-" (options are the action's own)`)
	case strings.ContainsFunc(s, unicode.IsControl):
		return errors.New("contains control characters")
	case !utf8.ValidString(s):
		return errors.New("not valid UTF-8")
	}
	return nil
}

// name returns the optional (or required) single name under key; "" when
// absent, null or empty and not required.
func (b *slurmBuilder) name(m map[string]any, key string, required bool) (string, error) {
	v, ok := m[key]
	if !ok || v == nil || v == "" {
		if required {
			return "", b.errorf("missing %s", key)
		}
		return "", nil
	}
	s, err := scalarString(v)
	if err != nil {
		return "", b.errorf("%s: %v", key, err)
	}
	if err := checkName(s); err != nil {
		return "", b.errorf("%s %q refused: %v", key, s, err)
	}
	return s, nil
}

// nameList returns the required name or list of names under key. An empty
// list is allowed (nothing to do); an empty or missing name is not.
func (b *slurmBuilder) nameList(m map[string]any, key string) ([]string, error) {
	out, _, err := b.names(m, key, true)
	return out, err
}

// names returns the name or names under key and whether the key is given.
// Duplicates are dropped, order kept.
func (b *slurmBuilder) names(m map[string]any, key string, required bool) ([]string, bool, error) {
	v, ok := m[key]
	if !ok || v == nil || (!required && v == "") {
		if required {
			return nil, false, b.errorf("missing %s", key)
		}
		return nil, false, nil
	}
	var items []any
	switch t := v.(type) {
	case []any:
		items = t
	default:
		items = []any{t}
	}
	out := make([]string, 0, len(items))
	for i, it := range items {
		s, err := scalarString(it)
		if err != nil {
			return nil, true, b.errorf("%s[%d]: %v", key, i, err)
		}
		if err := checkName(s); err != nil {
			if len(items) == 1 {
				return nil, true, b.errorf("%s %q refused: %v", key, s, err)
			}
			return nil, true, b.errorf("%s[%d] %q refused: %v", key, i, s, err)
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, true, nil
}

// text returns the optional free text under key ("" when absent).
func (b *slurmBuilder) text(m map[string]any, key string) (string, error) {
	v, ok := m[key]
	if !ok || v == nil {
		return "", nil
	}
	s, err := scalarString(v)
	if err != nil {
		return "", b.errorf("%s: %v", key, err)
	}
	if err := checkText(s); err != nil {
		return "", b.errorf("%s %q refused: %v", key, s, err)
	}
	return s, nil
}

// setting returns the optional setting value under key ("" when absent).
func (b *slurmBuilder) setting(m map[string]any, key string) (string, error) {
	v, ok := m[key]
	if !ok || v == nil || v == "" {
		return "", nil
	}
	s, err := settingValue(v)
	if err != nil {
		return "", b.errorf("%s: %v", key, err)
	}
	return s, nil
}

// settingValue formats a value of a sacctmgr setting (key=value): a number,
// a word, a list (joined by commas) or a map of TRES (cpu=1,mem=2).
func settingValue(v any) (string, error) {
	var s string
	switch t := v.(type) {
	case []any:
		parts := make([]string, len(t))
		for i, it := range t {
			p, err := settingValue(it)
			if err != nil {
				return "", err
			}
			parts[i] = p
		}
		s = strings.Join(parts, ",")
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			if !tresName.MatchString(k) {
				return "", fmt.Errorf("%q is not a TRES name", k)
			}
			n, err := toNumber(t[k])
			if err != nil {
				return "", fmt.Errorf("%s: %v", k, err)
			}
			parts[i] = k + "=" + strconv.FormatInt(int64(math.Round(n)), 10)
		}
		s = strings.Join(parts, ",")
	default:
		var err error
		if s, err = scalarString(v); err != nil {
			return "", err
		}
	}
	if s == "" {
		return "", errors.New("empty value (use -1 to clear a limit)")
	}
	if !settingVal.MatchString(s) {
		return "", fmt.Errorf("value %q refused: a setting may hold only letters, digits and _ . , : = @ / + * %% -", s)
	}
	return s, nil
}

// scalarString formats a string, number or boolean parameter.
func scalarString(v any) (string, error) {
	switch t := v.(type) {
	case string:
		return t, nil
	case bool:
		return strconv.FormatBool(t), nil
	case int:
		return strconv.Itoa(t), nil
	case int64:
		return strconv.FormatInt(t, 10), nil
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64), nil
	}
	return "", fmt.Errorf("want a string, got %s", describe(v))
}

// toNumber reads a number given as a number or a numeric string.
func toNumber(v any) (float64, error) {
	switch t := v.(type) {
	case int:
		return float64(t), nil
	case int64:
		return float64(t), nil
	case float64:
		if math.IsNaN(t) || math.IsInf(t, 0) {
			return 0, fmt.Errorf("%v is not a number", t)
		}
		return t, nil
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, fmt.Errorf("%q is not a number", t)
		}
		return f, nil
	}
	return 0, fmt.Errorf("want a number, got %s", describe(v))
}

// numberMap reads an optional map of numbers (nil when absent).
func numberMap(m map[string]any, key string) (map[string]float64, error) {
	v, ok := m[key]
	if !ok || v == nil {
		return nil, nil
	}
	t, isMap := v.(map[string]any)
	if !isMap {
		return nil, fmt.Errorf("%s must be a mapping of numbers, got %s", key, describe(v))
	}
	out := make(map[string]float64, len(t))
	for k, x := range t {
		n, err := toNumber(x)
		if err != nil {
			return nil, fmt.Errorf("%s.%s: %v", key, k, err)
		}
		out[k] = n
	}
	return out, nil
}

func hasKey[V any](m map[string]V, k string) bool {
	_, ok := m[k]
	return ok
}

// describe names a value's kind for error messages.
func describe(v any) string {
	switch t := v.(type) {
	case nil:
		return "nothing"
	case string:
		return fmt.Sprintf("%q", t)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("%v (%T)", v, v)
}

func toAnySlice(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}
