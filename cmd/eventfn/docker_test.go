package main

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// dockerfile is the part of the Dockerfile the tests check.
type dockerfile struct {
	stages      []string // FROM lines
	buildRun    string   // the RUN line of the build stage that builds the binary
	entrypoint  []string
	cmd         []string
	healthcheck []string
	env         map[string]string
	expose      []string
	user        string
}

// parseDockerfile reads the Dockerfile's instructions (continuation lines
// joined): the build command, and the final stage's runtime settings.
func parseDockerfile(t *testing.T, path string) dockerfile {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	var cur strings.Builder
	for _, l := range strings.Split(string(src), "\n") {
		trimmed := strings.TrimSpace(l)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	d := dockerfile{env: map[string]string{}}
	jsonList := func(s string) []string {
		var out []string
		if err := json.Unmarshal([]byte(s), &out); err != nil {
			t.Fatalf("Dockerfile: %q is not an exec-form JSON list: %v", s, err)
		}
		return out
	}
	for _, l := range lines {
		instr, rest, _ := strings.Cut(l, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "FROM":
			d.stages = append(d.stages, rest)
			d.env, d.expose, d.user = map[string]string{}, nil, "" // per stage: keep the final one's
		case "RUN":
			if strings.Contains(rest, "scripts/build.sh") {
				d.buildRun = rest
			}
		case "ENTRYPOINT":
			d.entrypoint = jsonList(rest)
		case "CMD":
			d.cmd = jsonList(rest)
		case "HEALTHCHECK":
			i := strings.Index(rest, "CMD ")
			if i < 0 {
				t.Fatalf("HEALTHCHECK without CMD: %q", rest)
			}
			d.healthcheck = jsonList(rest[i+4:])
		case "ENV":
			k, v, _ := strings.Cut(rest, "=")
			d.env[k] = v
		case "EXPOSE":
			d.expose = append(d.expose, strings.Fields(rest)...)
		case "USER":
			d.user = rest
		}
	}
	return d
}

// buildLikeDockerfile builds the binary with the command the Dockerfile
// runs (scripts/build.sh, which holds the flags).
func buildLikeDockerfile(t *testing.T, d dockerfile, out, version string) {
	t.Helper()
	m := regexp.MustCompile(`^sh scripts/build\.sh (\S+) "\$\{VERSION\}"`).FindStringSubmatch(d.buildRun)
	if m == nil {
		t.Fatalf("the Dockerfile's build step %q does not run `sh scripts/build.sh OUT \"${VERSION}\"`", d.buildRun)
	}
	cmd := exec.Command("sh", "scripts/build.sh", out, version)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1") // the script must force 0 itself
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/build.sh: %v\n%s", err, b)
	}
}

