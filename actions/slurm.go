package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
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

// paramKind is the literal type a friendly form's parameter takes, for the
// load-time check and the reference.
type paramKind int

const (
	kindName  paramKind = iota // one name (string or number)
	kindNames                  // a name or a list of names
	kindText                   // free text
	kindBool                   // true or false
	kindMap                    // a mapping
	kindValue                  // a setting value: number, word, list or TRES mapping
)

func (k paramKind) String() string {
	return [...]string{"name", "name or list of names", "text", "true/false", "mapping", "value"}[k]
}

// slurmParam is one parameter of a friendly form.
type slurmParam struct {
	Key      string
	Kind     paramKind
	Required bool
	Doc      string
}

// slurmFormSpec describes one friendly form: its parameters, what it does,
// and an example whose commands (from Preview) the reference shows.
type slurmFormSpec struct {
	Name    string
	Doc     string
	Params  []slurmParam
	Example any
	// scalar is true when the form also takes a bare name (or list) as its
	// value, standing for the first parameter.
	scalar bool
	// empty is true when the form may be given without a value.
	empty bool
}

// slurmFormTable is the one description of the friendly forms: plan,
// CheckSlurmParams and the generated reference all read it.
var slurmFormTable = []slurmFormSpec{
	{Name: "add_account", Doc: "Creates an account (no-op when it exists), then reads it back: the step fails, permanently, when an account of that name exists under another parent (someone else's account is never adopted).",
		Params: []slurmParam{
			{"name", kindName, true, "the account"},
			{"parent", kindName, false, "its parent account; checked on read-back"},
			{"description", kindText, false, "free text (sacctmgr lowercases it)"},
			{"organization", kindText, false, "free text (sacctmgr lowercases it)"},
			{"fairshare", kindValue, false, "Fairshare= (a number or parent)"},
			{"qos", kindNames, false, "QOS= list"},
			{"default_qos", kindName, false, "DefaultQOS="},
		},
		Example: map[string]any{"name": "hpc_alloc1", "parent": "hpc_proj1", "description": "Allocation 1", "organization": "uni"}},
	{Name: "modify_account", Doc: "Changes settings of accounts (fairshare, RawUsage=0, GrpJobs, description, ...).",
		Params: []slurmParam{
			{"name", kindNames, true, "the account(s)"},
			{"set", kindMap, true, "settings: key: value (values: numbers, words, lists, TRES mappings)"},
		},
		Example: map[string]any{"name": "hpc_alloc1", "set": map[string]any{"fairshare": 100, "RawUsage": 0}}},
	{Name: "remove_account", Doc: "Removes accounts (sacctmgr removes a parent's whole subtree), then reads back that no association of them is left.",
		Params: []slurmParam{{"name", kindNames, true, "the account(s)"}}, scalar: true,
		Example: "hpc_alloc1"},
	{Name: "add_user", Doc: "Adds users to accounts (no-op for existing associations), then reads back that every user × account (× partition) association exists.",
		Params: []slurmParam{
			{"user", kindNames, true, "the user(s)"},
			{"account", kindNames, true, "the account(s)"},
			{"default_account", kindName, false, "DefaultAccount= of the users (sacctmgr adds an association with it when missing)"},
			{"partition", kindNames, false, "Partition= list: one association per partition"},
			{"qos", kindNames, false, "QOS= list of the new associations"},
			{"default_qos", kindName, false, "DefaultQOS= of the new associations"},
			{"fairshare", kindValue, false, "Fairshare= (the agent uses parent)"},
		},
		Example: map[string]any{"user": []any{"alice", "bob"}, "account": "hpc_alloc1", "default_account": "root", "fairshare": "parent"}},
	{Name: "remove_user", Doc: "Removes users' associations with accounts, one account at a time. A user whose default account is being removed and who keeps other associations first gets another of them as default (preferring accounts this step keeps); a user's last association goes with the user. Each account is read back afterwards. A failure on one account does not stop the others; the step fails with the first error.",
		Params: []slurmParam{
			{"user", kindNames, false, "the user(s); give user or all_users"},
			{"all_users", kindBool, false, "true: every user of the accounts"},
			{"account", kindNames, true, "the account(s)"},
		},
		Example: map[string]any{"user": "alice", "account": []any{"hpc_alloc1", "hpc_alloc2"}}},
	{Name: "set_default_account", Doc: "Sets users' DefaultAccount (they must have an association with it), then reads it back.",
		Params: []slurmParam{
			{"user", kindNames, true, "the user(s)"},
			{"account", kindName, true, "the new default account"},
		},
		Example: map[string]any{"user": "alice", "account": "hpc_alloc1"}},
	{Name: "set_limits", Doc: "Sets TRES limits of accounts (or of users' associations): limits × factors, renamed by tres; components without a factor (when factors is given) and null limits are left out and listed in ignored; -1 clears a limit.",
		Params: []slurmParam{
			{"account", kindNames, true, "the account(s)"},
			{"limits", kindMap, true, "component: amount"},
			{"kind", kindName, false, "GrpTRESMins (default), GrpTRES, GrpTRESRunMins, MaxTRES, MaxTRESMins, MaxTRESPerJob, MaxTRESPerNode, MaxTRESMinsPerJob"},
			{"factors", kindMap, false, "component: unit factor"},
			{"tres", kindMap, false, "component: TRES name, e.g. gpu: gres/gpu"},
			{"user", kindNames, false, "per-user limits on these users' associations"},
		},
		Example: map[string]any{"account": "hpc_alloc1", "limits": map[string]any{"cpu": 10, "mem": 2}, "factors": map[string]any{"cpu": 60000, "mem": 61440}}},
	{Name: "set_qos", Doc: "Sets the QOS list (and default QOS) of accounts.",
		Params: []slurmParam{
			{"account", kindNames, true, "the account(s)"},
			{"qos", kindNames, true, "QOS= list"},
			{"default_qos", kindName, false, "DefaultQOS="},
		},
		Example: map[string]any{"account": "hpc_alloc1", "qos": "paused"}},
	{Name: "show_assoc", Doc: "Lists associations as rows (steps.<id>.rows, keys lowercased: account, user, parentname, grptresmins (+ grptresmins_map), ...). An empty filter list lists nothing.",
		Params: []slurmParam{
			{"account", kindNames, false, "filter"},
			{"user", kindNames, false, "filter"},
			{"parent", kindNames, false, "filter"},
			{"format", kindNames, false, "columns (default Cluster,Account,User,Partition,ParentName,Share,GrpTRESMins,GrpTRES,MaxTRESMins,QOS,DefaultQOS)"},
		}, empty: true,
		Example: map[string]any{"account": "hpc_alloc1", "format": []any{"Account", "User"}}},
	{Name: "cancel", Doc: "Cancels the jobs of accounts (of some users), one scancel per account × user; every one runs even when one fails.",
		Params: []slurmParam{
			{"account", kindNames, true, "the account(s)"},
			{"user", kindNames, false, "only these users' jobs"},
		},
		Example: map[string]any{"account": "hpc_alloc1", "user": "alice"}},
}

