package actions

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestSlurmCommands(t *testing.T) {
	cfg := SlurmConfig{Cluster: "c1"}
	base := []string{"sacctmgr", "--parsable2", "--noheader", "--immediate"}
	show := []string{"sacctmgr", "--parsable2", "--immediate"}
	cmd := func(prefix []string, args ...string) []string { return append(append([]string{}, prefix...), args...) }
	tests := []struct {
		name   string
		cfg    *SlurmConfig
		params map[string]any
		want   [][]string
	}{
		{"add_account", nil, map[string]any{"add_account": map[string]any{
			"name": "alloc_x", "parent": "proj_y", "description": "Hello, \"World\" = $(x); `y`", "organization": "acme", "fairshare": "parent",
		}}, [][]string{cmd(base, "add", "account", "alloc_x", "parent=proj_y", "description=Hello, \"World\" = $(x); `y`", "organization=acme", "fairshare=parent", "cluster=c1"),
			cmd(show, "show", "assoc", "where", "account=alloc_x", "cluster=c1", "format=Account,User,ParentName")}},
		{"add_account empty optional fields are left out", nil, map[string]any{"add_account": map[string]any{
			"name": "a", "parent": "", "description": nil, "qos": "",
		}}, [][]string{cmd(base, "add", "account", "a", "cluster=c1"), cmd(show, "show", "assoc", "where", "account=a", "cluster=c1", "format=Account,User,ParentName")}},
		{"modify_account", nil, map[string]any{"modify_account": map[string]any{
			"name": "a", "set": map[string]any{"GrpTRESMins": map[string]any{"mem": 2, "cpu": 1}, "description": "new text", "MaxJobs": -1},
		}}, [][]string{cmd(base, "modify", "account", "where", "name=a", "cluster=c1", "set", "GrpTRESMins=cpu=1,mem=2", "MaxJobs=-1", "description=new text")}},
		{"remove_account shorthand", nil, map[string]any{"remove_account": "a"},
			[][]string{cmd(base, "remove", "account", "where", "name=a", "cluster=c1"), cmd(show, "show", "assoc", "where", "account=a", "cluster=c1", "format=Account,User")}},
		{"remove_account list", nil, map[string]any{"remove_account": map[string]any{"name": []any{"a", "b", "a"}}},
			[][]string{cmd(base, "remove", "account", "where", "name=a,b", "cluster=c1"), cmd(show, "show", "assoc", "where", "account=a,b", "cluster=c1", "format=Account,User")}},
		{"add_user", nil, map[string]any{"add_user": map[string]any{
			"user": []any{"u1", "u2"}, "account": "a", "default_account": "a", "fairshare": "parent", "qos": []any{"normal", "high"}, "partition": "",
		}}, [][]string{cmd(base, "add", "user", "u1,u2", "account=a", "defaultaccount=a", "qos=normal,high", "fairshare=parent", "cluster=c1"),
			cmd(show, "show", "assoc", "where", "user=u1,u2", "account=a", "cluster=c1", "format=Account,User,Partition")}},
		{"add_user with partitions", nil, map[string]any{"add_user": map[string]any{"user": "u1", "account": "a", "partition": []any{"p1", "p2"}, "qos": "q", "default_qos": "q"}},
			[][]string{cmd(base, "add", "user", "u1", "account=a", "partition=p1,p2", "defaultqos=q", "qos=q", "cluster=c1"),
				cmd(show, "show", "assoc", "where", "user=u1", "account=a", "cluster=c1", "format=Account,User,Partition")}},
		{"set_default_account", nil, map[string]any{"set_default_account": map[string]any{"user": "u1", "account": "a"}},
			[][]string{cmd(base, "modify", "user", "where", "name=u1", "cluster=c1", "set", "defaultaccount=a"),
				cmd(show, "show", "user", "where", "name=u1", "cluster=c1", "format=User,DefaultAccount")}},
		{"add_user with no users does nothing", nil, map[string]any{"add_user": map[string]any{"user": []any{}, "account": "a"}}, [][]string{}},
		{"remove_user", nil, map[string]any{"remove_user": map[string]any{"user": "u1", "account": []any{"a", "b"}}},
			[][]string{
				cmd(show, "show", "user", "where", "name=u1", "cluster=c1", "withassoc", "format=User,DefaultAccount,Account"),
				cmd(base, "remove", "user", "where", "name=u1", "account=a", "cluster=c1"),
				cmd(show, "show", "assoc", "where", "account=a", "user=u1", "cluster=c1", "format=Account,User"),
				cmd(show, "show", "user", "where", "name=u1", "cluster=c1", "withassoc", "format=User,DefaultAccount,Account"),
				cmd(base, "remove", "user", "where", "name=u1", "account=b", "cluster=c1"),
				cmd(show, "show", "assoc", "where", "account=b", "user=u1", "cluster=c1", "format=Account,User"),
			}},
		{"remove_user all users", nil, map[string]any{"remove_user": map[string]any{"all_users": true, "account": "a"}},
			[][]string{
				cmd(show, "show", "assoc", "where", "account=a", "cluster=c1", "format=Account,User"),
				cmd(base, "remove", "user", "where", "account=a", "cluster=c1"),
				cmd(show, "show", "assoc", "where", "account=a", "cluster=c1", "format=Account,User"),
			}},
		{"set_limits", nil, map[string]any{"set_limits": map[string]any{
			"account": "a", "limits": map[string]any{"cpu": 10, "mem": 2.5, "gpu": 1, "storage": 99, "nodes": -1},
			"factors": map[string]any{"cpu": 60000, "mem": 1024, "gpu": 60, "nodes": 5}, "tres": map[string]any{"gpu": "gres/gpu"},
		}}, [][]string{cmd(base, "modify", "account", "where", "name=a", "cluster=c1", "set", "GrpTRESMins=cpu=600000,gres/gpu=60,mem=2560,nodes=-1")}},
		{"set_limits per user", nil, map[string]any{"set_limits": map[string]any{
			"account": "a", "user": "u", "kind": "maxtresmins", "limits": map[string]any{"cpu": "7"},
		}}, [][]string{cmd(base, "modify", "user", "where", "name=u", "account=a", "cluster=c1", "set", "MaxTRESMins=cpu=7")}},
		{"set_limits with nothing to set", nil, map[string]any{"set_limits": map[string]any{"account": "a", "limits": map[string]any{}}}, [][]string{}},
		{"set_qos", nil, map[string]any{"set_qos": map[string]any{"account": "a", "qos": "paused", "default_qos": "paused"}},
			[][]string{cmd(base, "modify", "account", "where", "name=a", "cluster=c1", "set", "qos=paused", "defaultqos=paused")}},
		{"show_assoc", nil, map[string]any{"show_assoc": map[string]any{"account": "a", "user": []any{"u1", "u2"}}},
			[][]string{cmd(show, "show", "assoc", "where", "account=a", "user=u1,u2", "cluster=c1", "format=Cluster,Account,User,Partition,ParentName,Share,GrpTRESMins,GrpTRES,MaxTRESMins,QOS,DefaultQOS")}},
		{"show_assoc with an empty filter lists nothing", nil, map[string]any{"show_assoc": map[string]any{"account": []any{}}}, [][]string{}},
		{"show_assoc without anything and without cluster", &SlurmConfig{}, map[string]any{"show_assoc": nil},
			[][]string{cmd(show, "show", "assoc", "format=Cluster,Account,User,Partition,ParentName,Share,GrpTRESMins,GrpTRES,MaxTRESMins,QOS,DefaultQOS")}},
		{"cancel", nil, map[string]any{"cancel": map[string]any{"account": []any{"a", "b"}, "user": "u"}}, [][]string{
			{"scancel", "--clusters=c1", "--account=a", "--user=u", "--full"},
			{"scancel", "--clusters=c1", "--account=b", "--user=u", "--full"},
		}},
		{"raw modify gets the cluster before set", nil, map[string]any{"args": []any{"modify", "account", "a", "set", "GrpJobs=5"}},
			[][]string{cmd(base, "modify", "account", "a", "cluster=c1", "set", "GrpJobs=5")}},
		{"raw show keeps the header", nil, map[string]any{"args": []any{"show", "account", "a"}},
			[][]string{cmd(show, "show", "account", "a", "cluster=c1")}},
		{"raw qos has no cluster", nil, map[string]any{"args": []any{"add", "qos", "paused"}},
			[][]string{cmd(base, "add", "qos", "paused")}},
		{"raw naming its cluster", nil, map[string]any{"args": []any{"add", "account", "a", "Cluster=other"}},
			[][]string{cmd(base, "add", "account", "a", "Cluster=other")}},
		{"step cluster overrides", nil, map[string]any{"cluster": "", "args": []any{"add", "account", "a"}},
			[][]string{cmd(base, "add", "account", "a")}},
		{"raw sacct", nil, map[string]any{"command": "sacct", "args": []any{"format=JobID"}},
			[][]string{{"sacct", "--parsable2", "--clusters=c1", "format=JobID"}}},
		{"binary paths", &SlurmConfig{BinDir: "/opt/slurm/bin", Scancel: "/usr/local/bin/scancel"}, map[string]any{"cancel": map[string]any{"account": "a"}},
			[][]string{{"/usr/local/bin/scancel", "--account=a", "--full"}}},
		{"bin_dir", &SlurmConfig{BinDir: "/opt/slurm/bin"}, map[string]any{"remove_account": "a"},
			[][]string{{"/opt/slurm/bin/sacctmgr", "--parsable2", "--noheader", "--immediate", "remove", "account", "where", "name=a"},
				{"/opt/slurm/bin/sacctmgr", "--parsable2", "--immediate", "show", "assoc", "where", "account=a", "format=Account,User"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			if tc.cfg != nil {
				c = *tc.cfg
			}
			got, err := NewSlurm(c).Preview(Request{Params: tc.params})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("commands:\n got  %q\n want %q", got, tc.want)
			}
		})
	}
}

