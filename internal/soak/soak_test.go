//go:build soak

package soak

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eventfn/eventfn/internal/brokertest"
	"github.com/eventfn/eventfn/publish"
	"github.com/eventfn/eventfn/waldur"
	"github.com/eventfn/eventfn/waldur/waldurtest"
)

// The seven Waldur types, in two groups: the "acking" source (on_failure:
// ack) consumes the first four, so a plan that fails for good ends in the
// rule's on_failure step; the "deadletter" source (on_failure: dead-letter)
// consumes the other three, whose rule has no on_failure, so a failed
// message ends in the dead-letter queue.
var (
	ackTypes = []string{waldur.TypeOrder, waldur.TypeUserRole, waldur.TypeResource, waldur.TypeOfferingUser}
	dlTypes  = []string{waldur.TypeServiceAccount, waldur.TypeCourseAccount, waldur.TypeImportableResources}
	allTypes = append(slices.Clone(ackTypes), dlTypes...)
)

// Fates a message is published with (payload.soak_fate).
const (
	fateOK     = "ok"     // every step succeeds
	fateFlaky  = "flaky"  // the effect step fails once, then succeeds on retry
	fateFail   = "fail"   // the effect step fails every attempt: on_failure or dead-letter
	fateReject = "reject" // the body is not JSON: rejected, dead-lettered (deadletter source only)
)

// Where a message must end, exactly once.
const (
	endEffects   = "effects"   // the success log, written by the plan's last step
	endOnFailure = "onfailure" // the on_failure log
	endDLQ       = "dlq"       // the vhost's dead-letter queue
)

// effectsScript is the plan's effect step and the on_failure step (and
// the toggle stream's effect: one line "id redelivered incarnation" per
// run in the toggles log, nothing else). It logs
// every attempt ("id log incarnation") to attempts.log and fails as the
// fate says. The effect is not idempotent: every successful run appends
// the id to the effects log (and "id incarnation" to effects.inc), so a
// step that runs twice takes effect twice. The plan's last step, after
// it, logs "soak effect recorded ID": the journal had recorded the effect
// step by then, and a later run of it is a duplicate effect of a recorded
// step, which the journal must never allow. A re-run of an effect whose
// record had not been written (a SIGKILL between the effect and its
// record) is allowed and counted. The on_failure step appends the id
// unless it is there already, under a lock.
const effectsScript = `#!/bin/sh
# effect.sh DIR LOG ID FATE INCARNATION [REDELIVERED]
set -eu
dir=$1 log=$2 id=$3 fate=$4 inc=$5
if [ "$log" = toggles ]; then
  echo "$id ${6:-false} $inc" >> "$dir/toggles"
  exit 0
fi
echo "$id $log $inc" >> "$dir/attempts.log"
case $fate in
fail) echo "soak: failing $id on purpose" >&2; exit 3 ;;
flaky) [ "$(grep -c "^$id $log " "$dir/attempts.log")" -ge 2 ] || { echo "soak: $id fails once" >&2; exit 3; } ;;
esac
exec 9>>"$dir/$log.lock"
flock 9
if [ "$log" = effects ]; then
  echo "$id" >> "$dir/$log"
  echo "$id $inc" >> "$dir/$log.inc"
else
  grep -qxF "$id" "$dir/$log" 2>/dev/null || echo "$id" >> "$dir/$log"
fi
`

type config struct {
	duration            time.Duration
	rate                float64
	closeEvery          time.Duration
	killMin, killMax    time.Duration
	stallEvery, stallFr time.Duration
	sampleEvery         time.Duration
	drainTimeout        time.Duration
	toggleEvery         time.Duration
	seed                uint64
	keep                bool
	bin                 string
}

func envDuration(t *testing.T, k string, def time.Duration) time.Duration {
	v := os.Getenv(k)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration such as 2m", k, v)
	}
	return d
}

func loadConfig(t *testing.T) config {
	c := config{
		duration:     envDuration(t, "SOAK_DURATION", 30*time.Minute),
		closeEvery:   envDuration(t, "SOAK_CLOSE_EVERY", 5*time.Second),
		killMin:      envDuration(t, "SOAK_KILL_MIN", 20*time.Second),
		killMax:      envDuration(t, "SOAK_KILL_MAX", 30*time.Second),
		stallEvery:   envDuration(t, "SOAK_STALL_EVERY", 15*time.Second),
		stallFr:      envDuration(t, "SOAK_STALL_FOR", 3*time.Second),
		sampleEvery:  envDuration(t, "SOAK_SAMPLE_EVERY", 2*time.Second),
		drainTimeout: envDuration(t, "SOAK_DRAIN_TIMEOUT", 6*time.Minute),
		toggleEvery:  envDuration(t, "SOAK_TOGGLE_EVERY", 500*time.Millisecond),
		rate:         20,
		seed:         uint64(time.Now().UnixNano()),
		keep:         os.Getenv("SOAK_KEEP") != "",
		bin:          os.Getenv("EVENTFN_BIN"),
	}
	if v := os.Getenv("SOAK_RATE"); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r <= 0 {
			t.Fatalf("SOAK_RATE=%q: want messages per second", v)
		}
		c.rate = r
	}
	if v := os.Getenv("SOAK_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("SOAK_SEED=%q: want a number", v)
		}
		c.seed = s
	}
	if c.killMax < c.killMin {
		c.killMax = c.killMin
	}
	return c
}

// published is what the driver sent, per x-message-id.
type published struct {
	seq    int
	runner string
	typ    string
	fate   string
	end    string
	sends  int // >1: the publish connection broke and the message was sent again
	sentAt time.Time
}

// soak is one run.
type soak struct {
	t     *testing.T
	cfg   config
	b     *brokertest.Broker
	vhost string
	dir   string
	rng   *rand.Rand

	offering string
	runners  map[string]*proc // "crash", "steady"
	queues   []string         // every work queue

	mu    sync.Mutex
	pubs  map[string]*published
	order []string

	closes, closeErrs, kills atomic.Int64
	hook                     *hookServer
	samples                  []sample
	maxBacklog               int
	steadyReconnects         float64

	toggles          toggleLog
	toggleDuplicates float64 // the steady runner's duplicates of the toggles source, at the end
}

