// Package bench measures eventfn against a broker: `eventfn bench`.
//
// A benchmark publishes Waldur-shaped order events (Waldur's headers and
// x-message-id, each event its own order_uuid) to a queue made for it,
// and runs two consumers on identically filled queues, one after the
// other, each in a process of its own:
//
//   - eventfn: the real pipeline, as `eventfn run` builds it (the source
//     built from its settings by the source registry, the runner with
//     its dispatcher, journal, metrics and per-message log line, the rules,
//     the standard actions);
//   - bare: the baseline, a bare go-stomp (STOMP) or paho (MQTT) consumer
//     with the same transport, ack mode (client-individual; MQTT QoS 1 with
//     manual acks), prefetch and heart-beats, acknowledging each message as
//     it arrives, running no rules.
//
// Each consumer runs in its own process (the benchmark re-executes itself,
// see Options.Command), so its CPU time (getrusage) and peak RSS (VmHWM)
// are its own and not the publisher's. Because the machine may be shared,
// only figures from one invocation are compared: eventfn's throughput is
// reported as a ratio of the bare consumer's.
//
// Two modes:
//
//   - drain (Count): the queue is filled with Count messages first, then the
//     consumer drains it; throughput is Count over the time from the first
//     message's receipt to the last one's settlement.
//   - rate (Rate, Duration): the consumer starts first; messages are then
//     published at Rate per second for Duration. Latency is measured from
//     the publish time (the x-eventfn-published-at header, and the same
//     instant in the payload for MQTT, which has no headers) to the start
//     of the first action of the message (for the bare consumer: its
//     receipt).
//
// The measurement hooks use eventfn's own extension points and are
// described in pipeline.go.
package bench

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/eventfn/eventfn/config"
	"github.com/eventfn/eventfn/internal/creds"
	"github.com/eventfn/eventfn/publish"
	"github.com/eventfn/eventfn/runner/stomp"
)

// Options configure a benchmark.
type Options struct {
	// URL is the broker the consumers read from (stomp://, stomp+ws://,
	// stomp+ssl://, stomp+wss://, mqtt://, mqtt+ws://, mqtts://,
	// mqtt+wss://).
	URL string
	// PublishURL is where the load is published (default URL).
	PublishURL string
	// Login and Passcode authenticate to the broker and, with the same
	// credentials, to the management API.
	Login, Passcode string
	// TLS configures TLS schemes.
	TLS creds.TLSSpec
	// Management is RabbitMQ's management API (e.g. http://127.0.0.1:15672).
	// The benchmark then works in a virtual host of its own, deleted at the
	// end, with a Waldur-style queue per consumer run. Empty: no
	// provisioning; VHost is used, STOMP queues are declared by the broker
	// (/queue/...) and left behind.
	Management string
	VHost      string
	// Rules is the rules file eventfn runs ("" = EmbeddedRules).
	Rules string
	// Count selects drain mode: pre-fill and drain this many messages.
	Count int
	// Rate and Duration select rate mode: Rate messages per second for
	// Duration.
	Rate     float64
	Duration time.Duration
	// Prefetch is the STOMP prefetch-count (0: the source's default, 100).
	// MQTT's is the broker's (RabbitMQ mqtt.prefetch).
	Prefetch int
	// Concurrency is the runner's (0: the rules file's runner.concurrency,
	// else 8).
	Concurrency int
	// PayloadBytes, when > 0, grows each order's payload to about this
	// many bytes (an attributes object of 64-byte fields).
	PayloadBytes int
	// ActionDelay makes every action take this long (a simulated I/O-bound
	// action), to show how throughput scales with Concurrency.
	ActionDelay time.Duration
	// StateDir selects the durable journal there; empty: in memory,
	// as `eventfn run` without runner.state_dir.
	StateDir string
	// Baseline runs the bare consumer too.
	Baseline bool
	// Peer runs the Python site agent-like consumer too (STOMP only; needs
	// Debian's python3-stomp and python3-websocket); PeerAck is its ack
	// mode: auto (the agent's, the default) or client-individual.
	Peer    bool
	PeerAck string
	// Rounds repeats each consumer's run (alternating which goes first);
	// summaries are medians.
	Rounds int
	// Timeout bounds each consumer run (default 2 minutes plus Duration).
	Timeout time.Duration
	// LogFile receives eventfn's log (default: formatted, then dropped).
	LogFile string
	// CPUProfile, if set, is where eventfn's consumer process writes a CPU
	// profile (the last run's); the bare consumer's goes to CPUProfile
	// with ".bare" added, so that the two can be compared.
	CPUProfile string
	// Command starts a consumer process; the benchmark adds ChildEnv and
	// PasscodeEnv to its environment. `eventfn bench` passes its own
	// executable with "bench --role child".
	Command []string
	// Logger receives progress (default: none).
	Logger *slog.Logger
	// ChildStderr, if set, receives the consumers' stderr as it comes; it
	// is kept and shown on failure in any case.
	ChildStderr io.Writer
}

