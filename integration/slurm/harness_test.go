package slurm

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventfn/eventfn/config"
	"github.com/eventfn/eventfn/waldur"
	"github.com/eventfn/eventfn/waldur/waldurtest"
)

// envFile is where scripts/test-env.sh records how to reach its SLURM.
const envFile = "/var/tmp/eventfn-slurm/env"

// rulesFile is the SLURM site under test.
const rulesFile = "../../examples/slurm-site/eventfn.yaml"

// slurmEnv says how to reach the test accounting database.
type slurmEnv struct {
	conf     string // SLURM_CONF
	cluster  string // ClusterName of slurm.conf
	sacctmgr string // the real sacctmgr
}

// findSlurm locates the accounting stack and checks that sacctmgr reaches
// it. It fails the test (never skips) when it cannot.
func findSlurm(t *testing.T) slurmEnv {
	t.Helper()
	conf := os.Getenv("SLURM_CONF")
	if conf == "" {
		b, err := os.ReadFile(envFile)
		if err != nil {
			t.Fatalf("no SLURM accounting stack: SLURM_CONF is not set and %s cannot be read (%v); run `bash scripts/test-env.sh`", envFile, err)
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "SLURM_CONF="); ok {
				conf = v
			}
		}
		if conf == "" {
			t.Fatalf("no SLURM_CONF line in %s; run `bash scripts/test-env.sh`", envFile)
		}
	}
	env := slurmEnv{conf: conf}
	f, err := os.Open(conf)
	if err != nil {
		t.Fatalf("SLURM_CONF=%s: %v; run `bash scripts/test-env.sh`", conf, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "="); ok && strings.EqualFold(k, "ClusterName") {
			env.cluster = strings.TrimSpace(v)
		}
	}
	if env.cluster == "" {
		t.Fatalf("%s has no ClusterName", conf)
	}
	if env.sacctmgr, err = exec.LookPath("sacctmgr"); err != nil {
		t.Fatalf("sacctmgr is not installed: %v; run `bash scripts/test-env.sh`", err)
	}
	out, err := env.run("show", "cluster", "format=Cluster")
	if err != nil {
		t.Fatalf("slurmdbd cannot be reached with SLURM_CONF=%s: %v; run `bash scripts/test-env.sh`", conf, err)
	}
	if !slices.Contains(strings.Fields(out), env.cluster) {
		t.Fatalf("cluster %q is not registered in slurmdbd (clusters: %q)", env.cluster, out)
	}
	return env
}

// run runs the real sacctmgr (not through eventfn), for set-up and checks.
func (e slurmEnv) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.sacctmgr, append([]string{"--parsable2", "--noheader", "--immediate"}, args...)...)
	cmd.Env = append(os.Environ(), "SLURM_CONF="+e.conf)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("sacctmgr %s: %w: %s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// assoc is one association read back with sacctmgr.
type assoc struct {
	Account, User, Parent, GrpTRESMins, QOS string
}

// assocs lists the associations of the cluster whose account starts with
// prefix, sorted.
func (e slurmEnv) assocs(t *testing.T, prefix string) []assoc {
	t.Helper()
	out, err := e.run("show", "assoc", "where", "cluster="+e.cluster, "format=Account,User,ParentName,GrpTRESMins,QOS")
	if err != nil {
		t.Fatal(err)
	}
	var rows []assoc
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		f := strings.Split(line, "|")
		if len(f) < 5 || !strings.HasPrefix(f[0], prefix) {
			continue
		}
		rows = append(rows, assoc{Account: f[0], User: f[1], Parent: f[2], GrpTRESMins: f[3], QOS: f[4]})
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].Account != rows[j].Account {
			return rows[i].Account < rows[j].Account
		}
		return rows[i].User < rows[j].User
	})
	return rows
}

// --- Waldur ---

// call is one request the fake Waldur received.
type call struct {
	Method, Path string
	Query        url.Values
	Body         any
}

