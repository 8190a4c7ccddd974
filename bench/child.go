package bench

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eventfn/eventfn/internal/creds"
)

// Roles of consumer processes.
const (
	// RoleEventfn runs eventfn's pipeline: the real source built from its
	// settings, the runner, the rules and the actions.
	RoleEventfn = "eventfn"
	// RoleBare runs the baseline: a bare go-stomp (or paho) consumer on the
	// same transport, ack mode and prefetch, acknowledging each message as
	// it arrives.
	RoleBare = "bare"
	// RolePeer runs a consumer like the Python site agent's listener
	// (bench/peer/agent_listener.py: stomp.py, ack auto, json.loads for the
	// log line and again in the handler), with Debian's python3.
	RolePeer = "agent-py"
)

// ChildEnv is the environment variable through which a benchmark hands a
// consumer process its job, as JSON. PasscodeEnv holds the broker
// passcode: neither appears on a command line.
const (
	ChildEnv    = "EVENTFN_BENCH_CHILD"
	PasscodeEnv = "EVENTFN_BENCH_PASSCODE"
)

// connInfo says how to reach the broker.
type connInfo struct {
	url, vhost, login, passcode string
	tls                         creds.TLSSpec
}

// tlsHost returns the host TLS verifies for a broker URL.
func (c connInfo) tlsHost() string {
	u, err := url.Parse(c.url)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// tlsConfig is the client TLS configuration for TLS schemes.
func (c connInfo) tlsConfig() (*tls.Config, error) { return creds.TLS(c.tls, c.tlsHost()) }

// job is what a consumer process is told to do.
type job struct {
	Role        string        `json:"role"`
	URL         string        `json:"url"`
	VHost       string        `json:"vhost,omitempty"`
	Login       string        `json:"login,omitempty"`
	TLS         creds.TLSSpec `json:"tls"`
	Destination string        `json:"destination"`         // STOMP destination or MQTT topic filter
	ClientID    string        `json:"client_id,omitempty"` // MQTT session
	Prefetch    int           `json:"prefetch,omitempty"`
	Concurrency int           `json:"concurrency,omitempty"`
	// Count is the number of messages to settle before stopping.
	Count   int           `json:"count"`
	Timeout time.Duration `json:"timeout"`
	// Rules is the rules file ("" = the embedded one).
	Rules       string        `json:"rules,omitempty"`
	StateDir    string        `json:"state_dir,omitempty"`
	ActionDelay time.Duration `json:"action_delay,omitempty"`
	LogFile     string        `json:"log_file,omitempty"`
	// CPUProfile is where to write a CPU profile of the run (from ready to
	// the end).
	CPUProfile string `json:"cpu_profile,omitempty"`
	// Latency turns on the latency hooks (rate mode). A drain reports no
	// latency (it would be the time spent queued), so neither consumer
	// pays for the hooks there.
	Latency bool `json:"latency,omitempty"`
}

func (j job) conn(passcode string) connInfo {
	return connInfo{url: j.URL, vhost: j.VHost, login: j.Login, passcode: passcode, tls: j.TLS}
}

// readyLine is written once the consumer is connected and subscribed.
type readyLine struct {
	UnixNS int64 `json:"unix_ns"`
	RSS    int64 `json:"rss_bytes"`
}

// result is what a consumer process reports at the end.
type result struct {
	Role    string `json:"role"`
	Settled int    `json:"settled"`
	// SettleErrors counts settlements that failed or were not acks.
	SettleErrors int `json:"settle_errors"`
	// Seconds runs from the receipt of the first message to the settling
	// of the last; CPUSeconds is the process's CPU time in that window.
	Seconds    float64 `json:"seconds"`
	CPUSeconds float64 `json:"cpu_seconds"`
	RSSReady   int64   `json:"rss_ready_bytes"`
	RSSEnd     int64   `json:"rss_end_bytes"`
	RSSPeak    int64   `json:"rss_peak_bytes"`
	// Mallocs and AllocBytes are the Go heap allocations (count, bytes;
	// runtime.MemStats) in the same window.
	Mallocs    uint64 `json:"mallocs,omitempty"`
	AllocBytes uint64 `json:"alloc_bytes,omitempty"`
	// Writes counts the write system calls (/proc/self/io syscw: the
	// ACKs' writes, coalesced or not, and the log's) and GCCycles the
	// garbage collections in the same window.
	Writes   uint64   `json:"writes,omitempty"`
	GCCycles uint32   `json:"gc_cycles,omitempty"`
	Latency  *Latency `json:"latency,omitempty"`
	// eventfn only: plans by outcome, and messages that ran no plan.
	Plans      map[string]int `json:"plans,omitempty"`
	Unmatched  int            `json:"unmatched,omitempty"`
	Rejected   int            `json:"rejected,omitempty"`
	Duplicates int            `json:"duplicates,omitempty"`
	RuleErrors int            `json:"rule_errors,omitempty"`
	Rules      int            `json:"rules,omitempty"`
	Error      string         `json:"error,omitempty"`
}

// childLine is one line a consumer process writes to stdout.
type childLine struct {
	Ready  *readyLine `json:"ready,omitempty"`
	Result *result    `json:"result,omitempty"`
}

// meter counts what a consumer does: the first receipt, the settlements
// up to the expected count, the latencies.
type meter struct {
	want     int64
	settled  atomic.Int64
	errors   atomic.Int64
	first    atomic.Int64 // unix ns of the first receipt
	firstCPU atomic.Int64
	last     time.Time // set before done is closed
	lastCPU  time.Duration
	// Go heap counters at the first receipt and at the last settlement.
	firstMem, lastMem runtime.MemStats
	// Write system calls at the first receipt and at the last settlement.
	firstWrites, lastWrites uint64
	memMu                   sync.Mutex
	lat                     histogram
	done                    chan struct{}
	once                    sync.Once
}

func newMeter(want int) *meter { return &meter{want: int64(want), done: make(chan struct{})} }

// received notes a message's receipt.
func (m *meter) received(at time.Time) {
	if m.first.Load() == 0 && m.first.CompareAndSwap(0, at.UnixNano()) {
		m.firstCPU.Store(int64(cpuTime()))
		m.memMu.Lock()
		m.firstWrites = writeCalls()
		runtime.ReadMemStats(&m.firstMem) // once per run: its stop-the-world is negligible
		m.memMu.Unlock()
	}
}

// settle counts one settlement.
func (m *meter) settle(ok bool) {
	if !ok {
		m.errors.Add(1)
	}
	if m.settled.Add(1) == m.want {
		m.once.Do(func() {
			m.last, m.lastCPU = time.Now(), cpuTime()
			m.memMu.Lock()
			m.lastWrites = writeCalls()
			runtime.ReadMemStats(&m.lastMem)
			m.memMu.Unlock()
			close(m.done)
		})
	}
}

// fill puts the meter's figures into r.
func (m *meter) fill(r *result) {
	r.Settled = int(m.settled.Load())
	r.SettleErrors = int(m.errors.Load())
	select {
	case <-m.done:
		if f := m.first.Load(); f != 0 {
			r.Seconds = m.last.Sub(time.Unix(0, f)).Seconds()
			r.CPUSeconds = (m.lastCPU - time.Duration(m.firstCPU.Load())).Seconds()
			m.memMu.Lock()
			r.Mallocs = m.lastMem.Mallocs - m.firstMem.Mallocs
			r.AllocBytes = m.lastMem.TotalAlloc - m.firstMem.TotalAlloc
			r.GCCycles = m.lastMem.NumGC - m.firstMem.NumGC
			if m.firstWrites > 0 {
				r.Writes = m.lastWrites - m.firstWrites
			}
			m.memMu.Unlock()
		}
	default:
	}
	r.Latency = m.lat.summary()
	r.RSSEnd, r.RSSPeak = memory()
}

// RunChild is a consumer process of a benchmark: it reads its job from
// spec (ChildEnv's value) and the passcode from PasscodeEnv, announces on
// stdout when it is connected and subscribed, consumes until it has
// settled the job's count of messages, and writes its result. It stops
// early when stdin reaches end of file (the benchmark went away) or ctx
// ends. It returns the process's exit code.
func RunChild(ctx context.Context, spec string, stdin io.Reader, stdout, stderr io.Writer) int {
	var j job
	if err := json.Unmarshal([]byte(spec), &j); err != nil {
		fmt.Fprintf(stderr, "eventfn bench: bad %s: %v\n", ChildEnv, err)
		return 2
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if stdin != nil {
		go func() {
			_, _ = io.Copy(io.Discard, stdin)
			cancel()
		}()
	}
	if j.Timeout > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeoutCause(ctx, j.Timeout, fmt.Errorf("timed out after %s", j.Timeout))
		defer stop()
	}
	enc := json.NewEncoder(stdout)
	var mu sync.Mutex
	emit := func(l childLine) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(l)
	}
	var rssReady atomic.Int64
	ready := func() {
		rss, _ := memory()
		rssReady.Store(rss)
		emit(childLine{Ready: &readyLine{UnixNS: time.Now().UnixNano(), RSS: rss}})
	}
	if j.CPUProfile != "" {
		stop, err := startProfile(j.CPUProfile)
		if err != nil {
			fmt.Fprintf(stderr, "eventfn bench: cpu profile: %v\n", err)
			return 1
		}
		defer stop()
	}
	m := newMeter(j.Count)
	res := &result{Role: j.Role}
	var err error
	switch j.Role {
	case RoleEventfn:
		err = runEventfn(ctx, j, os.Getenv(PasscodeEnv), m, ready, res, stderr)
	case RoleBare:
		err = runBare(ctx, j, os.Getenv(PasscodeEnv), m, ready)
	default:
		err = fmt.Errorf("unknown role %q", j.Role)
	}
	m.fill(res)
	res.RSSReady = rssReady.Load()
	if err == nil && res.Settled < j.Count {
		err = fmt.Errorf("stopped after %d of %d messages", res.Settled, j.Count)
	}
	if err != nil {
		if c := context.Cause(ctx); c != nil && !errors.Is(err, c) && ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", err, c)
		}
		res.Error = err.Error()
	}
	emit(childLine{Result: res})
	if err != nil {
		return 1
	}
	return 0
}

// waitDone waits until the meter has its count, ctx ends, or failed
// reports a failure of the consumer.
func waitDone(ctx context.Context, m *meter, failed <-chan error) error {
	select {
	case <-m.done:
		return nil
	case err := <-failed:
		if err == nil {
			err = errors.New("consumer stopped")
		}
		return err
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// startProfile writes a CPU profile to path until the returned func runs.
func startProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// writeCalls returns the write system calls the process has made
// (/proc/self/io's syscw), 0 where that is not known.
func writeCalls() uint64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "syscw: "); ok {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}