// ConsumerRun is one consumer run.
type ConsumerRun struct {
	Role  string `json:"role"`
	Round int    `json:"round"`
	// Messages settled; Seconds from the first receipt to the last
	// settlement; Throughput = Messages / Seconds.
	Messages   int     `json:"messages"`
	Seconds    float64 `json:"seconds"`
	Throughput float64 `json:"throughput"`
	// CPU time of the consumer process in that window.
	CPUSeconds  float64 `json:"cpu_seconds"`
	CPUPerMsgUS float64 `json:"cpu_per_message_us"`
	// Go heap allocations per message in that window (count and bytes,
	// from runtime.MemStats in the consumer process; 0 for the Python
	// peer).
	AllocsPerMsg     float64 `json:"allocs_per_message,omitempty"`
	AllocBytesPerMsg float64 `json:"alloc_bytes_per_message,omitempty"`
	// Write system calls per message (the ACKs', however many a write
	// carries) and garbage collections per 1,000 messages in that window
	// (0 for the Python peer).
	WritesPerMsg float64 `json:"writes_per_message,omitempty"`
	GCsPer1000   float64 `json:"gcs_per_1000_messages,omitempty"`
	// Resident set size when connected and subscribed, at the end, and at
	// its peak (VmHWM: the process's lifetime).
	RSSReadyMiB float64 `json:"rss_ready_mib"`
	RSSEndMiB   float64 `json:"rss_end_mib"`
	RSSPeakMiB  float64 `json:"rss_peak_mib"`
	// StartupMS is from starting the process to connected and subscribed
	// (eventfn: runner ready).
	StartupMS float64  `json:"startup_ms"`
	Latency   *Latency `json:"latency,omitempty"`
	// The publisher's figures for this run.
	Published       int     `json:"published"`
	PublishRate     float64 `json:"publish_rate"`
	PublishBehindMS float64 `json:"publish_behind_ms,omitempty"`
	// eventfn's counters.
	Plans        map[string]int `json:"plans,omitempty"`
	Unmatched    int            `json:"unmatched,omitempty"`
	Rejected     int            `json:"rejected,omitempty"`
	Duplicates   int            `json:"duplicates,omitempty"`
	RuleErrors   int            `json:"rule_errors,omitempty"`
	SettleErrors int            `json:"settle_errors,omitempty"`
}

// Summary is the median of a role's runs (the peak RSS: the largest),
// with the smallest and largest throughput and CPU per message.
type Summary struct {
	Runs             int      `json:"runs"`
	Throughput       float64  `json:"throughput"`
	ThroughputMin    float64  `json:"throughput_min"`
	ThroughputMax    float64  `json:"throughput_max"`
	CPUPerMsgUS      float64  `json:"cpu_per_message_us"`
	CPUPerMsgUSMin   float64  `json:"cpu_per_message_us_min"`
	CPUPerMsgUSMax   float64  `json:"cpu_per_message_us_max"`
	AllocsPerMsg     float64  `json:"allocs_per_message,omitempty"`
	AllocBytesPerMsg float64  `json:"alloc_bytes_per_message,omitempty"`
	WritesPerMsg     float64  `json:"writes_per_message,omitempty"`
	GCsPer1000       float64  `json:"gcs_per_1000_messages,omitempty"`
	RSSReadyMiB      float64  `json:"rss_ready_mib"`
	RSSPeakMiB       float64  `json:"rss_peak_mib"`
	StartupMS        float64  `json:"startup_ms"`
	Latency          *Latency `json:"latency,omitempty"`
}