// String shows a call compactly: METHOD path?query body.
func (c call) String() string {
	s := c.Method + " " + strings.TrimPrefix(c.Path, "/api/")
	if len(c.Query) > 0 {
		s += "?" + c.Query.Encode()
	}
	if c.Body != nil {
		b, _ := json.Marshal(c.Body)
		s += " " + string(b)
	}
	return s
}

// fakeWaldur is waldurtest's server (orders, resources, teams, backend
// resource requests) plus the list endpoints the site needs: offering
// users, provider resources, projects and backend resources. It records
// every call, in order.
type fakeWaldur struct {
	*waldurtest.Server
	front *httptest.Server
	token string

	mu            sync.Mutex
	calls         []call
	resourceUUIDs []string
	offeringUsers map[string]string // user uuid → offering username
	projects      map[string]string // slug → uuid
	backendRes    []map[string]any
	// the offering's project service accounts and course accounts, as
	// Waldur lists them ({username, state, project_uuid})
	serviceAccounts, courseAccounts []map[string]any
}

func newFakeWaldur(t *testing.T) *fakeWaldur {
	t.Helper()
	w := &fakeWaldur{token: "tok-" + randHex(8), offeringUsers: map[string]string{}, projects: map[string]string{}}
	w.Server = waldurtest.NewServer(w.token)
	target, _ := url.Parse(w.Server.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	w.front = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := readBody(r)
		c := call{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query()}
		if len(body) > 0 {
			_ = json.Unmarshal(body, &c.Body)
		}
		w.mu.Lock()
		w.calls = append(w.calls, c)
		w.mu.Unlock()
		if r.Header.Get("Authorization") != "Token "+w.token {
			writeJSON(rw, http.StatusUnauthorized, map[string]string{"detail": "Invalid token."})
			return
		}
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/api/marketplace-offering-users/":
			writeJSON(rw, http.StatusOK, w.listOfferingUsers(r.URL.Query()))
		case r.Method == http.MethodGet && r.URL.Path == "/api/marketplace-provider-resources/":
			writeJSON(rw, http.StatusOK, w.listResources(r.URL.Query()))
		case r.Method == http.MethodGet && r.URL.Path == "/api/projects/":
			out := []any{}
			w.mu.Lock()
			if id, ok := w.projects[r.URL.Query().Get("slug")]; ok {
				out = append(out, map[string]any{"uuid": id})
			}
			w.mu.Unlock()
			writeJSON(rw, http.StatusOK, out)
		case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/api/marketplace-provider-offerings/") &&
			(strings.HasSuffix(r.URL.Path, "/list_project_service_accounts/") || strings.HasSuffix(r.URL.Path, "/list_course_accounts/")):
			w.mu.Lock()
			list := w.serviceAccounts
			if strings.HasSuffix(r.URL.Path, "/list_course_accounts/") {
				list = w.courseAccounts
			}
			out := []any{}
			for _, a := range list {
				out = append(out, a)
			}
			w.mu.Unlock()
			writeJSON(rw, http.StatusOK, out)
		case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/api/marketplace-slurm-periodic-usage-policies/") &&
			strings.HasSuffix(r.URL.Path, "/report_command_result/"):
			writeJSON(rw, http.StatusOK, map[string]any{})
		case r.URL.Path == "/api/backend-resources/":
			w.backendResources(rw, r, c.Body)
		default:
			r.Body = readerOf(body)
			proxy.ServeHTTP(rw, r)
		}
	}))
	t.Cleanup(func() { w.front.Close(); w.Server.Close() })
	return w
}

func (w *fakeWaldur) listOfferingUsers(q url.Values) []any {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := []any{}
	if name, ok := w.offeringUsers[q.Get("user_uuid")]; ok {
		out = append(out, map[string]any{"user_uuid": q.Get("user_uuid"), "username": name, "state": "OK"})
	}
	return out
}

func (w *fakeWaldur) listResources(q url.Values) []any {
	w.mu.Lock()
	ids := slices.Clone(w.resourceUUIDs)
	w.mu.Unlock()
	out := []any{}
	for _, id := range ids {
		r, ok := w.Resource(id)
		if !ok ||
			(q.Has("project_uuid") && q.Get("project_uuid") != r.ProjectUUID) ||
			(q.Has("offering_uuid") && q.Get("offering_uuid") != r.OfferingUUID) ||
			(q.Has("state") && !slices.Contains(q["state"], r.State)) {
			continue
		}
		b, _ := json.Marshal(r)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		out = append(out, m)
	}
	return out
}