// toggleLog is what the toggle stream published: state changes per
// x-message-id (identical payloads, so the same id, within the dedup
// window), the exact republishes, and each key's last change.
type toggleLog struct {
	mu      sync.Mutex
	changes map[string]int    // id → times published as a state change
	dups    map[string]int    // id → exact republishes right after it (nothing between)
	keyOf   map[string]string // id → its key (project)
	last    map[string]string // key → id of its last change
	bursts  int
}

func TestSoak(t *testing.T) {
	cfg := loadConfig(t)
	s := &soak{t: t, cfg: cfg, rng: rand.New(rand.NewPCG(cfg.seed, 0x50a4)), runners: map[string]*proc{},
		pubs: map[string]*published{}, toggles: toggleLog{changes: map[string]int{}, dups: map[string]int{},
			keyOf: map[string]string{}, last: map[string]string{}}}
	dir, err := os.MkdirTemp("", "eventfn-soak-")
	if err != nil {
		t.Fatal(err)
	}
	s.dir = dir
	t.Cleanup(func() {
		if t.Failed() || cfg.keep {
			fmt.Printf("soak: work directory kept: %s (eventfn logs: runner-*.log)\n", dir)
			return
		}
		os.RemoveAll(dir)
	})
	fmt.Printf("soak: %s at %.0f msg/s; connections closed every ~%s; crash runner SIGKILLed every %s-%s; webhook stalls %s every %s; seed %d\n",
		cfg.duration, cfg.rate, cfg.closeEvery, cfg.killMin, cfg.killMax, cfg.stallFr, cfg.stallEvery, cfg.seed)

	bin := cfg.bin
	if bin == "" {
		bin = filepath.Join(dir, "eventfn")
		build := exec.Command("sh", "../../scripts/build.sh", bin, "soak")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("scripts/build.sh: %v\n%s", err, out)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "effect.sh"), []byte(effectsScript), 0o755); err != nil {
		t.Fatal(err)
	}
	s.hook = newHookServer(cfg.stallEvery, cfg.stallFr)
	defer s.hook.Close()

	s.setupBroker()
	for _, name := range []string{"crash", "steady"} {
		url := "stomp://" + brokertest.STOMPAddr
		if name == "steady" {
			url = "stomp+ws://" + brokertest.WebSTOMPAddr + "/ws"
		}
		s.runners[name] = s.newProc(name, bin, url)
	}
	for _, p := range s.runners {
		if err := p.start(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, p := range s.runners {
			p.kill()
		}
	})
	for _, p := range s.runners {
		p.waitReady(t, 60*time.Second)
	}
	idleBefore := s.runners["steady"].goroutines()

	s.run()

	// Every queue empty and nothing unacknowledged: every message settled.
	drainStart := time.Now()
	s.waitDrained()
	drained := time.Since(drainStart)
	// At rest again: the same goroutines as before the run, once the
	// webhook client's idle keep-alive connections (two goroutines each)
	// are closed by the target.
	steady := s.runners["steady"]
	steady.waitReady(t, 3*time.Minute)
	s.hook.CloseClientConnections()
	var idleAfter float64
	for range 50 {
		if idleAfter = steady.goroutines(); idleAfter <= idleBefore {
			break
		}
		time.Sleep(200 * time.Millisecond) // the process's own state: no signal to wait for
	}
	sm, err := steady.metrics()
	if err != nil {
		t.Fatal(err)
	}
	s.steadyReconnects = sm["reconnects"]
	s.toggleDuplicates = sm["toggle_duplicates"]
	for _, name := range []string{"crash", "steady"} {
		if err := s.runners[name].stop(60 * time.Second); err != nil {
			t.Errorf("%s runner: graceful stop: %v", name, err)
		}
	}
	s.verify(drained, idleBefore, idleAfter)
}

// setupBroker makes the vhost (deleted when the test ends), a broker user
// per runner and Waldur's queues: one per runner and type, with Waldur's
// arguments (x-max-length 10000, dead-lettering to waldur.dlq.messages),
// and the dead-letter queue.
func (s *soak) setupBroker() {
	s.b = brokertest.New(s.t)
	s.vhost = s.b.VHost(brokertest.Unique("eventfn-soak-"))
	s.offering = waldurtest.NewUUID()
	s.b.Queue(s.vhost, brokertest.WaldurDLQ, nil)
	fmt.Printf("soak: vhost %s\n", s.vhost)
}