// Report is what a benchmark found.
type Report struct {
	Mode        string  `json:"mode"` // drain or rate
	URL         string  `json:"url"`
	Transport   string  `json:"transport"`
	Count       int     `json:"count"`
	Rate        float64 `json:"rate,omitempty"`
	DurationS   float64 `json:"duration_s,omitempty"`
	Prefetch    string  `json:"prefetch"`
	Concurrency int     `json:"concurrency"`
	Rules       string  `json:"rules"`
	RuleCount   int     `json:"rule_count"`
	Journal     string  `json:"journal"`
	ActionDelay string  `json:"action_delay,omitempty"`
	// PayloadBytes is the size of each message's payload.
	PayloadBytes int     `json:"payload_bytes"`
	Machine      Machine `json:"machine"`
	// LoadStart and LoadEnd are the machine's 1-minute load average when
	// the benchmark started and ended: other work on a shared machine.
	LoadStart float64       `json:"load_start"`
	LoadEnd   float64       `json:"load_end"`
	Runs      []ConsumerRun `json:"runs"`
	Eventfn   *Summary      `json:"eventfn,omitempty"`
	Bare      *Summary      `json:"bare,omitempty"`
	// Ratio is eventfn's median throughput over the bare consumer's (drain
	// mode).
	Ratio float64 `json:"ratio,omitempty"`
	// Peer is the Python agent-like consumer's summary (--peer).
	Peer *Summary `json:"peer,omitempty"`
	// CPURatioPerRound is eventfn's CPU per message over the bare
	// consumer's, round by round (round i of each: neighbours in the
	// alternating order), median and range: a machine that slows down or
	// speeds up during the benchmark moves both rounds of a pair alike.
	CPURatioPerRound *Spread `json:"cpu_ratio_per_round,omitempty"`
}

// Spread is a median with its range.
type Spread struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// driver runs one benchmark.
type driver struct {
	o      Options
	family string
	conn   connInfo
	pub    connInfo
	mg     *management
	log    *slog.Logger
}