// fakeTool writes an executable script that logs its arguments (one per
// line, then "--") to the returned log file and runs body.
func fakeTool(t *testing.T, body string) (path, log string) {
	t.Helper()
	dir := t.TempDir()
	path, log = filepath.Join(dir, "tool"), filepath.Join(dir, "calls.log")
	script := "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\" >> '" + log + "'; done\necho -- >> '" + log + "'\n" + body + "\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, log
}

func calls(t *testing.T, log string) []string {
	t.Helper()
	b, err := os.ReadFile(log)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for c := range strings.SplitSeq(strings.TrimSuffix(string(b), "--\n"), "--\n") {
		out = append(out, strings.Join(strings.Fields(c), " "))
	}
	return out
}

func TestSlurmRefusesUnsafeValuesBeforeRunning(t *testing.T) {
	tool, log := fakeTool(t, `case "$*" in *" show assoc "*) printf 'Account|User|ParentName\na||\n';; esac; exit 0`)
	s := NewSlurm(SlurmConfig{Sacctmgr: tool, Scancel: tool, Cluster: "c1"})
	bad := []string{"-rf", "--help", "a b", "x;reboot", "$(reboot)", "`id`", "a\nb", "a\tb", "a=b", "a,b", "", "\x00", "é", "a'b", "a\"b", "a/b"}
	forms := []func(v string) map[string]any{
		func(v string) map[string]any { return map[string]any{"add_account": map[string]any{"name": v}} },
		func(v string) map[string]any {
			return map[string]any{"add_account": map[string]any{"name": "ok", "parent": v}}
		},
		func(v string) map[string]any {
			return map[string]any{"add_user": map[string]any{"user": []any{"ok", v}, "account": "a"}}
		},
		func(v string) map[string]any {
			return map[string]any{"remove_user": map[string]any{"user": v, "account": "a"}}
		},
		func(v string) map[string]any { return map[string]any{"remove_account": v} },
		func(v string) map[string]any {
			return map[string]any{"set_qos": map[string]any{"account": "a", "qos": v}}
		},
		func(v string) map[string]any {
			return map[string]any{"cancel": map[string]any{"account": "a", "user": v}}
		},
		func(v string) map[string]any {
			return map[string]any{"set_limits": map[string]any{"account": v, "limits": map[string]any{"cpu": 1}}}
		},
		func(v string) map[string]any { return map[string]any{"cluster": v, "remove_account": "a"} },
	}
	for _, v := range bad {
		for i, f := range forms {
			if v == "" && (i == 1 || i == 8) {
				continue // an empty optional value means "not given"
			}
			params := f(v)
			_, err := s.Run(context.Background(), Request{Params: params})
			if err == nil {
				t.Errorf("%v: accepted", params)
				continue
			}
			if Retryable(err) || !strings.Contains(err.Error(), "slurm") {
				t.Errorf("%v: want a permanent slurm error, got %v", params, err)
			}
			if v != "" && !strings.Contains(err.Error(), "refused") {
				t.Errorf("%v: error does not say refused: %v", params, err)
			}
		}
	}
	rawBad := [][]any{{"add", "account", "-x"}, {"add", "account", "a\nb"}, {"--help"}, {"add", ""}, {}}
	for _, args := range rawBad {
		if _, err := s.Run(context.Background(), Request{Params: map[string]any{"args": args}}); err == nil || Retryable(err) {
			t.Errorf("raw %q: want a permanent error, got %v", args, err)
		}
	}
	for _, text := range []string{"line\nbreak", "tab\there", "bell\a"} {
		_, err := s.Run(context.Background(), Request{Params: map[string]any{"add_account": map[string]any{"name": "a", "description": text}}})
		if err == nil || !strings.Contains(err.Error(), "control characters") {
			t.Errorf("description %q: %v", text, err)
		}
	}
	if c := calls(t, log); c != nil {
		t.Fatalf("commands ran although refused: %q", c)
	}
	// free text keeps quotes, ;, $( ) and = as one argument: no shell runs it
	res, err := s.Run(context.Background(), Request{Params: map[string]any{"add_account": map[string]any{
		"name": "a", "description": `x; $(reboot) "q" 'q' = -z`, "organization": "-org",
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := calls(t, log); len(got) != 2 || !strings.Contains(got[0], `description=x; $(reboot) "q" 'q' = -z organization=-org`) {
		t.Errorf("calls = %q", got)
	}
	if res["changed"] != true {
		t.Errorf("changed = %v", res["changed"])
	}
}

func TestSlurmOperationChecks(t *testing.T) {
	s := NewSlurm(SlurmConfig{})
	for _, p := range []map[string]any{
		{},
		{"add_account": map[string]any{"name": "a"}, "remove_account": "a"},
		{"args": []any{"show", "assoc"}, "remove_account": "a"},
		{"add_account": map[string]any{"name": "a", "parnet": "p"}},
		{"add_account": "a"},
		{"remove_user": map[string]any{"account": "a"}},
		{"remove_user": map[string]any{"account": "a", "user": "u", "all_users": true}},
		{"remove_user": map[string]any{"account": "a", "user": nil}},
		{"modify_account": map[string]any{"name": "a", "set": map[string]any{}}},
		{"modify_account": map[string]any{"name": "a", "set": map[string]any{"qos": "a b"}}},
		{"modify_account": map[string]any{"name": "a", "set": map[string]any{"bad key": "x"}}},
		{"set_limits": map[string]any{"account": "a", "limits": map[string]any{"cpu": "lots"}}},
		{"set_limits": map[string]any{"account": "a", "limits": map[string]any{"cpu": -5}}},
		{"set_limits": map[string]any{"account": "a", "kind": "Bogus", "limits": map[string]any{"cpu": 1}}},
		{"set_limits": map[string]any{"account": "a", "limits": map[string]any{"cpu=1,mem": 1}}},
		{"command": "rm", "args": []any{"x"}},
		{"command": "scancel", "add_account": map[string]any{"name": "a"}},
		{"args": "show assoc"},
	} {
		if _, err := s.Preview(Request{Params: p}); err == nil || Retryable(err) {
			t.Errorf("%v: want a permanent error, got %v", p, err)
		}
	}
}

func TestSlurmOutcomes(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		readback  string // the answer to the read-back, when there is one
		params    map[string]any
		wantErr   string
		retryable bool
		changed   bool
		rows      []any
	}{
		{"added", `echo " Adding Account(s)"; exit 0`, `Account|User|ParentName\na||`, map[string]any{"add_account": map[string]any{"name": "a"}}, "", false, true, []any{}},
		{"already there", `echo " Nothing new added."; exit 1`, `Account|User|ParentName\na||`, map[string]any{"add_account": map[string]any{"name": "a"}}, "", false, false, []any{}},
		{"nothing deleted", `echo " Nothing deleted"; exit 1`, `Account|User`, map[string]any{"remove_account": "a"}, "", false, false, []any{}},
		{"nothing modified", `echo " Nothing modified"; exit 1`, "", map[string]any{"set_qos": map[string]any{"account": "a", "qos": "q"}}, "", false, false, []any{}},
		{"missing account", `echo " This account 'a' doesn't exist." >&2; echo " Nothing new added."; exit 1`, "",
			map[string]any{"add_user": map[string]any{"user": "u", "account": "a"}}, "doesn't exist", false, false, nil},
		{"bad qos", `echo "sacctmgr: error: You gave a bad qos 'x'." >&2; exit 1`, "",
			map[string]any{"set_qos": map[string]any{"account": "a", "qos": "x"}}, "bad qos", false, false, nil},
		{"slurmdbd down", `echo "sacctmgr: error: Sending PersistInit msg: Connection refused" >&2; exit 1`, "",
			map[string]any{"add_account": map[string]any{"name": "a"}}, "Connection refused", true, false, nil},
		{"show", "printf 'Cluster|Account|User|Def QOS\\nc1|a||normal\\nc1|a|bob|\\n'", "",
			map[string]any{"show_assoc": map[string]any{"account": "a"}}, "", false, false, []any{
				map[string]any{"cluster": "c1", "account": "a", "user": "", "def_qos": "normal"},
				map[string]any{"cluster": "c1", "account": "a", "user": "bob", "def_qos": ""},
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body, want := tc.body, 1
			if tc.readback != "" {
				body = `case "$*" in *"format=Account,User"*) printf '` + tc.readback + `\n'; exit 0;; esac; ` + body
				want = 2
			}
			tool, log := fakeTool(t, body)
			s := NewSlurm(SlurmConfig{Sacctmgr: tool, Conf: "/nonexistent/slurm.conf"})
			res, err := s.Run(context.Background(), Request{Params: tc.params})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || Retryable(err) != tc.retryable {
					t.Fatalf("err = %v (retryable %v), want %q retryable %v", err, Retryable(err), tc.wantErr, tc.retryable)
				}
				if res == nil || res["exit_code"] != 1 {
					t.Errorf("result = %v", res)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res["changed"] != tc.changed || !reflect.DeepEqual(res["rows"], tc.rows) {
				t.Errorf("changed = %v, rows = %v", res["changed"], res["rows"])
			}
			if len(calls(t, log)) != want {
				t.Errorf("calls = %q", calls(t, log))
			}
			cmds, _ := res["commands"].([]any)
			if len(cmds) != want || cmds[0].([]any)[0] != tool {
				t.Errorf("commands = %v", res["commands"])
			}
		})
	}
}

func TestSlurmConfPassedAsEnvironment(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "conf")
	tool, _ := fakeTool(t, `printf '%s' "$SLURM_CONF" > '`+out+`'`)
	if _, err := NewSlurm(SlurmConfig{Sacctmgr: tool, Conf: "/etc/site/slurm.conf"}).Run(context.Background(),
		Request{Params: map[string]any{"remove_account": "a"}}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); string(b) != "/etc/site/slurm.conf" {
		t.Errorf("SLURM_CONF = %q", b)
	}
}

func TestSlurmCancelRunsEveryAccount(t *testing.T) {
	tool, log := fakeTool(t, `case "$*" in *--account=a*) echo "scancel: error: Unable to contact slurm controller" >&2; exit 1;; esac; exit 0`)
	s := NewSlurm(SlurmConfig{Scancel: tool})
	res, err := s.Run(context.Background(), Request{Params: map[string]any{"cancel": map[string]any{"account": []any{"a", "b"}}}})
	if err == nil || !Retryable(err) || !strings.Contains(err.Error(), "Unable to contact") {
		t.Fatalf("err = %v", err)
	}
	if got := calls(t, log); len(got) != 2 || got[1] != "--account=b --full" {
		t.Errorf("calls = %q", got)
	}
	if res["exit_code"] != 1 {
		t.Errorf("exit_code = %v", res["exit_code"])
	}
	_, err = s.Run(context.Background(), Request{Params: map[string]any{"cancel": map[string]any{"account": "b", "user": "u"}}})
	if err != nil {
		t.Fatal(err)
	}
}

func TestSlurmNothingToDo(t *testing.T) {
	tool, log := fakeTool(t, "exit 0")
	res, err := NewSlurm(SlurmConfig{Sacctmgr: tool}).Run(context.Background(), Request{Params: map[string]any{
		"set_limits": map[string]any{"account": "a", "limits": map[string]any{"storage": 5}, "factors": map[string]any{"cpu": 1}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if calls(t, log) != nil || res["changed"] != false || !reflect.DeepEqual(res["ignored"], []any{"storage"}) {
		t.Errorf("res = %v, calls = %q", res, calls(t, log))
	}
}

func TestSlurmRowsParseTRES(t *testing.T) {
	rows := parseTable("Account|GrpTRESMins|MaxTRES|Descr\na|cpu=600000,mem=30G,gres/gpu=4,fs/disk=1.5T|node=2|x=1\nb|||\n")
	want := []any{
		map[string]any{"account": "a", "grptresmins": "cpu=600000,mem=30G,gres/gpu=4,fs/disk=1.5T", "maxtres": "node=2", "descr": "x=1",
			"grptresmins_map": map[string]any{"cpu": int64(600000), "mem": int64(30720), "gres/gpu": int64(4), "fs/disk": int64(1572864)},
			"maxtres_map":     map[string]any{"node": int64(2)}},
		map[string]any{"account": "b", "grptresmins": "", "maxtres": "", "descr": ""},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("rows:\n got  %v\n want %v", rows, want)
	}
}

func TestSlurmAddAccountRefusesForeignAccount(t *testing.T) {
	tool, log := fakeTool(t, `case "$*" in *" show assoc "*) printf 'Account|User|ParentName\nhpc_a||other_proj\n'; exit 0;; esac; echo " Nothing new added."; exit 1`)
	s := NewSlurm(SlurmConfig{Sacctmgr: tool})
	_, err := s.Run(context.Background(), Request{Params: map[string]any{"add_account": map[string]any{"name": "hpc_a", "parent": "hpc_proj"}}})
	if err == nil || Retryable(err) || !strings.Contains(err.Error(), `already exists under "other_proj", not under "hpc_proj"`) {
		t.Fatalf("err = %v (retryable %v)", err, Retryable(err))
	}
	if got := calls(t, log); len(got) != 2 {
		t.Errorf("calls = %q", got)
	}
}

func TestSlurmAddUserReadBack(t *testing.T) {
	// slurmdbd answers 0 but only u1's association is there
	tool, _ := fakeTool(t, `case "$*" in *" show assoc "*) printf 'Account|User|Partition\na|u1|\n'; exit 0;; esac; exit 0`)
	s := NewSlurm(SlurmConfig{Sacctmgr: tool})
	_, err := s.Run(context.Background(), Request{Params: map[string]any{"add_user": map[string]any{"user": []any{"u1", "U2"}, "account": "a"}}})
	if err == nil || !Retryable(err) || !strings.Contains(err.Error(), "association U2 in a not in slurmdbd") {
		t.Fatalf("err = %v", err)
	}
	tool, _ = fakeTool(t, `case "$*" in *" show assoc "*) printf 'Account|User|Partition\na|u1|\na|u2|\n'; exit 0;; esac; exit 0`)
	if _, err := NewSlurm(SlurmConfig{Sacctmgr: tool}).Run(context.Background(),
		Request{Params: map[string]any{"add_user": map[string]any{"user": []any{"u1", "U2"}, "account": "A"}}}); err != nil {
		t.Fatal(err)
	}
}

func TestSlurmRemoveUserMovesDefaultAccount(t *testing.T) {
	// u's default is a; u also has b (removed by the same step) and c (kept):
	// the default moves to c before a goes; b is not u's default then.
	dir := t.TempDir()
	state := filepath.Join(dir, "def")
	if err := os.WriteFile(state, []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	tool, log := fakeTool(t, `def=$(cat '`+state+`')
case "$*" in
*" show user "*) printf 'User|Def Acct|Account\nu|%s|a\nu|%s|b\nu|%s|c\n' "$def" "$def" "$def"; exit 0;;
*"set defaultaccount="*) echo "$*" | sed 's/.*defaultaccount=//' > '`+state+`'; exit 0;;
*" show assoc "*) printf 'Account|User\n'; exit 0;;
*" remove user "*) case "$*" in *account=$def*) echo " Error with request: You can not remove the default account of a user" >&2; exit 1;; esac; exit 0;;
esac; exit 0`)
	s := NewSlurm(SlurmConfig{Sacctmgr: tool})
	res, err := s.Run(context.Background(), Request{Params: map[string]any{"remove_user": map[string]any{"user": "u", "account": []any{"a", "b"}}}})
	if err != nil {
		t.Fatalf("%v\n%q", err, calls(t, log))
	}
	got := calls(t, log)
	want := []string{
		"--parsable2 --immediate show user where name=u withassoc format=User,DefaultAccount,Account",
		"--parsable2 --noheader --immediate modify user where name=u set defaultaccount=c",
		"--parsable2 --noheader --immediate remove user where name=u account=a",
		"--parsable2 --immediate show assoc where account=a user=u format=Account,User",
		"--parsable2 --immediate show user where name=u withassoc format=User,DefaultAccount,Account",
		"--parsable2 --noheader --immediate remove user where name=u account=b",
		"--parsable2 --immediate show assoc where account=b user=u format=Account,User",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("calls:\n got  %q\n want %q", got, want)
	}
	if res["changed"] != true {
		t.Errorf("changed = %v", res["changed"])
	}
}

func TestSlurmRemoveUserOneAccountFailsOthersStillRun(t *testing.T) {
	tool, log := fakeTool(t, `case "$*" in
*" show "*) printf 'X|Y\n'; exit 0;;
*"account=a "*|*"account=a") echo "sacctmgr: error: Problem talking to the database" >&2; exit 1;;
esac; exit 0`)
	_, err := NewSlurm(SlurmConfig{Sacctmgr: tool}).Run(context.Background(),
		Request{Params: map[string]any{"remove_user": map[string]any{"all_users": true, "account": []any{"a", "b"}}}})
	if err == nil || !Retryable(err) {
		t.Fatalf("err = %v", err)
	}
	if got := calls(t, log); len(got) != 5 || !strings.Contains(got[3], "remove user where account=b") {
		t.Errorf("calls = %q", got)
	}
}

func TestSlurmRemoveUserReadBackFails(t *testing.T) {
	tool, _ := fakeTool(t, `case "$*" in *" show assoc "*) printf 'Account|User\na|u\n'; exit 0;; *" show user "*) printf 'User|Def Acct|Account\n'; exit 0;; esac; exit 0`)
	_, err := NewSlurm(SlurmConfig{Sacctmgr: tool}).Run(context.Background(),
		Request{Params: map[string]any{"remove_user": map[string]any{"user": "u", "account": "a"}}})
	if err == nil || !strings.Contains(err.Error(), "user u still in account a") {
		t.Fatalf("err = %v", err)
	}
}

func TestSlurmWritesToOneClusterAreSerialised(t *testing.T) {
	// the tool fails when another invocation is running at the same time
	dir := t.TempDir()
	busy := filepath.Join(dir, "busy")
	tool, _ := fakeTool(t, `mkdir '`+busy+`' 2>/dev/null || { echo "overlap" >&2; exit 7; }
case "$*" in *" show assoc "*) printf 'Account|User|Partition\na|u|\n';; esac
i=0; while [ $i -lt 200 ]; do i=$((i+1)); done
rmdir '`+busy+`'; exit 0`)
	s := NewSlurm(SlurmConfig{Sacctmgr: tool})
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			_, err := s.Run(context.Background(), Request{Params: map[string]any{"add_user": map[string]any{"user": "u", "account": "a"}}})
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestSlurmPreviewIsWhatRunRuns(t *testing.T) {
	tool, log := fakeTool(t, `case "$*" in
*" show assoc "*format=Account,User,ParentName*) printf 'Account|User|ParentName\nx||p\n';;
*" show assoc "*format=Account,User,Partition*) printf 'Account|User|Partition\na|u1|\na|u2|\n';;
*" show "*) printf 'A|B\n';;
esac; exit 0`)
	s := NewSlurm(SlurmConfig{Sacctmgr: tool, Scancel: tool, Cluster: "c"})
	for _, p := range []map[string]any{
		{"add_account": map[string]any{"name": "x", "parent": "p"}},
		{"add_user": map[string]any{"user": []any{"u1", "u2"}, "account": "a"}},
		{"remove_user": map[string]any{"all_users": true, "account": []any{"a", "b"}}},
		{"remove_user": map[string]any{"user": "u", "account": "a"}},
		{"remove_account": "a"},
		{"set_limits": map[string]any{"account": "a", "limits": map[string]any{"cpu": 1}}},
		{"cancel": map[string]any{"account": []any{"a", "b"}}},
		{"args": []any{"show", "qos"}},
	} {
		preview, err := s.Preview(Request{Params: p})
		if err != nil {
			t.Fatal(err)
		}
		_ = os.Remove(log)
		res, err := s.Run(context.Background(), Request{Params: p})
		if err != nil {
			t.Fatalf("%v: %v", p, err)
		}
		var ran [][]string
		for _, c := range res["commands"].([]any) {
			var argv []string
			for _, a := range c.([]any) {
				argv = append(argv, a.(string))
			}
			ran = append(ran, argv)
		}
		if !reflect.DeepEqual(preview, ran) {
			t.Errorf("%v:\n preview %q\n run     %q", p, preview, ran)
		}
	}
	if _, err := s.Preview(Request{Params: map[string]any{"add_account": map[string]any{"name": "-x"}}}); err == nil || Retryable(err) {
		t.Errorf("preview of a refused step: %v", err)
	}
}

func TestCheckSlurmParams(t *testing.T) {
	tests := []struct {
		params map[string]any
		want   []string // substrings, one per error
	}{
		{map[string]any{"add_account": map[string]any{"name": "{{ x }}", "parent": "root"}}, nil},
		{map[string]any{"remove_user": map[string]any{"user": "{{ u }}", "account": []any{"{{ a }}", "b"}}}, nil},
		{map[string]any{"show_assoc": nil}, nil},
		{map[string]any{"remove_account": "{{ x }}"}, nil},
		{map[string]any{"args": []any{"show", "assoc"}}, nil},
		{map[string]any{"add_acount": map[string]any{"name": "a"}}, []string{`unknown key "add_acount" (did you mean "add_account"?)`}},
		{map[string]any{"add_account": map[string]any{"name": "a", "parnet": "p"}}, []string{`slurm add_account: unknown key "parnet" (did you mean "parent"?)`}},
		{map[string]any{"add_user": map[string]any{"user": "u"}}, []string{"slurm add_user: missing account"}},
		{map[string]any{"remove_user": map[string]any{"account": "a", "all_users": "yes"}}, []string{"all_users: want true or false"}},
		{map[string]any{"remove_user": map[string]any{"account": "a"}}, []string{"give user"}},
		{map[string]any{"set_limits": map[string]any{"account": "a", "limits": []any{1}}}, []string{"limits: want a mapping"}},
		{map[string]any{"add_account": map[string]any{"name": "a b"}}, []string{`name: "a b" refused`}},
		{map[string]any{"add_account": "a"}, []string{"takes a mapping"}},
		{map[string]any{"add_account": map[string]any{"name": "a"}, "remove_account": "a"}, []string{"one operation per step"}},
		{map[string]any{"cancel": map[string]any{"account": "a"}, "command": "sacctmgr"}, []string{"command sacctmgr: want scancel"}},
		{map[string]any{"args": "show"}, []string{"must be a list"}},
		{map[string]any{"cluster": 5, "remove_account": "a"}, []string{"cluster must be a name"}},
	}
	for _, tc := range tests {
		errs := CheckSlurmParams(tc.params)
		if len(errs) != len(tc.want) {
			t.Errorf("%v: errors %v, want %d", tc.params, errs, len(tc.want))
			continue
		}
		for i, w := range tc.want {
			if !strings.Contains(errs[i].Error(), w) {
				t.Errorf("%v: error %q does not contain %q", tc.params, errs[i], w)
			}
		}
	}
}

// TestSlurmReferenceIsCurrent keeps examples/slurm-site/SLURM-REFERENCE.md
// equal to what the action's table generates; EVENTFN_UPDATE_REFERENCE=1
// rewrites it.
func TestSlurmReferenceIsCurrent(t *testing.T) {
	const path = "../examples/slurm-site/SLURM-REFERENCE.md"
	want := SlurmReference()
	if os.Getenv("EVENTFN_UPDATE_REFERENCE") != "" {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("%s is stale: run EVENTFN_UPDATE_REFERENCE=1 go test ./actions -run TestSlurmReferenceIsCurrent", path)
	}
	for _, f := range slurmFormTable {
		if !strings.Contains(want, "\n## "+f.Name+"\n") {
			t.Errorf("form %s missing from the reference", f.Name)
		}
		if _, err := NewSlurm(SlurmConfig{}).Preview(Request{Params: map[string]any{f.Name: f.Example}}); err != nil {
			t.Errorf("example of %s refused: %v", f.Name, err)
		}
	}
}