func (w *fakeWaldur) backendResources(rw http.ResponseWriter, r *http.Request, body any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch r.Method {
	case http.MethodGet:
		out := []any{}
		for _, br := range w.backendRes {
			if br["backend_id"] == r.URL.Query().Get("backend_id") {
				out = append(out, br)
			}
		}
		writeJSON(rw, http.StatusOK, out)
	case http.MethodPost:
		src, _ := body.(map[string]any)
		if id, _ := src["backend_id"].(string); strings.Contains(id, "-bad-") { // Waldur refuses this one
			writeJSON(rw, http.StatusBadRequest, map[string]any{"backend_id": []string{"refused by the test"}})
			return
		}
		m := map[string]any{"uuid": waldurtest.NewUUID()}
		for k, v := range src {
			m[k] = v
		}
		w.backendRes = append(w.backendRes, m)
		writeJSON(rw, http.StatusCreated, m)
	default:
		writeJSON(rw, http.StatusMethodNotAllowed, nil)
	}
}

// addResource seeds a provider resource (and remembers it for the list).
func (w *fakeWaldur) addResource(r waldur.ProviderResource, team ...waldur.TeamMember) waldur.ProviderResource {
	r = w.AddResource(r, team...)
	w.mu.Lock()
	defer w.mu.Unlock()
	if !slices.Contains(w.resourceUUIDs, r.UUID) {
		w.resourceUUIDs = append(w.resourceUUIDs, r.UUID)
	}
	return r
}

// takeCalls returns the calls so far and forgets them.
func (w *fakeWaldur) takeCalls() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, len(w.calls))
	for i, c := range w.calls {
		out[i] = c.String()
	}
	w.calls = nil
	return out
}

func readBody(r *http.Request) ([]byte, error) {
	defer r.Body.Close()
	var b bytes.Buffer
	_, err := b.ReadFrom(r.Body)
	return b.Bytes(), err
}

func readerOf(b []byte) *readCloser { return &readCloser{bytes.NewReader(b)} }

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

func writeJSON(rw http.ResponseWriter, status int, v any) {
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(status)
	if v != nil {
		_ = json.NewEncoder(rw).Encode(v)
	}
}

// --- the site under test ---

// site is the SLURM site's rules, run by `eventfn run` (proc) against the
// test slurmdbd and a fake Waldur, with names of its own: root account,
// prefixes, QoS.
type site struct {
	t        *testing.T
	env      slurmEnv
	waldur   *fakeWaldur
	cfg      *config.Config // the loaded example, with the test's settings
	sfx      string         // random, in every name of this test
	root     string         // the test's root account (the site's root_account)
	prefix   string         // customer, project and allocation prefix
	paused   string         // QoS of paused resources
	limited  string         // QoS of downscaled resources
	offering string
	cmdLog   string // sacctmgr invocations made by the rules, one per line
	sacctmgr string // the recording sacctmgr wrapper the rules run
	proc     *proc  // when set, messages go over the broker to `eventfn run` (newProcessSite)
	// reconcile makes startProcess run the reconciliation too
	reconcile bool
}