// Run runs the benchmark o describes.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Rounds <= 0 {
		o.Rounds = 1
	}
	if o.PublishURL == "" {
		o.PublishURL = o.URL
	}
	switch {
	case len(o.Command) == 0:
		return nil, errors.New("no command to start consumer processes")
	case o.Rate < 0 || o.Count < 0 || o.Duration < 0:
		return nil, errors.New("count, rate and duration must not be negative")
	case o.Rate > 0 && o.Duration <= 0:
		return nil, errors.New("a rate needs a duration")
	case o.Rate == 0 && o.Count == 0:
		return nil, errors.New("give a count (drain mode) or a rate and a duration (rate mode)")
	}
	family, err := familyOf(o.URL)
	if err != nil {
		return nil, err
	}
	if pf, err := familyOf(o.PublishURL); err != nil || pf != family {
		return nil, fmt.Errorf("the publish URL must use the consumers' protocol (%s)", family)
	}
	if family == familyMQTT && o.Prefetch != 0 {
		return nil, errors.New("MQTT's prefetch is the broker's (RabbitMQ mqtt.prefetch, default 10), not the client's")
	}
	cfg, err := loadRules(o.Rules)
	if err != nil {
		return nil, err
	}
	if o.Timeout <= 0 {
		o.Timeout = 2*time.Minute + o.Duration
	}
	d := &driver{o: o, family: family, log: o.Logger,
		conn: connInfo{url: o.URL, vhost: o.VHost, login: o.Login, passcode: o.Passcode, tls: o.TLS},
		pub:  connInfo{url: o.PublishURL, vhost: o.VHost, login: o.Login, passcode: o.Passcode, tls: o.TLS}}
	rep := d.newReport(cfg)
	if o.Management != "" {
		d.mg = newManagement(o.Management, o.Login, o.Passcode)
		if rep.Machine.Broker, err = d.mg.version(ctx); err != nil {
			return nil, fmt.Errorf("%w (give --management '' for a broker without it)", err)
		}
		vhost := "eventfn-bench-" + randomHex(6)
		if err := d.mg.createVHost(ctx, vhost, o.Login); err != nil {
			return nil, fmt.Errorf("%w", err)
		}
		defer func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if err := d.mg.deleteVHost(cctx, vhost); err != nil {
				d.log.Warn("could not delete the benchmark's virtual host", "vhost", vhost, "error", err)
			}
		}()
		d.conn.vhost, d.pub.vhost = vhost, vhost
	}
	roles := []string{RoleEventfn}
	if o.Baseline {
		roles = []string{RoleBare, RoleEventfn}
	}
	if o.Peer {
		if d.family != familySTOMP {
			return rep, fmt.Errorf("--peer: the Python consumer speaks STOMP only, not %s", d.family)
		}
		roles = append(roles, RolePeer)
	}
	for round := 1; round <= o.Rounds; round++ {
		order := slices.Clone(roles)
		if round%2 == 0 {
			slices.Reverse(order)
		}
		for _, role := range order {
			run, err := d.runOne(ctx, role, round)
			if err != nil {
				return rep, fmt.Errorf("%s consumer, round %d: %w", role, round, err)
			}
			rep.Runs = append(rep.Runs, run)
		}
	}
	rep.summarize()
	rep.LoadEnd = loadAverage()
	return rep, nil
}

func (d *driver) newReport(cfg *config.Config) *Report {
	o := d.o
	rep := &Report{Mode: "drain", URL: o.URL, Count: o.Count, Machine: machine(), RuleCount: len(cfg.Rules.Rules),
		Rules: o.Rules, Journal: "memory", Concurrency: o.Concurrency, LoadStart: loadAverage()}
	rep.Transport, _, _ = strings.Cut(o.URL, "://")
	rep.PayloadBytes = len(newGenerator(benchOffering).withPad(o.PayloadBytes).body(0, time.Now()))
	if o.Rate > 0 {
		rep.Mode, rep.Rate, rep.DurationS, rep.Count = "rate", o.Rate, o.Duration.Seconds(), d.count()
	}
	if rep.Rules == "" {
		rep.Rules = embeddedName
	}
	if o.StateDir != "" {
		rep.Journal = "durable in " + o.StateDir
	}
	if rep.Concurrency <= 0 {
		rep.Concurrency = cfg.Runner.Concurrency
	}
	if rep.Concurrency <= 0 {
		rep.Concurrency = 8 // the runner's default
	}
	switch {
	case d.family == familyMQTT:
		rep.Prefetch = "broker's"
	case o.Prefetch > 0:
		rep.Prefetch = fmt.Sprint(o.Prefetch)
	default:
		rep.Prefetch = fmt.Sprint(stomp.DefaultPrefetch)
	}
	if o.ActionDelay > 0 {
		rep.ActionDelay = o.ActionDelay.String()
	}
	return rep
}

// count is the number of messages of each consumer run.
func (d *driver) count() int {
	if d.o.Rate > 0 {
		return max(1, int(d.o.Rate*d.o.Duration.Seconds()+0.5))
	}
	return d.o.Count
}