// proc is one eventfn process, restarted under the same name.
type proc struct {
	s       *soak
	name    string
	bin     string
	cfgPath string
	listen  string
	login   string
	pass    string
	queues  map[string]string // type → queue
	toggleQ string            // the steady runner's toggles queue (user_role)

	mu          sync.Mutex
	cmd         *exec.Cmd
	exited      chan struct{}
	incarnation int
	exitErr     error
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func (s *soak) newProc(name, bin, url string) *proc {
	t := s.t
	p := &proc{s: s, name: name, bin: bin, listen: freePort(t), login: waldurtest.NewUUID(),
		pass: brokertest.Unique("pw-"), queues: map[string]string{}}
	s.b.User(s.vhost, p.login, p.pass)
	for _, typ := range allTypes {
		q := waldur.QueueName(p.login, s.offering, typ)
		s.b.WaldurQueue(s.vhost, q)
		p.queues[typ] = q
		s.queues = append(s.queues, q)
	}
	dests := func(types []string) string {
		var out []string
		for _, typ := range types {
			out = append(out, strconv.Quote(waldur.Destination(p.queues[typ])))
		}
		return "[" + strings.Join(out, ", ") + "]"
	}
	// The steady runner (never killed) also consumes the toggle stream,
	// from a user_role queue of its own, through a source of its own.
	toggleSource, toggleRule, toggleWhen := "", "", ""
	if name == "steady" {
		p.toggleQ = waldur.QueueName(waldurtest.NewUUID(), s.offering, waldur.TypeUserRole)
		s.b.WaldurQueue(s.vhost, p.toggleQ)
		s.queues = append(s.queues, p.toggleQ)
		toggleSource = fmt.Sprintf(`  - name: toggles
    url: %s
    vhost: %s
    login: %s
    passcode_env: SOAK_PASSCODE
    prefetch: 50
    subscribe: [%s]
`, url, s.vhost, p.login, strconv.Quote(waldur.Destination(p.toggleQ)))
		toggleRule = `  - name: soak-toggles
    on: user_role
    when: source == "toggles"
    key: payload?.project_uuid ?? payload.resource_uuid
    steps:
      - exec: [sh, "{{ vars.script }}", "{{ vars.dir }}", toggles, "{{ id }}", ok, "{{ env.SOAK_INCARNATION }}",
               "{{ headers?.redelivered ?? 'false' }}"]
`
		toggleWhen = "    when: source != \"toggles\"\n"
	}
	rdir := filepath.Join(s.dir, name)
	if err := os.MkdirAll(rdir, 0o700); err != nil {
		t.Fatal(err)
	}
	steps := `    key: payload.resource_uuid
    steps:
      - id: notify
        webhook: {url: "{{ vars.hook }}?id={{ id }}", body: {id: "{{ id }}", type: "{{ type }}"}}
        timeout: 1s
        retry: {attempts: 15, backoff: exponential, initial: 100ms, max: 1s, jitter: 0.2}
      - id: effect
        exec: [sh, "{{ vars.script }}", "{{ vars.dir }}", effects, "{{ id }}", "{{ payload.soak_fate }}", "{{ env.SOAK_INCARNATION }}"]
      - log: {message: "soak effect recorded {{ id }}"}
`
	cfg := fmt.Sprintf(`version: 1
env: [SOAK_INCARNATION]
vars:
  hook: %q
  script: %q
  dir: %q
defaults:
  timeout: 10s
  retry: {attempts: 3, backoff: constant, initial: 50ms}
runner:
  state_dir: %q
  shutdown_timeout: 10s
  concurrency: 8
sources:
  - name: acking
    url: %s
    vhost: %s
    login: %s
    passcode_env: SOAK_PASSCODE
    prefetch: 50
    subscribe: %s
  - name: deadletter
    url: %s
    vhost: %s
    login: %s
    passcode_env: SOAK_PASSCODE
    prefetch: 50
    on_failure: dead-letter
    subscribe: %s
%srules:
  - name: soak-acking
    on: %s
%s%s    on_failure:
      - exec: [sh, "{{ vars.script }}", "{{ vars.dir }}", onfailure, "{{ id }}", ok, "{{ env.SOAK_INCARNATION }}"]
  - name: soak-deadletter
    on: %s
%s%s`, s.hook.URL+"/hook", filepath.Join(s.dir, "effect.sh"), s.dir, filepath.Join(rdir, "state"),
		url, s.vhost, p.login, dests(ackTypes),
		url, s.vhost, p.login, dests(dlTypes), toggleSource,
		"["+strings.Join(ackTypes, ", ")+"]", toggleWhen, steps,
		"["+strings.Join(dlTypes, ", ")+"]", steps, toggleRule)
	p.cfgPath = filepath.Join(rdir, "eventfn.yaml")
	if err := os.WriteFile(p.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.incarnation++
	inc := fmt.Sprintf("%s-%d", p.name, p.incarnation)
	logf, err := os.Create(filepath.Join(p.s.dir, "runner-"+inc+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(p.bin, "run", "-c", p.cfgPath, "--listen", p.listen)
	cmd.Env = append(os.Environ(), "SOAK_PASSCODE="+p.pass, "SOAK_INCARNATION="+inc)
	cmd.Stdout, cmd.Stderr = logf, logf
	// If the test process dies, so does eventfn.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.mu.Lock()
		p.exitErr = err
		p.mu.Unlock()
		close(exited)
	}()
	p.cmd, p.exited = cmd, exited
	return nil
}

func (p *proc) current() (*exec.Cmd, chan struct{}, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd, p.exited, fmt.Sprintf("%s-%d", p.name, p.incarnation)
}

// kill SIGKILLs the process and waits for it to be gone.
func (p *proc) kill() {
	cmd, exited, _ := p.current()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(timeout time.Duration) error {
	cmd, exited, _ := p.current()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-exited:
	case <-time.After(timeout):
		p.kill()
		return fmt.Errorf("did not exit within %s of SIGTERM", timeout)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitErr
}

var httpc = &http.Client{Timeout: 5 * time.Second}

// waitReady polls /readyz (the process's own state, seen from outside).
func (p *proc) waitReady(t *testing.T, timeout time.Duration) {
	brokertest.WaitFor(t, timeout, p.name+" runner ready", func() bool {
		resp, err := httpc.Get("http://" + p.listen + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// metrics scrapes the gauges of /metrics this test reads.
func (p *proc) metrics() (map[string]float64, error) {
	resp, err := httpc.Get("http://" + p.listen + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		f, err := strconv.ParseFloat(val, 64)
		if err != nil {
			continue
		}
		switch {
		case name == "go_goroutines", name == "process_resident_memory_bytes", name == "go_memstats_heap_inuse_bytes":
			out[name] = f
		case strings.HasPrefix(name, "eventfn_source_reconnects_total{"):
			out["reconnects"] += f
		case strings.HasPrefix(name, "eventfn_messages_duplicate_total{") && strings.Contains(name, `source="toggles"`):
			out["toggle_duplicates"] += f
		case strings.HasPrefix(name, "eventfn_messages_settled_total{") && strings.Contains(name, `source="toggles"`):
			out["toggle_settled"] += f
		}
	}
	return out, sc.Err()
}

func (p *proc) goroutines() float64 {
	m, err := p.metrics()
	if err != nil {
		p.s.t.Fatalf("%s runner: /metrics: %v", p.name, err)
	}
	return m["go_goroutines"]
}

// rss reads VmRSS of the process from /proc, in bytes.
func rss(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// sample is one reading of a runner.
type sample struct {
	at          time.Duration // since publishing started
	runner, inc string
	age         time.Duration
	rss         float64
	goroutines  float64
	heap        float64
}

// hookServer is the webhook target: it answers at once, except during its
// stalls (stallFor out of every stallEvery), when it holds requests past
// the step's timeout.
type hookServer struct {
	*httptest.Server
	start              time.Time
	stallEvery, stall  time.Duration
	calls, stalledReqs atomic.Int64
}

func newHookServer(every, stall time.Duration) *hookServer {
	h := &hookServer{start: time.Now(), stallEvery: every, stall: stall}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.calls.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		if phase := time.Since(h.start) % h.stallEvery; phase < h.stall {
			h.stalledReqs.Add(1)
			// A stalled target: the request hangs until the stall is over
			// or the client gives up.
			t := time.NewTimer(h.stall - phase)
			defer t.Stop()
			select {
			case <-t.C:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"ok": true, "id": %q}`, r.URL.Query().Get("id"))
	}))
	return h
}

func (h *hookServer) stalls(d time.Duration) int64 { return int64(d/h.stallEvery) + 1 }

// run publishes for the configured duration under chaos, then stops the
// chaos (leaving both runners up).
func (s *soak) run() {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.duration)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	wg.Go(func() { s.closer(ctx) })
	wg.Go(func() { s.killer(ctx) })
	wg.Go(func() { s.sampler(ctx, start) })
	wg.Go(func() { s.toggle(ctx) })
	s.publish(ctx, start)
	wg.Wait()
}

func jitter(r *rand.Rand, d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.6 + 0.8*r.Float64()))
}

// wait sleeps d unless ctx ends first; it reports whether d passed.
func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// closer makes the broker close every connection of the vhost (eventfn's
// and the publisher's) every few seconds.
func (s *soak) closer(ctx context.Context) {
	r := rand.New(rand.NewPCG(s.cfg.seed, 1))
	for wait(ctx, jitter(r, s.cfg.closeEvery)) {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(cctx, "rabbitmqctl", "close_all_connections", "--vhost", s.vhost, "eventfn soak: chaos").CombinedOutput()
		cancel()
		if err != nil {
			s.closeErrs.Add(1)
			fmt.Printf("soak: rabbitmqctl close_all_connections: %v: %s\n", err, strings.TrimSpace(string(out)))
			continue
		}
		s.closes.Add(1)
	}
}

// killer SIGKILLs the crash runner every killMin-killMax and starts it again.
func (s *soak) killer(ctx context.Context) {
	r := rand.New(rand.NewPCG(s.cfg.seed, 2))
	p := s.runners["crash"]
	for {
		d := s.cfg.killMin + time.Duration(r.Int64N(int64(s.cfg.killMax-s.cfg.killMin)+1))
		if !wait(ctx, d) {
			return
		}
		p.kill()
		s.kills.Add(1)
		if err := p.start(); err != nil {
			fmt.Printf("soak: restarting the crash runner: %v\n", err)
		}
	}
}

// sampler records each runner's RSS and goroutines.
func (s *soak) sampler(ctx context.Context, start time.Time) {
	started := map[string]time.Time{}
	for wait(ctx, s.cfg.sampleEvery) {
		for _, name := range []string{"crash", "steady"} {
			p := s.runners[name]
			cmd, _, inc := p.current()
			if _, ok := started[inc]; !ok {
				started[inc] = time.Now()
			}
			m, err := p.metrics()
			if err != nil {
				continue // restarting
			}
			r, err := rss(cmd.Process.Pid)
			if err != nil {
				continue
			}
			s.mu.Lock()
			s.samples = append(s.samples, sample{at: time.Since(start), runner: name, inc: inc,
				age: time.Since(started[inc]), rss: r, goroutines: m["go_goroutines"], heap: m["go_memstats_heap_inuse_bytes"]})
			s.mu.Unlock()
		}
		if n := s.backlog(); n > s.maxBacklog {
			s.maxBacklog = n
		}
	}
}

// backlog is the deepest work queue, from the management API (sampled).
func (s *soak) backlog() int {
	req, err := http.NewRequest(http.MethodGet, strings.TrimRight(brokertest.ManagementURL, "/")+"/api/queues/"+s.vhost+"?columns=name,messages", nil)
	if err != nil {
		return 0
	}
	req.SetBasicAuth(brokertest.AdminUser, brokertest.AdminPass)
	resp, err := httpc.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var qs []struct {
		Name     string `json:"name"`
		Messages int    `json:"messages"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&qs); err != nil {
		return 0
	}
	deepest := 0
	for _, q := range qs {
		if q.Name != brokertest.WaldurDLQ && q.Messages > deepest {
			deepest = q.Messages
		}
	}
	return deepest
}

// publish sends mixed events at the configured rate until ctx ends. A
// message whose send failed (the broker closed the connection) is sent
// again on a new connection, with the same body and so the same
// x-message-id, as Waldur would.
func (s *soak) publish(ctx context.Context, start time.Time) {
	var pub publish.Publisher
	defer func() {
		if pub != nil {
			_ = pub.Close()
		}
	}()
	// dial connects, retrying while the broker closes connections. It
	// does not stop with the run: a message whose send failed is sent
	// again even when the run has just ended, or its fate is unknown.
	dial := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		for {
			p, err := publish.Dial(ctx, publish.Options{URL: "stomp://" + brokertest.STOMPAddr, VHost: s.vhost,
				Login: brokertest.AdminUser, Passcode: brokertest.AdminPass, ConfirmEvery: 1})
			if err == nil {
				pub = p
				return
			}
			if !wait(ctx, 200*time.Millisecond) {
				s.t.Fatalf("publisher: cannot connect for 2 minutes: %v", err)
			}
		}
	}
	names := []string{"crash", "steady"}
	for seq := 0; ; seq++ {
		due := start.Add(time.Duration(float64(seq) / s.cfg.rate * float64(time.Second)))
		if !wait(ctx, time.Until(due)) {
			return
		}
		p := s.runners[names[s.rng.IntN(2)]]
		typ := allTypes[s.rng.IntN(len(allTypes))]
		dl := slices.Contains(dlTypes, typ)
		fate, end := fateOK, endEffects
		switch x := s.rng.IntN(100); {
		case x < 10:
			fate = fateFlaky
		case x < 25:
			fate, end = fateFail, endOnFailure
			if dl {
				end = endDLQ
			}
		case x < 30 && dl:
			fate, end = fateReject, endDLQ
		}
		var body []byte
		if fate == fateReject {
			body = fmt.Appendf(nil, `{"soak_seq": %d, "soak_fate": "reject", "truncated`, seq)
		} else {
			body, _ = json.Marshal(map[string]any{
				"soak_seq": seq, "soak_fate": fate, "object_type": typ,
				// One key per message: a message's de-duplication key is its
				// rule's key, and two messages of one key handled in turn make
				// a redelivery of the first run again by design (it is not
				// "the same delivery again" once another was handled since),
				// which the count of duplicate effects below would not tell
				// from a journal fault.
				"resource_uuid": fmt.Sprintf("%032x", seq), "offering_uuid": s.offering,
				"order_uuid": waldurtest.NewUUID(), "order_state": "executing",
			})
		}
		dest := waldur.Destination(p.queues[typ])
		msg := publish.WaldurMessage(s.vhost, dest, body, nil, time.Now())
		id := msg.Headers[publish.HeaderMessageID]
		rec := &published{seq: seq, runner: p.name, typ: typ, fate: fate, end: end, sentAt: time.Now()}
		s.mu.Lock()
		s.pubs[id] = rec
		s.order = append(s.order, id)
		s.mu.Unlock()
		for {
			if pub == nil {
				dial()
			}
			rec.sends++
			pctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := pub.Publish(pctx, msg)
			cancel()
			if err == nil {
				break
			}
			_ = pub.Close()
			pub = nil
		}
	}
}

// toggleKeys is how many projects the toggle stream changes in turn: the
// first half back to back, the others spaced.
const toggleKeys = 4

// spacedKey reports whether the toggle stream's project k gets its
// messages spaced: each published once the steady runner has settled
// every toggle message before it.
func spacedKey(k int) bool { return k >= toggleKeys/2 }

// toggle publishes the toggle stream to the steady runner until ctx ends:
// every toggleEvery a burst for one project (in turn): grant, revoke,
// grant, revoke of the same user (payloads 1 and 3, and 2 and 4, are
// identical: the same x-message-id within the dedup window), then an
// exact republish of the last one, with nothing between for that project.
// Half the projects get their bursts back to back, as Waldur publishes
// changes made in quick succession; the others spaced, each message
// published once the runner's count of settled toggle messages has caught
// up with those sent (approximate around a connection close: redelivered
// copies are settled and counted too). Every change must take effect, in order, and the
// republish must not. A send that failed (the broker closed the
// connection) is sent again: the same message, so at most an exact
// republish, counted as the same change.
func (s *soak) toggle(ctx context.Context) {
	p := s.runners["steady"]
	dest := waldur.Destination(p.toggleQ)
	var pub publish.Publisher
	defer func() {
		if pub != nil {
			_ = pub.Close()
		}
	}()
	send := func(body []byte) string {
		msg := publish.WaldurMessage(s.vhost, dest, body, nil, time.Now())
		for {
			if pub == nil {
				dctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				for pub == nil {
					c, err := publish.Dial(dctx, publish.Options{URL: "stomp://" + brokertest.STOMPAddr, VHost: s.vhost,
						Login: brokertest.AdminUser, Passcode: brokertest.AdminPass, ConfirmEvery: 1})
					if err == nil {
						pub = c
					} else if !wait(dctx, 200*time.Millisecond) {
						s.t.Errorf("toggle publisher: cannot connect for 2 minutes: %v", err)
						cancel()
						return ""
					}
				}
				cancel()
			}
			pctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := pub.Publish(pctx, msg)
			cancel()
			if err == nil {
				return msg.Headers[publish.HeaderMessageID]
			}
			_ = pub.Close()
			pub = nil
		}
	}
	user := waldurtest.NewUUID()
	tl := &s.toggles
	sent := 0
	// settled waits until the runner has settled every toggle message sent
	// (its own count, seen from outside: there is no other signal).
	settled := func() bool {
		for {
			if m, err := p.metrics(); err == nil && m["toggle_settled"] >= float64(sent) {
				return true
			}
			if !wait(ctx, 20*time.Millisecond) {
				return false
			}
		}
	}
	for round := 0; wait(ctx, s.cfg.toggleEvery); round++ {
		k := round % toggleKeys
		project := fmt.Sprintf("%032x", 0x70000+k)
		var body []byte
		for i := range 4 {
			if spacedKey(k) && !settled() {
				return
			}
			body, _ = json.Marshal(map[string]any{"project_uuid": project, "resource_uuid": project, "user_uuid": user,
				"role_name": "PROJECT.MEMBER", "granted": i%2 == 0, "offering_uuid": s.offering})
			id := send(body)
			if id == "" {
				return
			}
			sent++
			tl.mu.Lock()
			tl.changes[id]++
			tl.keyOf[id], tl.last[project] = project, id
			tl.mu.Unlock()
		}
		if spacedKey(k) && !settled() {
			return
		}
		id := send(body) // the exact republish
		if id == "" {
			return
		}
		sent++
		tl.mu.Lock()
		tl.dups[id]++
		tl.bursts++
		tl.mu.Unlock()
	}
}

// verifyToggles judges the toggle stream from the toggles log: per id, the
// runs of first deliveries must be exactly its state changes (fewer: a
// change was skipped; more: an exact republish ran), every key must end in
// its last change, and the steady runner must have counted at least the
// republishes as duplicates. Runs of redelivered copies (an ack lost with
// a closed connection, after a later change of the key was handled) are
// counted, not judged.
func (s *soak) verifyToggles(fail func(string, ...any), example func(string, ...any)) string {
	tl := &s.toggles
	first, again := map[string]int{}, map[string]int{}
	lastRun := map[string]string{} // key → id of the last first-delivery run
	for _, line := range readLinesOf(s.t, filepath.Join(s.dir, "toggles")) {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		id, redelivered := f[0], f[1] == "true"
		if _, ok := tl.keyOf[id]; !ok {
			fail("toggles: unknown id %q ran", id)
			continue
		}
		if redelivered {
			again[id]++
			continue
		}
		first[id]++
		lastRun[tl.keyOf[id]] = id
	}
	changes, dups, skipped, extra, reruns := 0, 0, 0, 0, 0
	skippedBy := map[bool]int{} // spaced? → state changes skipped
	changesBy := map[bool]int{}
	for id, n := range tl.changes {
		k, _ := strconv.ParseInt(tl.keyOf[id], 16, 64)
		spaced := spacedKey(int(k - 0x70000))
		changes += n
		changesBy[spaced] += n
		dups += tl.dups[id]
		reruns += again[id]
		// A change whose first delivery never reached the runner (it sat in
		// the prefetch of a connection the broker closed) runs only as a
		// redelivered copy: it ran, so it counts, as do all of the id's
		// redelivered runs (an upper bound: a skip hidden behind a
		// redelivered re-run of another change of the id is not seen).
		switch got := first[id]; {
		case got+again[id] < n:
			skipped += n - got - again[id]
			skippedBy[spaced] += n - got - again[id]
			example("toggle %s (%s): %d of its %d state changes ran (%d of them as redelivered copies)", id, tl.keyOf[id], got+again[id], n, again[id])
		case got > n:
			extra += got - n
			example("toggle %s (%s): ran %d times for %d state changes (and %d exact republishes)", id, tl.keyOf[id], got, n, tl.dups[id])
		}
	}
	wrongEnd := 0
	for key, id := range tl.last {
		if lastRun[key] != id {
			wrongEnd++
			example("toggle key %s ends in %q, want its last change %q", key, lastRun[key], id)
		}
	}
	if changes == 0 {
		fail("toggles: nothing was published: the stream proves nothing")
	}
	if skipped > 0 {
		fail("toggles: %d state changes with a payload seen before were skipped (taken for duplicates): %d of %d published back to back, %d of %d spaced",
			skipped, skippedBy[false], changesBy[false], skippedBy[true], changesBy[true])
	}
	if extra > 0 {
		fail("toggles: %d exact republishes (nothing between) ran instead of being skipped", extra)
	}
	if wrongEnd > 0 {
		fail("toggles: %d keys do not end in their last state change", wrongEnd)
	}
	if s.toggleDuplicates < float64(dups) {
		fail("toggles: the steady runner counted %.0f duplicates of the toggles source, fewer than the %d exact republishes", s.toggleDuplicates, dups)
	}
	return fmt.Sprintf("%d bursts on %d keys: %d state changes (%d distinct ids): %d skipped (back to back %d of %d, spaced %d of %d); "+
		"%d exact republishes (%.0f duplicates counted), %d of them ran; %d extra runs of redelivered copies; %d of %d keys end in their last change",
		tl.bursts, toggleKeys, changes, len(tl.changes), skipped, skippedBy[false], changesBy[false], skippedBy[true], changesBy[true],
		dups, s.toggleDuplicates, extra, reruns, len(tl.last)-wrongEnd, len(tl.last))
}

// readLinesOf returns the lines of a file (none when it does not exist).
func readLinesOf(t *testing.T, path string) []string {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// waitDrained waits until every work queue is empty with nothing
// unacknowledged (rabbitmqctl: exact counts).
func (s *soak) waitDrained() {
	deadline := time.Now().Add(s.cfg.drainTimeout)
	for {
		ready, unacked, err := s.depths()
		if err == nil && ready == 0 && unacked == 0 {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("queues not drained after %s: %d ready, %d unacknowledged (err %v)", s.cfg.drainTimeout, ready, unacked, err)
		}
		time.Sleep(time.Second) // polling the broker's state: there is no signal to wait for
	}
}

func (s *soak) depths() (ready, unacked int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "rabbitmqctl", "list_queues", "-q", "--no-table-headers", "-p", s.vhost,
		"name", "messages_ready", "messages_unacknowledged").CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("rabbitmqctl list_queues: %v: %s", err, out)
	}
	seen := 0
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || !slices.Contains(s.queues, f[0]) {
			continue
		}
		seen++
		r, _ := strconv.Atoi(f[1])
		u, _ := strconv.Atoi(f[2])
		ready += r
		unacked += u
	}
	if seen != len(s.queues) {
		return 0, 0, fmt.Errorf("found %d of %d queues: %s", seen, len(s.queues), out)
	}
	return ready, unacked, nil
}

// readLines returns the lines of a file (none when it does not exist).
func readLines(t *testing.T, path string) []string {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	return s[len(s)/2]
}

const mib = 1 << 20

// verify counts where every message ended and checks the samples.
func (s *soak) verify(drained time.Duration, idleBefore, idleAfter float64) {
	t := s.t
	var violations []string
	fail := func(format string, args ...any) {
		violations = append(violations, fmt.Sprintf(format, args...))
	}

	// Where each id ended.
	where := map[string]map[string]int{} // id → end → copies
	add := func(id, end string) {
		if where[id] == nil {
			where[id] = map[string]int{}
		}
		where[id][end]++
	}
	for _, end := range []string{endEffects, endOnFailure} {
		for _, id := range readLines(t, filepath.Join(s.dir, end)) {
			add(id, end)
		}
	}
	dlqReasons := map[string]int{}
	for {
		msgs := s.b.Get(s.vhost, brokertest.WaldurDLQ, 1000)
		if len(msgs) == 0 {
			break
		}
		for _, m := range msgs {
			id, _ := m.Headers[publish.HeaderMessageID].(string)
			add(id, endDLQ)
			reason := "?"
			if xd, ok := m.Headers["x-death"].([]any); ok && len(xd) > 0 {
				if d, ok := xd[0].(map[string]any); ok {
					reason, _ = d["reason"].(string)
				}
			}
			dlqReasons[reason]++
		}
	}
	for reason, n := range dlqReasons {
		if reason != "rejected" {
			fail("%d dead-lettered messages with x-death reason %q (want rejected: NACKed by eventfn); %q means a queue overflowed or messages expired", n, reason, reason)
		}
	}

	// Attempts of the effect and on_failure steps, per id, log and process.
	type attemptKey struct{ id, log, inc string }
	attempts := map[attemptKey]int{}
	incs := map[string]map[string]bool{} // id → incarnations that ran a step of it
	b, err := os.ReadFile(filepath.Join(s.dir, "attempts.log"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		attempts[attemptKey{f[0], f[1], f[2]}]++
		if incs[f[0]] == nil {
			incs[f[0]] = map[string]bool{}
		}
		incs[f[0]][f[2]] = true
	}

	byFate, byType, byEnd, found := map[string]int{}, map[string]int{}, map[string]int{}, map[string]int{}
	resent, missing, misplaced, doubled, spread, reran := 0, 0, 0, 0, 0, 0
	var examples []string
	example := func(format string, args ...any) {
		if len(examples) < 10 {
			examples = append(examples, fmt.Sprintf(format, args...))
		}
	}
	for _, id := range s.order {
		p := s.pubs[id]
		byFate[p.fate]++
		byType[p.typ]++
		byEnd[p.end]++
		if p.sends > 1 {
			resent++
		}
		got := where[id]
		delete(where, id)
		for end, n := range got {
			found[end] += n
		}
		switch {
		case len(got) == 0:
			missing++
			example("%s (%s runner, %s, %s) is nowhere: want it in %s", id, p.runner, p.typ, p.fate, p.end)
		case len(got) > 1 || got[p.end] == 0:
			misplaced++
			example("%s (%s runner, %s, %s) ended in %v: want %s only", id, p.runner, p.typ, p.fate, got, p.end)
		case p.end == endEffects:
			// Not idempotent: judged below from effects.inc.
		case got[p.end] > 1 && !(p.end == endDLQ && p.sends > 1):
			// The logs are appended to under a lock and only when the id
			// is absent: two lines are two effects. Two dead-letter
			// copies are allowed only for a message published twice.
			doubled++
			example("%s (%s runner, %s, %s) is %d times in %s", id, p.runner, p.typ, p.fate, got[p.end], p.end)
		}
		if len(incs[id]) > 1 {
			spread++
		}
		// Within one process a step runs at most as often as its retry
		// policy allows; more means the journal let a message run twice.
		limit := map[string]int{fateOK: 1, fateFlaky: 2, fateFail: 3}[p.fate]
		for inc := range incs[id] {
			if n := attempts[attemptKey{id, endEffects, inc}]; n > limit {
				fail("%s (%s): the effect step ran %d times in %s, more than its %d attempts", id, p.fate, n, inc, limit)
			}
			if n := attempts[attemptKey{id, endOnFailure, inc}]; n > 1 {
				fail("%s: on_failure ran %d times in %s", id, n, inc)
			}
		}
		// The steady runner is never killed: exactly the attempts its
		// retry policy makes.
		if p.runner == "steady" && p.fate != fateReject {
			inc := "steady-1"
			if n := attempts[attemptKey{id, endEffects, inc}]; n != limit {
				fail("%s (%s, steady runner): the effect step ran %d times, want %d", id, p.fate, n, limit)
			}
		}
		if p.fate == fateOK {
			total := 0
			for inc := range incs[id] {
				total += attempts[attemptKey{id, endEffects, inc}]
			}
			if total > 1 {
				reran++
			}
		}
	}
	// Effects per id, in order, with the incarnation that made each; and
	// the incarnations that logged the effect step recorded.
	recorded := map[string]map[string]bool{}
	logs, _ := filepath.Glob(filepath.Join(s.dir, "runner-*.log"))
	for _, path := range logs {
		inc := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), "runner-"), ".log")
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if _, rest, ok := strings.Cut(line, "soak effect recorded "); ok {
				id := rest[:strings.IndexFunc(rest+" ", func(r rune) bool { return r == ' ' || r == '"' || r == '\\' })]
				if recorded[id] == nil {
					recorded[id] = map[string]bool{}
				}
				recorded[id][inc] = true
			}
		}
	}
	runs := map[string][]string{}
	b, err = os.ReadFile(filepath.Join(s.dir, endEffects+".inc"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			runs[f[0]] = append(runs[f[0]], f[1])
		}
	}
	dupRecorded, rerunUnrecorded := 0, 0
	for id, incs := range runs {
		seenRecorded := false
		for i, inc := range incs {
			if i > 0 {
				if seenRecorded {
					dupRecorded++
					example("%s: its effect ran again in %s after a run the journal had recorded (%v)", id, inc, incs)
				} else {
					rerunUnrecorded++
				}
			}
			if recorded[id][inc] {
				seenRecorded = true
			}
		}
	}
	if dupRecorded > 0 {
		fail("%d duplicate effects of steps the journal had recorded", dupRecorded)
	}
	if len(runs) > 0 && len(recorded) == 0 {
		fail("no runner logged an effect recorded: the count of duplicate effects of recorded steps would prove nothing")
	}
	if missing > 0 {
		fail("%d messages are nowhere (lost)", missing)
	}
	if misplaced > 0 {
		fail("%d messages ended in the wrong place or in two places", misplaced)
	}
	if doubled > 0 {
		fail("%d messages took effect more than once", doubled)
	}
	if len(where) > 0 {
		n := 0
		for id, got := range where {
			if n++; n <= 5 {
				example("unknown id %q in %v", id, got)
			}
		}
		fail("%d ids in the logs or the dead-letter queue were never published", len(where))
	}

	// Memory and goroutines of the steady runner: the median of the samples
	// in the last 15%% of the run against those of 20-35%% (after warm-up).
	var early, late struct{ rss, gor, heap []float64 }
	var crashFirst, crashLast []float64
	crashPeak := map[string]float64{}
	var crashOrder []string
	for _, sm := range s.samples {
		frac := float64(sm.at) / float64(s.cfg.duration)
		if sm.runner == "steady" {
			switch {
			case frac >= 0.20 && frac < 0.35:
				early.rss, early.gor, early.heap = append(early.rss, sm.rss), append(early.gor, sm.goroutines), append(early.heap, sm.heap)
			case frac >= 0.85:
				late.rss, late.gor, late.heap = append(late.rss, sm.rss), append(late.gor, sm.goroutines), append(late.heap, sm.heap)
			}
			continue
		}
		if _, ok := crashPeak[sm.inc]; !ok {
			crashOrder = append(crashOrder, sm.inc)
		}
		crashPeak[sm.inc] = max(crashPeak[sm.inc], sm.rss)
	}
	for i, inc := range crashOrder {
		if i < 3 {
			crashFirst = append(crashFirst, crashPeak[inc])
		}
		if i >= len(crashOrder)-3 {
			crashLast = append(crashLast, crashPeak[inc])
		}
	}
	er, lr := median(early.rss), median(late.rss)
	eg, lg := median(early.gor), median(late.gor)
	eh, lh := median(early.heap), median(late.heap)
	if len(early.rss) == 0 || len(late.rss) == 0 {
		fail("too few samples of the steady runner to compare (early %d, late %d)", len(early.rss), len(late.rss))
	} else {
		// Tolerances: RSS may settle up to 25% + 8 MiB higher (the heap
		// grows to its working size, the GC paces at 100%); goroutines by
		// up to 25% + 10 (plans and connections in flight vary).
		if lr > er*1.25+8*mib {
			fail("steady runner RSS grew: %.1f MiB early, %.1f MiB late", er/mib, lr/mib)
		}
		if lg > eg*1.25+10 {
			fail("steady runner goroutines grew: %.0f early, %.0f late", eg, lg)
		}
	}
	// At rest, connected, before and after: the same goroutines.
	if idleAfter > idleBefore+2 {
		fail("steady runner at rest: %.0f goroutines before the run, %.0f after it", idleBefore, idleAfter)
	}
	if len(crashFirst) > 0 && median(crashLast) > median(crashFirst)*1.25+8*mib {
		fail("crash runner peak RSS per incarnation grew: %.1f MiB (first) → %.1f MiB (last)", median(crashFirst)/mib, median(crashLast)/mib)
	}

	// What the runners said they did, from their logs.
	said := map[string]int{}
	for _, path := range logs {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			for _, m := range []string{"plan resumed after its completed steps", "duplicate message skipped",
				"dead-lettering it again", "settling message failed", "disconnected from broker", "panic",
				"journal write failed", "copy of a message in flight parked"} {
				if strings.Contains(line, m) {
					said[m]++
				}
			}
		}
	}
	if said["panic"] > 0 {
		fail("%d log lines mention a panic", said["panic"])
	}
	if said["journal write failed"] > 0 {
		fail("%d journal write failures: the recorded-effect count cannot be trusted", said["journal write failed"])
	}

	toggleSummary := s.verifyToggles(fail, example)

	total := len(s.order)
	kinds := func(m map[string]int, keys []string) string {
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
		}
		return strings.Join(parts, ", ")
	}
	fmt.Printf("\n== eventfn soak summary (%s, seed %d)\n", s.cfg.duration, s.cfg.seed)
	fmt.Printf("published       %d messages (%.1f/s); %d sent twice after a broken publish connection\n",
		total, float64(total)/s.cfg.duration.Seconds(), resent)
	fmt.Printf("  by type       %s\n", kinds(byType, allTypes))
	fmt.Printf("  by fate       %s\n", kinds(byFate, []string{fateOK, fateFlaky, fateFail, fateReject}))
	fmt.Printf("expected        %s\n", kinds(byEnd, []string{endEffects, endOnFailure, endDLQ}))
	fmt.Printf("found           %s; dead-letter reasons %v\n", kinds(found, []string{endEffects, endOnFailure, endDLQ}), dlqReasons)
	fmt.Printf("exactly once    %d missing, %d misplaced, %d more than once\n", missing, misplaced, doubled)
	fmt.Printf("resumptions     %d messages were handled by more than one crash-runner process; for %d of them the effect step ran again\n",
		spread, reran)
	fmt.Printf("effects         not idempotent: %d of %d ids logged recorded; %d duplicate effects of steps the journal had recorded; %d re-runs of effects it had not recorded yet\n"+
		"                (a SIGKILL between the effect and the journal's record of it)\n", len(recorded), len(runs), dupRecorded, rerunUnrecorded)
	fmt.Printf("runners logged  %d plans resumed after their completed steps, %d duplicates skipped, %d copies parked behind their in-flight original,\n"+
		"                %d dead-lettered messages back and dead-lettered again, %d settlements on a connection already gone (redelivered), %d disconnections\n",
		said["plan resumed after its completed steps"], said["duplicate message skipped"], said["copy of a message in flight parked"],
		said["dead-lettering it again"], said["settling message failed"], said["disconnected from broker"])
	fmt.Printf("toggles         %s\n", toggleSummary)
	fmt.Printf("chaos           %d connection closes (%d failed), %d SIGKILLs (%d crash-runner processes), %d webhook stalls (%d requests held)\n",
		s.closes.Load(), s.closeErrs.Load(), s.kills.Load(), s.kills.Load()+1, s.hook.stalls(s.cfg.duration), s.hook.stalledReqs.Load())
	fmt.Printf("drain           %s after publishing stopped; deepest work queue during the run: %d (x-max-length 10000)\n",
		drained.Round(time.Second), s.maxBacklog)
	fmt.Printf("steady runner   RSS %.1f → %.1f MiB, heap in use %.1f → %.1f MiB, goroutines %.0f → %.0f (early → late); at rest %.0f → %.0f; %.0f reconnections\n",
		er/mib, lr/mib, eh/mib, lh/mib, eg, lg, idleBefore, idleAfter, s.steadyReconnects)
	fmt.Printf("crash runner    peak RSS per process %.1f MiB (first 3) → %.1f MiB (last 3)\n", median(crashFirst)/mib, median(crashLast)/mib)
	for _, e := range examples {
		fmt.Printf("  e.g. %s\n", e)
	}
	if len(violations) == 0 {
		fmt.Printf("result          PASS\n")
		return
	}
	fmt.Printf("result          FAIL\n")
	for _, v := range violations {
		t.Error(v)
	}
}