// slurmForms are the friendly forms of a slurm step, one operation each.
var slurmForms = func() []string {
	out := make([]string, len(slurmFormTable))
	for i, f := range slurmFormTable {
		out[i] = f.Name
	}
	return out
}()

// formKeys are the keys each friendly form accepts.
var formKeys = func() map[string][]string {
	out := map[string][]string{}
	for _, f := range slurmFormTable {
		for _, p := range f.Params {
			out[f.Name] = append(out[f.Name], p.Key)
		}
	}
	return out
}()

func formSpec(name string) (slurmFormSpec, bool) {
	i := slices.IndexFunc(slurmFormTable, func(f slurmFormSpec) bool { return f.Name == name })
	if i < 0 {
		return slurmFormSpec{}, false
	}
	return slurmFormTable[i], true
}

var slurmSpec = Spec{
	Keys:      append([]string{"args", "command", "cluster"}, slurmForms...),
	Shorthand: "args",
}

// slurmTools are the commands a slurm step may run.
var slurmTools = []string{"sacctmgr", "scancel", "sacct", "scontrol"}

// Slurm runs SLURM commands as argv, never through a shell. A step gives
// either raw arguments (args, with command naming the tool, sacctmgr by
// default) or exactly one friendly form (see slurmFormTable and the
// generated reference, examples/slurm-site/SLURM-REFERENCE.md).
//
// Names (accounts, users, QoS, partitions, clusters) are checked before
// anything runs: letters, digits and _ . @ -, not starting with -. user and
// account (and name of modify/remove_account) also take lists, which become
// sacctmgr's comma-separated lists; an empty list means there is nothing to
// do. sacctmgr runs with --parsable2 --noheader --immediate; its no-op
// answers ("Nothing new added", "Nothing deleted", "Nothing modified",
// "already exists") count as success with changed: false. Forms that create
// or remove associations read them back before they report success.
//
// Steps that write hold a lock of their cluster for their whole run: see
// clusterLocks.
type Slurm struct {
	cfg   SlurmConfig
	locks *clusterLocks
}

// NewSlurm returns a slurm action.
func NewSlurm(cfg SlurmConfig) *Slurm { return &Slurm{cfg: cfg, locks: &clusterLocks{}} }

// clusterLocks serialise the writing steps of one process to one cluster's
// slurmdbd. Why: slurmdbd does not isolate concurrent sacctmgr sessions.
// Two `sacctmgr add user` run at once against one slurmdbd both exit 0, yet
// the associations of one of them can be lost (each session commits the
// association tree as it read it); parallel plans (the runner's
// concurrency) would then report users added that are not. A step's
// commands and their read-backs run under the lock, so a read-back sees the
// effect of its own step and nothing half-done by another. The lock is per
// process: a second writer elsewhere (another agent, a person) is not
// covered, which the read-backs would reveal as a failed step.
type clusterLocks struct {
	mu sync.Mutex
	m  map[string]chan struct{}
}