// runOne fills a fresh queue (drain) or starts the consumer first (rate),
// runs one consumer process and collects its figures.
func (d *driver) runOne(ctx context.Context, role string, round int) (ConsumerRun, error) {
	run := ConsumerRun{Role: role, Round: round}
	t := newTarget(d.family, d.mg != nil)
	if d.family == familySTOMP && d.mg != nil {
		if err := d.mg.declareQueue(ctx, d.conn.vhost, t.queue); err != nil {
			return run, err
		}
		defer func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			_ = d.mg.deleteQueue(cctx, d.conn.vhost, t.queue)
		}()
	}
	n := d.count()
	var st loadStats
	if d.o.Rate == 0 {
		if d.family == familyMQTT {
			if err := primeMQTT(ctx, d.conn, t); err != nil {
				return run, err
			}
		}
		var err error
		if st, err = d.send(ctx, t, n, 0); err != nil {
			return run, err
		}
		d.log.Info("queue filled", "role", role, "round", round, "messages", st.Sent,
			"seconds", st.Elapsed.Seconds(), "rate", rate(st.Sent, st.Elapsed))
	}
	j := job{Role: role, URL: d.o.URL, VHost: d.conn.vhost, Login: d.o.Login, TLS: d.o.TLS,
		Destination: t.dest, ClientID: t.clientID, Prefetch: d.o.Prefetch, Concurrency: d.o.Concurrency,
		Count: n, Timeout: d.o.Timeout, Rules: d.o.Rules, StateDir: d.o.StateDir,
		ActionDelay: d.o.ActionDelay, LogFile: d.o.LogFile, CPUProfile: profilePath(d.o.CPUProfile, role), Latency: d.o.Rate > 0}
	p, err := d.start(j)
	if err != nil {
		return run, err
	}
	defer p.stop()
	ready, err := p.waitReady(ctx)
	if err != nil {
		return run, err
	}
	run.StartupMS = ms(time.Unix(0, ready.UnixNS).Sub(p.started))
	if d.o.Rate > 0 {
		if st, err = d.send(ctx, t, n, d.o.Rate); err != nil {
			return run, err
		}
	}
	res, err := p.wait(ctx)
	if err != nil {
		return run, err
	}
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	run.Messages, run.Seconds, run.CPUSeconds = res.Settled, res.Seconds, res.CPUSeconds
	if res.Seconds > 0 {
		run.Throughput = float64(res.Settled) / res.Seconds
	}
	if res.Settled > 0 {
		run.CPUPerMsgUS = res.CPUSeconds / float64(res.Settled) * 1e6
		run.AllocsPerMsg = float64(res.Mallocs) / float64(res.Settled)
		run.AllocBytesPerMsg = float64(res.AllocBytes) / float64(res.Settled)
		run.WritesPerMsg = float64(res.Writes) / float64(res.Settled)
		run.GCsPer1000 = float64(res.GCCycles) / float64(res.Settled) * 1000
	}
	run.RSSReadyMiB, run.RSSEndMiB, run.RSSPeakMiB = mib(res.RSSReady), mib(res.RSSEnd), mib(res.RSSPeak)
	run.Latency = res.Latency
	run.Published, run.PublishRate, run.PublishBehindMS = st.Sent, rate(st.Sent, st.Elapsed), ms(st.Behind)
	run.Plans, run.Unmatched, run.Rejected, run.Duplicates = res.Plans, res.Unmatched, res.Rejected, res.Duplicates
	run.RuleErrors, run.SettleErrors = res.RuleErrors, res.SettleErrors
	d.log.Info("consumer done", "role", role, "round", round, "messages", run.Messages,
		"throughput", int(run.Throughput), "cpu_us_per_msg", int(run.CPUPerMsgUS), "rss_peak_mib", run.RSSPeakMiB)
	return run, nil
}

func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// send publishes n messages to t, confirmed by the broker every 100.
func (d *driver) send(ctx context.Context, t target, n int, perSecond float64) (loadStats, error) {
	p, err := publish.Dial(ctx, publish.Options{URL: d.pub.url, VHost: d.pub.vhost, Login: d.pub.login,
		Passcode: d.pub.passcode, CAFile: d.pub.tls.CAFile, CertFile: d.pub.tls.CertFile, KeyFile: d.pub.tls.KeyFile,
		ServerName: d.pub.tls.ServerName, InsecureSkipVerify: d.pub.tls.InsecureSkipVerify,
		ConfirmEvery: 100, Logger: d.log})
	if err != nil {
		return loadStats{}, err
	}
	vhost := d.pub.vhost
	if vhost == "" {
		vhost = "/"
	}
	return sendAll(ctx, p, newGenerator(benchOffering).withPad(d.o.PayloadBytes), vhost, t.dest, n, perSecond)
}