// TestContainerImage checks the Dockerfile, builds the binary exactly as it
// does, and runs the image's command and health check against that binary.
func TestContainerImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a release binary")
	}
	d := parseDockerfile(t, "../../Dockerfile")

	// The image: multi-stage, a static final base, non-root, the health port.
	if len(d.stages) < 2 || !strings.HasPrefix(d.stages[0], "golang:") {
		t.Errorf("stages = %v, want a golang build stage first", d.stages)
	}
	if final := d.stages[len(d.stages)-1]; !strings.Contains(final, "distroless/static") && final != "scratch" {
		t.Errorf("final stage %q: want distroless static or scratch", final)
	}
	if d.user == "" || strings.HasPrefix(d.user, "0") || strings.HasPrefix(d.user, "root") {
		t.Errorf("USER = %q, want a non-root user", d.user)
	}
	if !slices.Equal(d.entrypoint, []string{"/eventfn"}) {
		t.Errorf("ENTRYPOINT = %v", d.entrypoint)
	}
	if !slices.Equal(d.healthcheck, []string{"/eventfn", "healthcheck"}) {
		t.Errorf("HEALTHCHECK CMD = %v, want the binary's own check", d.healthcheck)
	}
	i := slices.Index(d.cmd, "--listen")
	if len(d.cmd) == 0 || d.cmd[0] != "run" || i < 0 || i+1 >= len(d.cmd) {
		t.Fatalf("CMD = %v, want run --listen ADDR ...", d.cmd)
	}
	port := d.cmd[i+1][strings.LastIndexByte(d.cmd[i+1], ':')+1:]
	if !slices.Contains(d.expose, port) {
		t.Errorf("EXPOSE %v does not include the --listen port %s", d.expose, port)
	}
	if !strings.Contains(defaultHealthURL, ":"+port+"/") {
		t.Errorf("healthcheck's default URL %s is not on the --listen port %s", defaultHealthURL, port)
	}
	if d.env["EVENTFN_CONFIG"] == "" {
		t.Error("no ENV EVENTFN_CONFIG")
	}

	// The binary, built as the image builds it: static, stripped, versioned.
	bin := filepath.Join(t.TempDir(), "eventfn")
	buildLikeDockerfile(t, d, bin, "v9.9.9-test")
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has an ELF interpreter: not static (CGO_ENABLED=0 missing?)")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary links %v", libs)
	}
	if f.Section(".symtab") != nil {
		t.Error("the binary is not stripped (-s -w missing?)")
	}
	f.Close()
	if out, err := exec.Command(bin, "version").Output(); err != nil || !strings.HasPrefix(string(out), "eventfn v9.9.9-test\n") || !strings.Contains(string(out), "  go      go1.") {
		t.Errorf("version: %q %v", out, err)
	}

	// The image's command against a config at $EVENTFN_CONFIG: healthy,
	// handles an event (JSON log with its trace id), stops on SIGTERM.
	push, listen := freeAddr(t), freeAddr(t)
	cfg := filepath.Join(t.TempDir(), "eventfn.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`version: 1
sources:
  - {name: push, url: "http://%s/events"}
rules:
  - name: hello
    on: order
    steps:
      - log: hello {{ payload.uuid }}
`, push)), 0o600)
	args := slices.Clone(d.cmd)
	args[i+1] = listen
	run := exec.Command(bin, args...)
	run.Env = append(os.Environ(), "EVENTFN_CONFIG="+cfg, "OTEL_TRACES_EXPORTER=none")
	var stderr lockedBuffer
	run.Stderr = &stderr
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- run.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			run.Process.Kill()
			<-exited
		}
	}()
	health := func() int {
		hc := exec.Command(bin, append(d.healthcheck[1:], "--url", "http://"+listen+"/readyz")...)
		hc.Stdout, hc.Stderr = &bytes.Buffer{}, &bytes.Buffer{}
		err := hc.Run()
		if err == nil {
			return 0
		}
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		t.Fatal(err)
		return -1
	}
	deadline := time.Now().Add(30 * time.Second)
	for health() != 0 {
		select {
		case err := <-exited:
			stopped = true
			t.Fatalf("eventfn exited early (%v):\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("never healthy:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	const traceID = "0af7651916cd43dd8448eb211c80319c"
	body := `{"type": "order", "id": "o-1", "payload": {"uuid": "u-1"}, "headers": {"traceparent": "00-` + traceID + `-b7ad6b7169203331-01"}}`
	resp, err := http.Post("http://"+push+"/events", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var handled map[string]any
	deadline = time.Now().Add(20 * time.Second)
	for handled == nil {
		sc := bufio.NewScanner(strings.NewReader(stderr.String()))
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("log line is not JSON (--log-format json): %q", sc.Text())
			}
			if m["msg"] == "message handled" {
				handled = m
			}
		}
		if handled == nil {
			if time.Now().After(deadline) {
				t.Fatalf("no outcome line:\n%s", stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if handled["id"] != "o-1" || handled["trace_id"] != traceID || handled["fate"] != "acked" {
		t.Errorf("outcome line = %v", handled)
	}

	run.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	if c := health(); c != 1 {
		t.Errorf("healthcheck of a stopped eventfn exited %d, want 1", c)
	}
}

func TestHealthcheckCommand(t *testing.T) {
	var ready atomic.Bool
	ready.Store(true)
	srv := http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	go srv.Serve(ln)
	defer srv.Close()
	if code, out, errs := cli(t, "healthcheck", "--url", "http://"+addr+"/readyz"); code != 0 || !strings.Contains(out, "ready") {
		t.Errorf("ready: code %d %q %q", code, out, errs)
	}
	ready.Store(false)
	if code, _, errs := cli(t, "healthcheck", "--url", "http://"+addr+"/readyz"); code != 1 || !strings.Contains(errs, "503") {
		t.Errorf("not ready: code %d %q", code, errs)
	}
	srv.Close()
	if code, _, _ := cli(t, "healthcheck", "--url", "http://"+addr+"/readyz", "--timeout", "2s"); code != 1 {
		t.Errorf("nothing listening: code %d", code)
	}
	t.Setenv("EVENTFN_HEALTHCHECK_URL", "http://"+addr+"/readyz")
	if code, _, errs := cli(t, "healthcheck"); code != 1 || !strings.Contains(errs, addr) {
		t.Errorf("$EVENTFN_HEALTHCHECK_URL not used: %d %q", code, errs)
	}
	if code, _, _ := cli(t, "healthcheck", "extra"); code != 2 {
		t.Errorf("extra argument: code %d", code)
	}
}