// newSite makes the site's accounts and fake Waldur and loads the example
// with the test's names and, when given, settings of the site (vars)
// changed as a site would change them; startProcess runs it.
func newSite(t *testing.T, settings ...map[string]any) *site {
	t.Helper()
	env := findSlurm(t)
	sfx := randHex(3)
	s := &site{
		t: t, env: env, sfx: sfx,
		root:     "ef" + sfx,
		prefix:   "ef" + sfx + "_",
		paused:   "ef" + sfx + "_paused",
		limited:  "ef" + sfx + "_limited",
		offering: waldurtest.NewUUID(),
	}
	for _, args := range [][]string{
		{"add", "qos", s.paused},
		{"add", "qos", s.limited},
		{"add", "account", s.root, "parent=root", "cluster=" + env.cluster, "description=eventfn integration test"},
	} {
		if _, err := env.run(args...); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		// users first (whole users: their default account does not stand in the way), then the
		// accounts; removing an account removes its subtree's associations, the account records
		// themselves go one by one
		out, _ := env.run("show", "user", "format=User")
		var users []string
		for _, u := range strings.Fields(out) {
			if strings.Contains(u, sfx) {
				users = append(users, u)
			}
		}
		if len(users) > 0 {
			if _, err := env.run("remove", "user", "where", "name="+strings.Join(users, ",")); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		accounts := []string{s.root}
		out, _ = env.run("show", "account", "format=Account")
		for _, a := range strings.Fields(out) {
			if strings.HasPrefix(a, s.prefix) {
				accounts = append(accounts, a)
			}
		}
		if _, err := env.run("remove", "account", "where", "name="+strings.Join(accounts, ",")); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		_, _ = env.run("remove", "qos", "where", "name="+s.paused+","+s.limited)
	})

	// sacctmgr as the rules run it, through a wrapper that records each call
	dir := t.TempDir()
	s.cmdLog = filepath.Join(dir, "sacctmgr.log")
	wrapper := filepath.Join(dir, "sacctmgr")
	script := "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '" + s.cmdLog + "'\nexec '" + env.sacctmgr + "' \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	s.sacctmgr = wrapper

	s.waldur = newFakeWaldur(t)
	tokenFile := filepath.Join(dir, "waldur-token")
	if err := os.WriteFile(tokenFile, []byte(s.waldur.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	cfg, err := config.Load(rulesFile, config.Options{})
	if err != nil {
		t.Fatalf("loading %s: %v", rulesFile, err)
	}
	rs := cfg.Rules
	vars := make(map[string]any, len(rs.Vars))
	for k, v := range rs.Vars {
		vars[k] = v
	}
	vars["root_account"], vars["default_account"] = s.root, s.root
	vars["customer_prefix"], vars["project_prefix"], vars["allocation_prefix"] = s.prefix, s.prefix, s.prefix
	vars["qos_paused"], vars["qos_downscaled"] = s.paused, s.limited
	for _, m := range settings {
		for k, v := range m {
			vars[k] = v
		}
	}
	rs.Vars = vars
	cfg.Slurm.Cluster, cfg.Slurm.Conf, cfg.Slurm.Sacctmgr = env.cluster, env.conf, wrapper
	cfg.Waldur.APIURL, cfg.Waldur.TokenFile = s.waldur.front.URL+"/api/", tokenFile

	s.cfg = cfg
	return s
}

// outcome is what became of a delivered message.
type outcome struct {
	Fate   string // ack or dead_letter
	Reason string // the failure, for dead_letter
}

// deliver publishes one Waldur message to the site's process and waits
// until it is settled.
func (s *site) deliver(typ string, payload map[string]any) outcome {
	s.t.Helper()
	if s.proc == nil {
		s.t.Fatal("deliver: the site has no eventfn process (newProcessSite)")
	}
	return s.proc.deliver(typ, payload)
}

// mustSucceed delivers a message that must be handled without failure.
func (s *site) mustSucceed(typ string, payload map[string]any) {
	s.t.Helper()
	if o := s.deliver(typ, payload); o.Fate != "ack" {
		s.t.Fatalf("%s %v: %s: %s", typ, payload, o.Fate, o.Reason)
	}
}

// sacctmgrCalls returns the sacctmgr command lines the rules ran since the
// last call (flags left out) and forgets them.
func (s *site) sacctmgrCalls() []string {
	s.t.Helper()
	b, err := os.ReadFile(s.cmdLog)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		s.t.Fatal(err)
	}
	if err := os.Remove(s.cmdLog); err != nil {
		s.t.Fatal(err)
	}
	var out []string
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		line = strings.TrimPrefix(line, "--parsable2 --noheader --immediate ")
		line = strings.TrimPrefix(line, "--parsable2 --immediate ")
		out = append(out, line)
	}
	return out
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