// proc is a consumer process.
type proc struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	lines   chan childLine
	stderr  *tail
	started time.Time
	exited  chan struct{}
	waitErr error
	timeout time.Duration
}

// profilePath is where role's consumer writes its CPU profile: path for
// eventfn, path.bare for the bare consumer, none for the peer (Python).
func profilePath(path, role string) string {
	switch {
	case path == "" || role == RoleEventfn:
		return path
	case role == RoleBare:
		return path + ".bare"
	}
	return ""
}

func (d *driver) start(j job) (*proc, error) {
	spec, err := json.Marshal(j)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(d.o.Command[0], d.o.Command[1:]...)
	if j.Role == RolePeer {
		cmd = exec.Command(peerPython, "-c", peerScript)
		cmd.Env = append(cmd.Environ(), "EVENTFN_BENCH_PEER_ACK="+cmp.Or(d.o.PeerAck, "auto"))
	}
	cmd.Env = append(cmd.Environ(), ChildEnv+"="+string(spec), PasscodeEnv+"="+d.o.Passcode)
	p := &proc{cmd: cmd, lines: make(chan childLine, 4), stderr: &tail{max: 32 << 10},
		exited: make(chan struct{}), timeout: j.Timeout + 30*time.Second}
	if d.o.ChildStderr != nil {
		cmd.Stderr = io.MultiWriter(p.stderr, d.o.ChildStderr)
	} else {
		cmd.Stderr = p.stderr
	}
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", d.o.Command[0], err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var l childLine
			if json.Unmarshal(sc.Bytes(), &l) == nil && (l.Ready != nil || l.Result != nil) {
				p.lines <- l
			} else {
				_, _ = fmt.Fprintf(p.stderr, "stdout: %s\n", sc.Bytes())
			}
		}
		_, _ = io.Copy(io.Discard, out)
		p.waitErr = cmd.Wait()
		close(p.lines)
		close(p.exited)
	}()
	return p, nil
}

// failed describes a consumer that ended without a result.
func (p *proc) failed(what string) error {
	<-p.exited
	return fmt.Errorf("consumer %s (%v); its stderr:\n%s", what, p.waitErr, p.stderr.String())
}

