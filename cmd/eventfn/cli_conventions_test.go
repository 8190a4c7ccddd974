package main

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestSecondInterruptExitsSayingWhatIsInFlight(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ints := &interrupts{}
	ctx = context.WithValue(ctx, interruptsKey{}, ints)
	setInFlight(ctx, func() string { return "2 plans in flight" })
	sig := make(chan os.Signal)
	exited := make(chan int, 1)
	var stderr lockedBuffer
	go ints.watch(sig, cancel, &stderr, func(code int) { exited <- code })
	sig <- syscall.SIGINT
	<-ctx.Done() // the first interrupt stops the command
	sig <- syscall.SIGINT
	if code := <-exited; code != 130 {
		t.Errorf("exit code %d, want 130", code)
	}
	out := stderr.String()
	for _, want := range []string{"in-flight plans finish first (2 plans in flight); interrupt again", "second interrupt: exiting now with 2 plans in flight"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in %q", want, out)
		}
	}
}

func TestVersionFromBuildInfo(t *testing.T) {
	code, out, _ := cli(t, "--version")
	if code != 0 || !strings.HasPrefix(out, "eventfn ") || !strings.Contains(out, "  go      go1.") {
		t.Errorf("--version: %d %q", code, out)
	}
	code, out, _ = cli(t, "version", "-o", "json")
	var v buildVersion
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil || v.Go == "" || v.Version == "" {
		t.Errorf("version -o json: %d %q %v", code, out, err)
	}
}

func TestCompletionScriptsParse(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		code, out, errs := cli(t, "completion", sh)
		if code != 0 || !strings.Contains(out, "dry-run") || !strings.Contains(out, "mock") {
			t.Fatalf("completion %s: %d %s", sh, code, errs)
		}
		bin, err := exec.LookPath(sh)
		if err != nil {
			continue // the shell is not installed here: its script is checked where it is
		}
		f := filepath.Join(t.TempDir(), "c."+sh)
		if err := os.WriteFile(f, []byte(out), 0o600); err != nil {
			t.Fatal(err)
		}
		args := []string{"-n", f}
		if sh == "fish" {
			args = []string{"--no-execute", f}
		}
		if b, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Errorf("%s rejects its completion script: %v\n%s", sh, err, b)
		}
	}
	if code, _, _ := cli(t, "completion", "tcsh"); code != 2 {
		t.Errorf("completion tcsh: code %d, want 2", code)
	}
}

func TestValidateSeveralFilesAndJSON(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("version: 1\nrules:\n  - {name: r, on: user-role, steps: [{log: hi}]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := cli(t, "validate", "../../examples/quickstart/eventfn.yaml", bad)
	if code != 1 || !strings.Contains(out, "quickstart/eventfn.yaml: ok") || !strings.Contains(errs, `bad.yaml:3:19: rule "r": on: unknown event type "user-role" (did you mean "user_role"?`) {
		t.Errorf("validate: %d\n%s\n%s", code, out, errs)
	}
	code, out, _ = cli(t, "validate", "-o", "json", bad)
	var got []validateResult
	if err := json.Unmarshal([]byte(out), &got); code != 1 || err != nil || len(got) != 1 || len(got[0].Errors) != 1 || got[0].Errors[0].Line != 3 || got[0].Errors[0].Rule != "r" {
		t.Errorf("validate -o json: %d %s %v", code, out, err)
	}
}

func TestTestRunVerboseJUnit(t *testing.T) {
	junit := filepath.Join(t.TempDir(), "report.xml")
	code, out, errs := cli(t, "test", "--run", "^done", "-v", "--junit", junit, "testdata/order_wrong_test.yaml")
	if code != 0 {
		t.Fatalf("code %d: %s%s", code, out, errs)
	}
	if !strings.Contains(out, "ok   testdata/order_wrong_test.yaml: done order only logs") || !strings.Contains(out, "1 not selected by --run") {
		t.Errorf("output:\n%s", out)
	}
	code, _, _ = cli(t, "test", "--junit", junit, "testdata/order_wrong_test.yaml")
	if code != 1 {
		t.Fatalf("code %d, want 1", code)
	}
	b, err := os.ReadFile(junit)
	if err != nil {
		t.Fatal(err)
	}
	var suites junitSuites
	if err := xml.Unmarshal(b, &suites); err != nil {
		t.Fatal(err)
	}
	if len(suites.Suites) != 1 || suites.Suites[0].Tests != 2 || suites.Suites[0].Failures != 1 ||
		suites.Suites[0].Cases[0].Failure == nil || !strings.Contains(suites.Suites[0].Cases[0].Failure.Text, "order abc for weather") {
		t.Errorf("junit:\n%s", b)
	}
}

func TestDryRunPreviewMockTypeAndRefusals(t *testing.T) {
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "eventfn.yaml")
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("eventfn.yaml", `version: 1
slurm: {cluster: hpc1}
waldur: {api_url: "https://waldur.example.org/api/", token_file: /nonexistent}
rules:
  - name: account
    on: resource
    steps:
      - id: res
        waldur: "marketplace-provider-resources/{{ payload.resource_uuid }}/"
      - id: add
        when: steps.res.json.state == "OK"
        slurm: {add_account: {name: "{{ steps.res.json.backend_id }}"}}
`)
	mocks := write("mocks.yaml", "res: {status: 200, json: {state: OK, backend_id: a1}}\n")
	payload := write("payload.json", `{"resource_uuid": "r1"}`)

	code, out, errs := cli(t, "dry-run", "-c", rulesFile, "--type", "resource", payload)
	if code != 0 || !strings.Contains(out, "GET https://waldur.example.org/api/marketplace-provider-resources/r1/") ||
		!strings.Contains(out, "Authorization: Token ***") || !strings.Contains(out, "(reads steps.res: give them with --mock") ||
		!strings.Contains(out, `[when steps.res.json.state == "OK" = unknown until earlier steps run]`) {
		t.Errorf("without mocks: %d\n%s%s", code, out, errs)
	}
	code, out, errs = cli(t, "dry-run", "-c", rulesFile, "--type", "resource", "--mock", mocks, payload)
	if code != 0 || !strings.Contains(out, "$ sacctmgr --parsable2 --noheader --immediate add account a1 cluster=hpc1") ||
		!strings.Contains(out, `= true]`) {
		t.Errorf("with mocks: %d\n%s%s", code, out, errs)
	}
	bad := write("bad-mocks.yaml", "res: {status: 200, json: {state: OK, backend_id: -x}}\n")
	code, out, _ = cli(t, "dry-run", "-c", rulesFile, "--type", "resource", "--mock", bad, "-o", "yaml", payload)
	if code != 1 || !strings.Contains(out, "error: 'slurm add_account: name \"-x\" refused") {
		t.Errorf("a refusal must be an error with exit 1: %d\n%s", code, out)
	}
}

func TestChildrenOfAForcedExitAreFoundAndKilled(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // as steps run
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, pid := range childPIDs() {
		found = found || pid == cmd.Process.Pid
	}
	if !found {
		_ = cmd.Process.Kill()
		t.Fatalf("child %d not found among %v", cmd.Process.Pid, childPIDs())
	}
	killChildren([]int{cmd.Process.Pid}) // only this test's child
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("child not killed: %v", err)
	}
}