// lock takes the lock of key, or gives up when ctx ends.
func (l *clusterLocks) lock(ctx context.Context, key string) (func(), error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]chan struct{}{}
	}
	ch, ok := l.m[key]
	if !ok {
		ch = make(chan struct{}, 1)
		l.m[key] = ch
	}
	l.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("slurm: waiting for the cluster lock: %w", ctx.Err())
	}
}

// slurmCommand is one command a slurm step runs.
type slurmCommand struct {
	tool string   // sacctmgr, scancel, sacct or scontrol
	args []string // after the tool's own flags
	// table is true when the output is a table with a header line that
	// becomes rows (sacctmgr show/list, sacct).
	table bool
	// writes is true when the command changes something.
	writes bool
	// check is true for the step's own reads (look-ups, read-backs): their
	// rows are not the step's rows.
	check bool
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

// slurmOp is one operation of a step. It issues its commands through x,
// whose answers (look-ups, read-backs) decide what it does next.
type slurmOp func(ctx context.Context, x *slurmExec) error

// slurmPlan is what a step's parameters become.
type slurmPlan struct {
	ops    []slurmOp
	extra  Result // keys added to the result (set_limits: applied, ignored)
	writes bool   // the step changes something: it holds the cluster lock
	lockID string // which lock
}

// slurmExec runs (or, previewing, records) a step's commands.
type slurmExec struct {
	cfg     SlurmConfig
	preview bool
	env     map[string]string

	argvs          [][]string
	stdout, stderr strings.Builder
	exitCode       int
	changed        bool
	rows           []any
	rowsSet        bool
}

// run issues one command. It returns the command's rows for table output.
// Previewing, it only records the command and answers with no rows: the
// state every look-up and read-back is then taken to show is the one the
// step expects, so a preview lists no repairs.
func (x *slurmExec) run(ctx context.Context, c slurmCommand) ([]any, error) {
	argv := c.argv(x.cfg)
	x.argvs = append(x.argvs, argv)
	if x.preview {
		return nil, nil
	}
	out, err := RunCommand(ctx, ExecParams{Argv: argv, Env: x.env}, nil)
	if out != nil {
		x.stdout.WriteString(out["stdout"].(string))
		x.stderr.WriteString(out["stderr"].(string))
		if code := out["exit_code"].(int); code != 0 && x.exitCode == 0 {
			x.exitCode = code
		}
	}
	if err := judge(c, argv, out, err); err != nil {
		return nil, err
	}
	if out == nil || out["exit_code"].(int) != 0 {
		return nil, nil // a no-op answer
	}
	if c.writes {
		x.changed = true
	}
	if !c.table {
		return nil, nil
	}
	rows := parseTable(out["stdout"].(string))
	if !c.check {
		x.rows, x.rowsSet = rows, true
	}
	return rows, nil
}

// runAll runs a plan's operations in order. An operation's failure does not
// stop the next ones (each account of a removal is tried); the first error
// is the step's. The end of ctx stops everything.
func (x *slurmExec) runAll(ctx context.Context, ops []slurmOp) error {
	var first error
	for _, op := range ops {
		if err := op(ctx, x); err != nil {
			if ctx.Err() != nil {
				return err
			}
			if first == nil {
				first = err
			}
		}
	}
	return first
}

// Preview returns the command lines (binary first, with every option Run
// adds) that Run would issue for this request, in order, read-backs and
// look-ups included, or the error with which Run would refuse it. It runs
// the very code Run runs, with each look-up and read-back taken to show
// what the step expects: commands that only a different state calls for
// (moving a user's default account before a removal) are not listed.
func (s *Slurm) Preview(req Request) ([][]string, error) {
	p, err := s.plan(req.Params)
	if err != nil {
		return nil, err
	}
	x := &slurmExec{cfg: s.cfg, preview: true}
	if err := x.runAll(context.Background(), p.ops); err != nil {
		return nil, err
	}
	if x.argvs == nil {
		return [][]string{}, nil
	}
	return x.argvs, nil
}

// Run implements Action.
func (s *Slurm) Run(ctx context.Context, req Request) (Result, error) {
	p, err := s.plan(req.Params)
	if err != nil {
		return nil, err
	}
	x := &slurmExec{cfg: s.cfg}
	if s.cfg.Conf != "" {
		x.env = map[string]string{"SLURM_CONF": s.cfg.Conf}
	}
	if p.writes && len(p.ops) > 0 {
		unlock, err := s.locks.lock(ctx, p.lockID)
		if err != nil {
			return nil, err
		}
		defer unlock()
	}
	runErr := x.runAll(ctx, p.ops)
	res := Result{"exit_code": x.exitCode, "stdout": x.stdout.String(), "stderr": x.stderr.String(),
		"rows": []any{}, "changed": x.changed, "commands": []any{}}
	if x.rowsSet {
		res["rows"] = x.rows
	}
	for k, v := range p.extra {
		res[k] = v
	}
	if len(x.argvs) > 0 {
		cmds := make([]any, len(x.argvs))
		for i, a := range x.argvs {
			cmds[i] = toAnySlice(a)
		}
		res["commands"] = cmds
	}
	return res, runErr
}

// do is an operation of one command.
func do(c slurmCommand) slurmOp {
	return func(ctx context.Context, x *slurmExec) error {
		_, err := x.run(ctx, c)
		return err
	}
}

// doAll turns commands into operations, one each.
func doAll(cmds []slurmCommand) []slurmOp {
	ops := make([]slurmOp, len(cmds))
	for i, c := range cmds {
		ops[i] = do(c)
	}
	return ops
}

// verified is an operation of a command confirmed by a read-back: expect
// judges the rows of check (skipped in previews).
func verified(c, check slurmCommand, expect func(rows []any) error) slurmOp {
	return func(ctx context.Context, x *slurmExec) error {
		if _, err := x.run(ctx, c); err != nil {
			return err
		}
		rows, err := x.run(ctx, check)
		if err != nil {
			return fmt.Errorf("reading back: %w", err)
		}
		if x.preview {
			return nil
		}
		return expect(rows)
	}
}

// lookup is a read a step makes for itself.
func (b *slurmBuilder) lookup(args ...string) slurmCommand {
	return slurmCommand{tool: "sacctmgr", args: args, table: true, check: true}
}

// rowField returns a row's value under key, "" when absent.
func rowField(row any, key string) string {
	m, _ := row.(map[string]any)
	s, _ := m[key].(string)
	return s
}

// judge turns a command's outcome into the step's error: nil for success
// and for sacctmgr's no-op answers, a retryable error for failures to reach
// slurmdbd or slurmctld, a permanent one for everything else.
func judge(c slurmCommand, argv []string, out Result, err error) error {
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

// plan checks a step's parameters and turns them into operations. Every
// error is permanent: the same parameters will never pass.
func (s *Slurm) plan(params map[string]any) (*slurmPlan, error) {
	var forms []string
	for _, f := range slurmForms {
		if _, ok := params[f]; ok {
			forms = append(forms, f)
		}
	}
	_, hasArgs := params["args"]
	switch {
	case len(forms) > 1:
		return nil, Permanent(fmt.Errorf("slurm: one operation per step, got %s", strings.Join(forms, " and ")))
	case len(forms) == 1 && hasArgs:
		return nil, Permanent(fmt.Errorf("slurm: give args or %s, not both", forms[0]))
	case len(forms) == 0 && !hasArgs:
		return nil, Permanent(fmt.Errorf("slurm: nothing to run: give args or one of %s", strings.Join(slurmForms, ", ")))
	}
	cluster, err := s.cluster(params)
	if err != nil {
		return nil, err
	}
	b := &slurmBuilder{cluster: cluster}
	p := &slurmPlan{lockID: s.cfg.Conf + "\x00" + cluster}
	if hasArgs {
		b.op = "args"
		cmd, err := b.raw(params)
		if err != nil {
			return nil, Permanent(err)
		}
		p.ops, p.writes = []slurmOp{do(cmd)}, cmd.writes
		return p, nil
	}
	b.op = forms[0]
	if c, ok := params["command"]; ok && c != nil && c != "" {
		want := "sacctmgr"
		if b.op == "cancel" {
			want = "scancel"
		}
		if c != want {
			return nil, Permanent(fmt.Errorf("slurm %s: runs %s, not %v (leave command out)", b.op, want, c))
		}
	}
	ops, extra, err := b.form(params[b.op])
	if err != nil {
		return nil, Permanent(err)
	}
	p.ops, p.extra = ops, extra
	p.writes = b.op != "show_assoc"
	return p, nil
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

// form builds the operations of a friendly form from its value.
func (b *slurmBuilder) form(v any) ([]slurmOp, Result, error) {
	m, err := b.formMap(v)
	if err != nil {
		return nil, nil, err
	}
	simple := func(cmds []slurmCommand, extra Result, err error) ([]slurmOp, Result, error) {
		if err != nil {
			return nil, extra, err
		}
		return doAll(cmds), extra, nil
	}
	switch b.op {
	case "add_account":
		return b.addAccount(m)
	case "modify_account":
		return simple(b.modifyAccount(m))
	case "remove_account":
		return b.removeAccount(m)
	case "add_user":
		return b.addUser(m)
	case "remove_user":
		return b.removeUser(m)
	case "set_default_account":
		return b.setDefaultAccount(m)
	case "set_limits":
		return simple(b.setLimits(m))
	case "set_qos":
		return simple(b.setQoS(m))
	case "show_assoc":
		return simple(b.showAssoc(m))
	case "cancel":
		return simple(b.cancel(m))
	}
	return nil, nil, b.errorf("unknown form")
}

// formMap returns a form's value as a map, accepting the scalar shorthand of
// remove_account (the name) and an empty show_assoc.
func (b *slurmBuilder) formMap(v any) (map[string]any, error) {
	spec, _ := formSpec(b.op)
	switch t := v.(type) {
	case map[string]any:
		allowed := formKeys[b.op]
		for k := range t {
			if !slices.Contains(allowed, k) {
				return nil, b.errorf("unknown key %q%s (known: %s)", k, didYouMean(k, allowed), strings.Join(allowed, ", "))
			}
		}
		return t, nil
	case nil:
		if spec.empty {
			return map[string]any{}, nil
		}
	case string, []any:
		if spec.scalar {
			return map[string]any{spec.Params[0].Key: t}, nil
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

func (b *slurmBuilder) addAccount(m map[string]any) ([]slurmOp, Result, error) {
	name, err := b.name(m, "name", true)
	if err != nil {
		return nil, nil, err
	}
	parent, err := b.name(m, "parent", false)
	if err != nil {
		return nil, nil, err
	}
	args := []string{"add", "account", name}
	if parent != "" {
		args = append(args, "parent="+parent)
	}
	if v, err := b.name(m, "default_qos", false); err != nil {
		return nil, nil, err
	} else if v != "" {
		args = append(args, "defaultqos="+v)
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
	check := b.lookup(append(append([]string{"show", "assoc"}, b.where("account="+name)...), "format=Account,User,ParentName")...)
	expect := func(rows []any) error {
		for _, r := range rows {
			if !strings.EqualFold(rowField(r, "account"), name) || rowField(r, "user") != "" {
				continue
			}
			if got := rowField(r, "parentname"); parent != "" && !strings.EqualFold(got, parent) {
				return Permanent(b.errorf("account %q already exists under %q, not under %q: it is not this one and is left untouched", name, got, parent))
			}
			return nil
		}
		return b.errorf("account %q is not in slurmdbd after adding it", name)
	}
	return []slurmOp{verified(sacctmgr(true, b.withCluster(args)...), check, expect)}, nil, nil
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

func (b *slurmBuilder) removeAccount(m map[string]any) ([]slurmOp, Result, error) {
	names, err := b.nameList(m, "name")
	if err != nil || len(names) == 0 {
		return nil, nil, err
	}
	list := strings.Join(names, ",")
	args := append([]string{"remove", "account"}, b.where("name="+list)...)
	check := b.lookup(append(append([]string{"show", "assoc"}, b.where("account="+list)...), "format=Account,User")...)
	expect := func(rows []any) error {
		if len(rows) == 0 {
			return nil
		}
		var left []string
		for _, r := range rows {
			if a := rowField(r, "account"); !slices.Contains(left, a) {
				left = append(left, a)
			}
		}
		return b.errorf("account %s still in slurmdbd after removing it", strings.Join(left, ", "))
	}
	return []slurmOp{verified(sacctmgr(true, args...), check, expect)}, nil, nil
}

func (b *slurmBuilder) addUser(m map[string]any) ([]slurmOp, Result, error) {
	users, err := b.nameList(m, "user")
	if err != nil {
		return nil, nil, err
	}
	accounts, err := b.nameList(m, "account")
	if err != nil {
		return nil, nil, err
	}
	partitions, _, err := b.names(m, "partition", false)
	if err != nil {
		return nil, nil, err
	}
	def, err := b.name(m, "default_account", false)
	if err != nil {
		return nil, nil, err
	}
	defQoS, err := b.name(m, "default_qos", false)
	if err != nil {
		return nil, nil, err
	}
	qos, _, err := b.names(m, "qos", false)
	if err != nil {
		return nil, nil, err
	}
	fs, err := b.setting(m, "fairshare")
	if err != nil || len(users) == 0 || len(accounts) == 0 {
		return nil, nil, err
	}
	args := []string{"add", "user", strings.Join(users, ","), "account=" + strings.Join(accounts, ",")}
	if def != "" {
		args = append(args, "defaultaccount="+def)
	}
	if len(partitions) > 0 {
		args = append(args, "partition="+strings.Join(partitions, ","))
	}
	if defQoS != "" {
		args = append(args, "defaultqos="+defQoS)
	}
	if len(qos) > 0 {
		args = append(args, "qos="+strings.Join(qos, ","))
	}
	if fs != "" {
		args = append(args, "fairshare="+fs)
	}
	check := b.lookup(append(append([]string{"show", "assoc"},
		b.where("user="+strings.Join(users, ","), "account="+strings.Join(accounts, ","))...), "format=Account,User,Partition")...)
	expect := func(rows []any) error {
		have := map[string]bool{}
		for _, r := range rows {
			have[strings.ToLower(rowField(r, "account")+"|"+rowField(r, "user")+"|"+rowField(r, "partition"))] = true
		}
		parts := partitions
		if len(parts) == 0 {
			parts = []string{""}
		}
		var missing []string
		for _, a := range accounts {
			for _, u := range users {
				for _, p := range parts {
					if !have[strings.ToLower(a+"|"+u+"|"+p)] {
						s := u + " in " + a
						if p != "" {
							s += " (partition " + p + ")"
						}
						missing = append(missing, s)
					}
				}
			}
		}
		if len(missing) > 0 {
			return b.errorf("association %s not in slurmdbd after adding it", strings.Join(missing, ", "))
		}
		return nil
	}
	return []slurmOp{verified(sacctmgr(true, b.withCluster(args)...), check, expect)}, nil, nil
}

func (b *slurmBuilder) removeUser(m map[string]any) ([]slurmOp, Result, error) {
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
	var users []string
	if hasUser {
		if users, err = b.nameList(m, "user"); err != nil || len(users) == 0 {
			return nil, nil, err
		}
	}
	ops := make([]slurmOp, len(accounts))
	for i, a := range accounts {
		ops[i] = b.removeFrom(a, users, accounts)
	}
	return ops, nil, nil
}

// removeFrom is the removal of users (nil: all of them) from one account.
// A user whose default account is a and who keeps other associations gets
// another default first, one that this step keeps if there is one:
// slurmdbd refuses to remove a default account along with others ("You can
// not remove the default account of a user"), and removed alone it leaves
// the user without a default account.
func (b *slurmBuilder) removeFrom(a string, users, removing []string) slurmOp {
	return func(ctx context.Context, x *slurmExec) error {
		named := users
		if named == nil {
			rows, err := x.run(ctx, b.lookup(append(append([]string{"show", "assoc"}, b.where("account="+a)...), "format=Account,User")...))
			if err != nil {
				return err
			}
			for _, r := range rows {
				if u := rowField(r, "user"); u != "" && !slices.Contains(named, u) {
					named = append(named, u)
				}
			}
		}
		if len(named) > 0 {
			rows, err := x.run(ctx, b.lookup(append(append([]string{"show", "user"}, b.where("name="+strings.Join(named, ","))...),
				"withassoc", "format=User,DefaultAccount,Account")...))
			if err != nil {
				return err
			}
			for _, u := range named {
				if target, move := newDefault(rows, u, a, removing); move {
					args := append(append([]string{"modify", "user"}, b.where("name="+u)...), "set", "defaultaccount="+target)
					if _, err := x.run(ctx, sacctmgr(true, args...)); err != nil {
						return err
					}
				}
			}
		}
		var conds []string
		if users != nil {
			conds = append(conds, "name="+strings.Join(users, ","))
		}
		conds = append(conds, "account="+a)
		if _, err := x.run(ctx, sacctmgr(true, append([]string{"remove", "user"}, b.where(conds...)...)...)); err != nil {
			return err
		}
		checkConds := []string{"account=" + a}
		if users != nil {
			checkConds = append(checkConds, "user="+strings.Join(users, ","))
		}
		rows, err := x.run(ctx, b.lookup(append(append([]string{"show", "assoc"}, b.where(checkConds...)...), "format=Account,User")...))
		if err != nil {
			return fmt.Errorf("reading back: %w", err)
		}
		var left []string
		for _, r := range rows {
			if u := rowField(r, "user"); u != "" && !slices.Contains(left, u) {
				left = append(left, u)
			}
		}
		if len(left) > 0 {
			return b.errorf("user %s still in account %s after removing", strings.Join(left, ", "), a)
		}
		return nil
	}
}

// newDefault says whether user u, about to lose account a, must first get
// another default account, and which: given rows of `show user withassoc
// format=User,DefaultAccount,Account`, when a is u's default and u has
// other associations, the first (sorted) of those not in removing, else
// the first of them.
func newDefault(rows []any, u, a string, removing []string) (string, bool) {
	var def string
	var others []string
	for _, r := range rows {
		if !strings.EqualFold(rowField(r, "user"), u) {
			continue
		}
		if d := rowField(r, "def_acct"); d != "" {
			def = d
		}
		if acc := rowField(r, "account"); acc != "" && !strings.EqualFold(acc, a) && !slices.Contains(others, acc) {
			others = append(others, acc)
		}
	}
	if !strings.EqualFold(def, a) || len(others) == 0 {
		return "", false
	}
	sort.Strings(others)
	for _, o := range others {
		if !slices.ContainsFunc(removing, func(r string) bool { return strings.EqualFold(r, o) }) {
			return o, true
		}
	}
	return others[0], true
}

func (b *slurmBuilder) setDefaultAccount(m map[string]any) ([]slurmOp, Result, error) {
	users, err := b.nameList(m, "user")
	if err != nil {
		return nil, nil, err
	}
	account, err := b.name(m, "account", true)
	if err != nil || len(users) == 0 {
		return nil, nil, err
	}
	list := strings.Join(users, ",")
	args := append(append([]string{"modify", "user"}, b.where("name="+list)...), "set", "defaultaccount="+account)
	check := b.lookup(append(append([]string{"show", "user"}, b.where("name="+list)...), "format=User,DefaultAccount")...)
	expect := func(rows []any) error {
		var wrong []string
		for _, u := range users {
			ok := slices.ContainsFunc(rows, func(r any) bool {
				return strings.EqualFold(rowField(r, "user"), u) && strings.EqualFold(rowField(r, "def_acct"), account)
			})
			if !ok {
				wrong = append(wrong, u)
			}
		}
		if len(wrong) > 0 {
			return b.errorf("default account of %s is not %s after setting it (is there an association with it?)", strings.Join(wrong, ", "), account)
		}
		return nil
	}
	return []slurmOp{verified(sacctmgr(true, args...), check, expect)}, nil, nil
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

// --- load-time checks ---

// CheckSlurmParams checks a slurm step's parameters as written in the rules
// (before rendering): the operation (one friendly form or args), unknown or
// misspelt keys (with a suggestion), and the literal types of values.
// Strings holding {{ are values known only when the step runs and are not
// checked. Each error names the offending key.
func CheckSlurmParams(params map[string]any) []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	var forms []string
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch {
		case slices.Contains(slurmForms, k):
			forms = append(forms, k)
		case !slices.Contains(slurmSpec.Keys, k):
			add("slurm: unknown key %q%s (known: %s)", k, didYouMean(k, slurmSpec.Keys), strings.Join(slurmSpec.Keys, ", "))
		}
	}
	_, hasArgs := params["args"]
	switch {
	case len(forms) > 1:
		add("slurm: one operation per step, got %s", strings.Join(forms, " and "))
	case len(forms) == 1 && hasArgs:
		add("slurm: give args or %s, not both", forms[0])
	case len(forms) == 0 && !hasArgs && len(errs) == 0:
		add("slurm: nothing to run: give args or one of %s", strings.Join(slurmForms, ", "))
	}
	if v, ok := params["cluster"]; ok && v != nil && !templated(v) {
		if s, isStr := v.(string); !isStr {
			add("slurm: cluster must be a name, got %s", describe(v))
		} else if s != "" {
			if err := checkName(s); err != nil {
				add("slurm: cluster %q refused: %v", s, err)
			}
		}
	}
	if v, ok := params["command"]; ok && v != nil && v != "" && !templated(v) {
		want := slurmTools
		if len(forms) == 1 {
			want = []string{"sacctmgr"}
			if forms[0] == "cancel" {
				want = []string{"scancel"}
			}
		}
		if s, _ := v.(string); !slices.Contains(want, s) {
			add("slurm: command %v: want %s", v, strings.Join(want, " or "))
		}
	}
	if v, ok := params["args"]; ok && !templated(v) {
		list, isList := v.([]any)
		if !isList {
			add("slurm args: must be a list of arguments, got %s", describe(v))
		} else if len(list) == 0 {
			add("slurm args: empty")
		}
	}
	for _, f := range forms {
		errs = append(errs, checkForm(f, params[f])...)
	}
	return errs
}

// checkForm checks the literal value of one friendly form.
func checkForm(form string, v any) []error {
	spec, _ := formSpec(form)
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("slurm %s: "+format, append([]any{form}, args...)...))
	}
	if templated(v) {
		return nil
	}
	m, isMap := v.(map[string]any)
	switch {
	case isMap:
	case v == nil && spec.empty:
		return nil
	case spec.scalar:
		if err := checkKind(spec.Params[0].Kind, v); err != "" {
			add("%s", err)
		}
		return errs
	default:
		add("takes a mapping of %s, got %s", strings.Join(formKeys[form], ", "), describe(v))
		return errs
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		i := slices.IndexFunc(spec.Params, func(p slurmParam) bool { return p.Key == k })
		if i < 0 {
			add("unknown key %q%s (known: %s)", k, didYouMean(k, formKeys[form]), strings.Join(formKeys[form], ", "))
			continue
		}
		if err := checkKind(spec.Params[i].Kind, m[k]); err != "" {
			add("%s: %s", k, err)
		}
	}
	misspelt := false // an unknown key is the cause; a required key missing is then its echo
	for k := range m {
		if !slices.ContainsFunc(spec.Params, func(p slurmParam) bool { return p.Key == k }) {
			misspelt = true
		}
	}
	for _, p := range spec.Params {
		if _, ok := m[p.Key]; p.Required && !ok && !misspelt {
			if form == "remove_user" && p.Key == "user" {
				continue
			}
			add("missing %s", p.Key)
		}
	}
	if form == "remove_user" {
		_, hasUser := m["user"]
		_, hasAll := m["all_users"]
		if hasUser == hasAll {
			add("give user (a name or a list) or all_users: true, exactly one")
		}
	}
	return errs
}

// checkKind explains why a literal value is not of kind k ("" when it is or
// when it is only known at run time).
func checkKind(k paramKind, v any) string {
	if v == nil || templated(v) {
		return ""
	}
	scalar := func(v any) bool {
		switch v.(type) {
		case string, int, int64, float64:
			return true
		}
		return false
	}
	switch k {
	case kindName:
		if !scalar(v) {
			return "want a name, got " + describe(v)
		}
		if s, ok := v.(string); ok && s != "" {
			if err := checkName(s); err != nil {
				return fmt.Sprintf("%q refused: %v", s, err)
			}
		}
	case kindNames:
		items, isList := v.([]any)
		if !isList {
			items = []any{v}
		}
		for _, it := range items {
			if templated(it) {
				continue
			}
			if !scalar(it) {
				return "want a name or a list of names, got " + describe(v)
			}
			if s, ok := it.(string); ok {
				if err := checkName(s); err != nil && s != "" {
					return fmt.Sprintf("%q refused: %v", s, err)
				}
			}
		}
	case kindText:
		if !scalar(v) {
			return "want text, got " + describe(v)
		}
	case kindBool:
		if _, ok := v.(bool); !ok {
			return "want true or false, got " + describe(v)
		}
	case kindMap:
		if _, ok := v.(map[string]any); !ok {
			return "want a mapping, got " + describe(v)
		}
	case kindValue:
		if _, ok := v.(bool); ok {
			return "want a value (number, word, list), got " + describe(v)
		}
	}
	return ""
}

// templated reports whether v is a string holding a template: its value is
// known only when the step runs.
func templated(v any) bool {
	s, ok := v.(string)
	return ok && strings.Contains(s, "{{")
}

// didYouMean suggests the known key closest to k, as " (did you mean
// \"x\"?)", or "" when none is close.
func didYouMean(k string, known []string) string {
	best, bestD := "", 3
	for _, c := range known {
		if d := editDistance(strings.ToLower(k), strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// SlurmReference renders the reference of the slurm action's friendly forms
// as Markdown, from the table the action itself uses: each form's
// parameters and, for its example, the exact commands Preview (and so Run)
// issues with cluster "hpc". examples/slurm-site/SLURM-REFERENCE.md is this
// text; a test keeps it current.
func SlurmReference() string {
	s := NewSlurm(SlurmConfig{Cluster: "hpc"})
	var b strings.Builder
	b.WriteString("# The slurm action: reference\n\n")
	b.WriteString("Generated from the action's own table (`actions/slurm.go`, `slurmFormTable`) by\n")
	b.WriteString("`EVENTFN_UPDATE_REFERENCE=1 go test ./actions -run TestSlurmReferenceIsCurrent`; do not edit by hand.\n\n")
	b.WriteString("A `slurm` step gives raw arguments (`args: [...]`, `command: sacctmgr|scancel|sacct|scontrol`) or exactly\n")
	b.WriteString("one friendly form below; `cluster:` overrides `slurm.cluster`. sacctmgr always runs as\n")
	b.WriteString("`sacctmgr --parsable2 --noheader --immediate …` (reads: `--parsable2 --immediate`, with a header), never\n")
	b.WriteString("through a shell. Names (accounts, users, QoS, partitions, clusters) are checked before anything runs:\n")
	b.WriteString("letters, digits and `_ . @ -`, not starting with `-`. A `name or list` parameter takes one name or a\n")
	b.WriteString("list; an empty list means nothing to do. Steps that write hold a per-cluster lock for their whole\n")
	b.WriteString("run (commands and read-backs), so parallel plans never interleave their sacctmgr sessions.\n\n")
	b.WriteString("Result: `exit_code`, `stdout`, `stderr`, `rows` (table output of show_assoc and raw reads), `changed`\n")
	b.WriteString("(a write did something; sacctmgr's no-op answers are success with `changed: false`), `commands` (every\n")
	b.WriteString("command line run, read-backs included); set_limits adds `applied` and `ignored`.\n")
	for _, f := range slurmFormTable {
		fmt.Fprintf(&b, "\n## %s\n\n%s\n\n", f.Name, f.Doc)
		b.WriteString("| parameter | takes | required | meaning |\n|---|---|---|---|\n")
		for _, p := range f.Params {
			req := ""
			if p.Required {
				req = "yes"
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", p.Key, p.Kind, req, p.Doc)
		}
		if f.scalar {
			fmt.Fprintf(&b, "\n`%s: <name or list>` is short for `%s: {%s: …}`.\n", f.Name, f.Name, f.Params[0].Key)
		}
		ex, _ := json.Marshal(map[string]any{f.Name: f.Example})
		fmt.Fprintf(&b, "\nExample: `slurm: %s` runs:\n\n```\n", ex)
		cmds, err := s.Preview(Request{Params: map[string]any{f.Name: f.Example}})
		if err != nil {
			fmt.Fprintf(&b, "(refused: %v)\n", err)
		}
		for _, c := range cmds {
			b.WriteString(shellQuote(c) + "\n")
		}
		b.WriteString("```\n")
		if f.Name == "remove_user" {
			b.WriteString("\nWhen the look-up shows that an account being removed is a user's default account and the user keeps\n")
			b.WriteString("other associations, `sacctmgr --parsable2 --noheader --immediate modify user where name=<user> cluster=hpc set defaultaccount=<other>` runs first.\n")
		}
	}
	return b.String()
}

// shellQuote shows an argv as one line, quoting arguments with spaces or
// quotes (for reading only: nothing runs it through a shell).
func shellQuote(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t'\"\\$`;&|<>(){}*?#~") {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		} else {
			out[i] = a
		}
	}
	return strings.Join(out, " ")
}