func (p *proc) waitReady(ctx context.Context) (*readyLine, error) {
	t := time.NewTimer(2 * time.Minute)
	defer t.Stop()
	select {
	case l, ok := <-p.lines:
		switch {
		case !ok:
			return nil, p.failed("exited before it was ready")
		case l.Result != nil:
			return nil, fmt.Errorf("consumer failed before it was ready: %s; its stderr:\n%s", l.Result.Error, p.stderr.String())
		}
		return l.Ready, nil
	case <-t.C:
		return nil, errors.New("consumer not ready after 2 minutes")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *proc) wait(ctx context.Context) (*result, error) {
	t := time.NewTimer(p.timeout)
	defer t.Stop()
	for {
		select {
		case l, ok := <-p.lines:
			switch {
			case !ok:
				return nil, p.failed("exited without a result")
			case l.Result == nil:
				continue
			case l.Result.Error != "":
				return l.Result, fmt.Errorf("consumer: %s; its stderr:\n%s", l.Result.Error, p.stderr.String())
			}
			return l.Result, nil
		case <-t.C:
			return nil, fmt.Errorf("consumer gave no result within %s", p.timeout)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// stop asks the consumer to stop (end of its stdin) and kills it if it
// has not exited 15 seconds later.
func (p *proc) stop() {
	_ = p.stdin.Close()
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.b))
}

// summarize computes each role's medians and the throughput ratio.
func (r *Report) summarize() {
	for _, role := range []string{RoleEventfn, RoleBare, RolePeer} {
		var runs []ConsumerRun
		for _, run := range r.Runs {
			if run.Role == role {
				runs = append(runs, run)
			}
		}
		if len(runs) == 0 {
			continue
		}
		med := func(f func(ConsumerRun) float64) float64 {
			v := make([]float64, len(runs))
			for i, run := range runs {
				v[i] = f(run)
			}
			return median(v)
		}
		s := &Summary{Runs: len(runs),
			Throughput:       med(func(r ConsumerRun) float64 { return r.Throughput }),
			CPUPerMsgUS:      med(func(r ConsumerRun) float64 { return r.CPUPerMsgUS }),
			AllocsPerMsg:     med(func(r ConsumerRun) float64 { return r.AllocsPerMsg }),
			AllocBytesPerMsg: med(func(r ConsumerRun) float64 { return r.AllocBytesPerMsg }),
			WritesPerMsg:     med(func(r ConsumerRun) float64 { return r.WritesPerMsg }),
			GCsPer1000:       med(func(r ConsumerRun) float64 { return r.GCsPer1000 }),
			RSSReadyMiB:      med(func(r ConsumerRun) float64 { return r.RSSReadyMiB }),
			StartupMS:        med(func(r ConsumerRun) float64 { return r.StartupMS }),
		}
		s.ThroughputMin, s.ThroughputMax = runs[0].Throughput, runs[0].Throughput
		s.CPUPerMsgUSMin, s.CPUPerMsgUSMax = runs[0].CPUPerMsgUS, runs[0].CPUPerMsgUS
		for _, run := range runs[1:] {
			s.ThroughputMin, s.ThroughputMax = min(s.ThroughputMin, run.Throughput), max(s.ThroughputMax, run.Throughput)
			s.CPUPerMsgUSMin, s.CPUPerMsgUSMax = min(s.CPUPerMsgUSMin, run.CPUPerMsgUS), max(s.CPUPerMsgUSMax, run.CPUPerMsgUS)
		}
		for _, run := range runs {
			s.RSSPeakMiB = max(s.RSSPeakMiB, run.RSSPeakMiB)
		}
		if runs[0].Latency != nil {
			lat := func(f func(*Latency) float64) float64 {
				return med(func(r ConsumerRun) float64 {
					if r.Latency == nil {
						return 0
					}
					return f(r.Latency)
				})
			}
			s.Latency = &Latency{Samples: runs[0].Latency.Samples,
				P50: lat(func(l *Latency) float64 { return l.P50 }), P90: lat(func(l *Latency) float64 { return l.P90 }),
				P99: lat(func(l *Latency) float64 { return l.P99 }), Max: lat(func(l *Latency) float64 { return l.Max })}
		}
		switch role {
		case RoleEventfn:
			r.Eventfn = s
		case RoleBare:
			r.Bare = s
		default:
			r.Peer = s
		}
	}
	if r.Mode == "drain" && r.Eventfn != nil && r.Bare != nil && r.Bare.Throughput > 0 {
		r.Ratio = r.Eventfn.Throughput / r.Bare.Throughput
	}
	r.CPURatioPerRound = pairedCPURatio(r.Runs)
}

// pairedCPURatio is eventfn's CPU per message over the bare consumer's in
// rounds of the same number, or nil when no round has both.
func pairedCPURatio(runs []ConsumerRun) *Spread {
	bare := map[int]float64{}
	for _, run := range runs {
		if run.Role == RoleBare && run.CPUPerMsgUS > 0 {
			bare[run.Round] = run.CPUPerMsgUS
		}
	}
	var ratios []float64
	for _, run := range runs {
		if b, ok := bare[run.Round]; ok && run.Role == RoleEventfn {
			ratios = append(ratios, run.CPUPerMsgUS/b)
		}
	}
	if len(ratios) == 0 {
		return nil
	}
	return &Spread{Median: median(ratios), Min: slices.Min(ratios), Max: slices.Max(ratios)}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// peerScript is the Python agent-like consumer (RolePeer), run with
// peerPython: Debian's interpreter, where python3-stomp is installed (a
// python3 earlier on PATH, e.g. pyenv's, lacks it).
//
//go:embed peer/agent_listener.py
var peerScript string

const peerPython = "/usr/bin/python3"
