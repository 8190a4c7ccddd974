package slurm

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eventfn/eventfn/internal/brokertest"
	"github.com/eventfn/eventfn/waldur"
)

// eventTypes are the queues a process site consumes: every type the
// example handles.
var eventTypes = []string{"order", "user_role", "resource", "offering_user", "service_account", "course_account",
	"importable_resources", "resource_periodic_limits", "offering_resources_sync"}

// binary builds cmd/eventfn once for the package's tests.
type binary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

var eventfnBinary binary // the package's one build, removed by TestMain

func TestMain(m *testing.M) {
	code := m.Run()
	if eventfnBinary.dir != "" {
		_ = os.RemoveAll(eventfnBinary.dir)
	}
	os.Exit(code)
}

func buildEventfn(t *testing.T) string {
	t.Helper()
	b := &eventfnBinary
	b.once.Do(func() {
		if b.dir, b.err = os.MkdirTemp("", "eventfn-slurm-bin-"); b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, "eventfn")
		if out, err := exec.Command("go", "build", "-o", b.path, "../../cmd/eventfn").CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// proc is `eventfn run` in its own process: the example's rules verbatim
// with the site's settings (vars) before them, consuming one Waldur queue
// per event type in a vhost of its own on the real RabbitMQ, writing to the
// real slurmdbd through the site's recording sacctmgr, calling the fake
// Waldur. Failed plans go to the vhost's waldur.dlq.messages with their
// reason in x-eventfn-error.
type proc struct {
	s      *site
	b      *brokertest.Broker
	vhost  string
	queues map[string]string // event type → queue
	listen string
	logs   *syncBuffer
}

// newProcessSite is newSite whose messages (deliver, mustSucceed) go
// over the broker to `eventfn run` in its own process.
func newProcessSite(t *testing.T, settings ...map[string]any) *site {
	t.Helper()
	return newProcessSiteWith(t, 4, settings...)
}

// newProcessSiteWith is newProcessSite whose process runs concurrency
// plans at once.
func newProcessSiteWith(t *testing.T, concurrency int, settings ...map[string]any) *site {
	t.Helper()
	s := newSite(t, settings...)
	s.proc = s.startProcess(concurrency)
	return s
}

// startProcess starts the site's `eventfn run`: the rules of eventfn.yaml
// and sync.yaml; with s.reconcile also the example's reconciliation
// (reconcile.yaml, the reconcile timer: a pass at start) over
// vars.offerings = the site's offering.
func (s *site) startProcess(concurrency int) *proc {
	t := s.t
	t.Helper()
	bin := buildEventfn(t)
	dir := t.TempDir()
	p := &proc{s: s, b: brokertest.New(t), queues: map[string]string{}, listen: freeAddr(t), logs: &syncBuffer{}}
	p.vhost = p.b.VHost(brokertest.Unique("eventfn-slurm-"))
	login, pass := "agent-"+s.sfx, brokertest.Unique("pw-")
	p.b.User(p.vhost, login, pass)
	p.b.Queue(p.vhost, brokertest.WaldurDLQ, nil)
	var dests []string
	for _, typ := range eventTypes {
		q := waldur.QueueName(login, s.offering, typ)
		p.b.WaldurQueue(p.vhost, q)
		p.queues[typ] = q
		dests = append(dests, fmt.Sprintf("%q", waldur.Destination(q)))
	}

	example, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(example), "\nrules:\n")
	if i < 0 {
		t.Fatal("no rules: in the example")
	}
	// the example's included rules: sync.yaml always, reconcile.yaml with s.reconcile
	included, timer := []string{"sync.yaml"}, ""
	if s.reconcile {
		included = append(included, "reconcile.yaml")
		s.cfg.Rules.Vars["offerings"] = []any{s.offering}
		timer = "  - name: reconcile\n    timer: {cron: \"* * * * *\", at_start: true}\n"
	}
	for _, name := range included {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(rulesFile), name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	include := "include: [" + strings.Join(included, ", ") + "]\n"
	vars, err := json.Marshal(s.cfg.Rules.Vars) // the site's settings (JSON is YAML)
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(s.waldur.token), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`version: 1
vars: %[1]s
slurm:
  cluster: %[2]s
  conf: %[3]s
  sacctmgr: %[4]s
waldur:
  api_url: %[5]s
  token_file: %[6]s
sources:
  - name: waldur
    url: stomp://%[7]s
    vhost: %[8]s
    login: %[9]s
    passcode_env: SLURM_SITE_PASSCODE
    on_failure: dead-letter
    dead_letter: /amq/queue/%[10]s
    subscribe: [%[11]s]
%[15]s%[16]srunner:
  concurrency: %[14]d
  state_dir: %[12]s
  shutdown_timeout: 30s
  listen: %[13]s
defaults:
  timeout: 60s
  retry: {attempts: 3, backoff: exponential, initial: 200ms, max: 2s}
`, vars, s.env.cluster, s.env.conf, s.sacctmgr, s.waldur.front.URL+"/api/", tokenFile,
		brokertest.STOMPAddr, p.vhost, login, brokertest.WaldurDLQ, strings.Join(dests, ", "),
		filepath.Join(dir, "state"), p.listen, concurrency, timer, include) + string(example[i+1:])
	cfgPath := filepath.Join(dir, "eventfn.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "-c", cfgPath)
	cmd.Env = append(os.Environ(), "SLURM_SITE_PASSCODE="+pass, "SLURM_CONF="+s.env.conf)
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(40 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() || os.Getenv("EVENTFN_TEST_LOG") != "" {
			t.Logf("eventfn run:\n%s", p.logs.String())
		}
	})
	brokertest.WaitFor(t, time.Minute, "eventfn run ready", func() bool {
		select {
		case err := <-exited:
			t.Fatalf("eventfn run exited: %v\n%s", err, p.logs.String())
		default:
		}
		resp, err := http.Get("http://" + p.listen + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// publish sends one message as Waldur publishes it, with a message id of
// its own (each call is a new delivery, never taken for a duplicate).
func (p *proc) publish(typ string, payload map[string]any) {
	p.s.t.Helper()
	q, ok := p.queues[typ]
	if !ok {
		p.s.t.Fatalf("no queue for %s", typ)
	}
	if _, ok := payload["offering_uuid"]; !ok {
		payload["offering_uuid"] = p.s.offering
	}
	body, err := json.Marshal(payload)
	if err != nil {
		p.s.t.Fatal(err)
	}
	p.b.Publish(p.vhost, q, body, "x-message-id", randHex(16))
}

// deliver publishes one message and waits until the process has settled
// it (its messages_settled_total grows), then tells its fate; a
// dead-lettered message's reason is read from the dead-letter queue.
func (p *proc) deliver(typ string, payload map[string]any) outcome {
	p.s.t.Helper()
	acked, dead := p.settled(typ, "acked"), p.settled(typ, "dead_lettered")
	p.publish(typ, payload)
	var o outcome
	brokertest.WaitFor(p.s.t, 3*time.Minute, typ+" message settled", func() bool {
		switch {
		case p.settled(typ, "acked") > acked:
			o.Fate = "ack"
		case p.settled(typ, "dead_lettered") > dead:
			o.Fate = "dead_letter"
		}
		return o.Fate != ""
	})
	if o.Fate == "dead_letter" {
		brokertest.WaitFor(p.s.t, time.Minute, "the dead letter", func() bool {
			for _, m := range p.b.Get(p.vhost, brokertest.WaldurDLQ, 1) {
				o.Reason = fmt.Sprint(m.Headers["x-eventfn-error"])
				return true
			}
			return false
		})
	}
	return o
}

// message is one message to publish.
type message struct {
	typ     string
	payload map[string]any
}

// deliverAll publishes every message at once (from as many goroutines) and
// waits until the process has settled them all; it returns the reasons of
// those dead-lettered.
func (p *proc) deliverAll(msgs []message) []string {
	t := p.s.t
	t.Helper()
	types := map[string]bool{}
	for _, m := range msgs {
		types[m.typ] = true
	}
	count := func(fate string) float64 {
		var n float64
		for typ := range types {
			n += p.settled(typ, fate)
		}
		return n
	}
	acked, dead := count("acked"), count("dead_lettered")
	errs := make(chan error, len(msgs))
	for _, m := range msgs {
		if _, ok := m.payload["offering_uuid"]; !ok {
			m.payload["offering_uuid"] = p.s.offering
		}
		body, err := json.Marshal(m.payload)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			_, err := brokertest.PublishE(p.vhost, p.queues[m.typ], body, "x-message-id", randHex(16))
			errs <- err
		}()
	}
	for range msgs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	brokertest.WaitFor(t, 5*time.Minute, fmt.Sprintf("%d messages settled", len(msgs)), func() bool {
		return count("acked")+count("dead_lettered") >= acked+dead+float64(len(msgs))
	})
	var reasons []string
	if want := int(count("dead_lettered") - dead); want > 0 {
		brokertest.WaitFor(t, time.Minute, "the dead letters", func() bool {
			for _, m := range p.b.Get(p.vhost, brokertest.WaldurDLQ, want-len(reasons)) {
				reasons = append(reasons, fmt.Sprint(m.Headers["x-eventfn-error"]))
			}
			return len(reasons) >= want
		})
	}
	return reasons
}

func (p *proc) settled(typ, fate string) float64 {
	return p.metric("eventfn_messages_settled_total", "source", "waldur", "type", typ, "fate", fate)
}

// metric sums the series of a counter of the process's /metrics whose
// labels include the given name, value pairs.
func (p *proc) metric(name string, labels ...string) float64 {
	p.s.t.Helper()
	resp, err := http.Get("http://" + p.listen + "/metrics")
	if err != nil {
		p.s.t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	return sumSeries(resp.Body, name, labels...)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// sumSeries reads Prometheus text exposition and sums the samples of name
// whose labels include every given name, value pair.
func sumSeries(r io.Reader, name string, labels ...string) float64 {
	var sum float64
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		lbls, value := "", rest
		if strings.HasPrefix(rest, "{") {
			end := strings.Index(rest, "} ")
			if end < 0 {
				continue
			}
			lbls, value = rest[1:end], rest[end+1:]
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			if !strings.Contains(","+lbls+",", ","+labels[i]+"="+strconv.Quote(labels[i+1])+",") {
				match = false
			}
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(value), 64); match && err == nil {
			sum += v
		}
	}
	return sum
}
