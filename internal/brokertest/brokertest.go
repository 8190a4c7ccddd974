// Package brokertest helps integration tests use the RabbitMQ on loopback
// (scripts/test-env.sh starts it): it provisions virtual hosts, users and
// queues through the management API the way Waldur does, removes them when
// the test ends, and publishes messages the way Waldur does, with plain
// go-stomp over TCP and admin credentials, independent of eventfn's code.
//
// A broker that cannot be reached fails the test; it is never skipped.
package brokertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	gostomp "github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"

	"github.com/eventfn/eventfn/waldur"
)

// Addresses of the loopback broker; the EVENTFN_TEST_* environment
// variables override them.
var (
	ManagementURL = env("EVENTFN_TEST_RABBITMQ_MGMT", "http://127.0.0.1:15672")
	AdminUser     = env("EVENTFN_TEST_RABBITMQ_USER", "guest")
	AdminPass     = env("EVENTFN_TEST_RABBITMQ_PASS", "guest")
	STOMPAddr     = env("EVENTFN_TEST_STOMP_ADDR", "127.0.0.1:61613")
	WebSTOMPAddr  = env("EVENTFN_TEST_WEB_STOMP_ADDR", "127.0.0.1:15674")
)

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// WaldurQueueArgs are the arguments Waldur declares its queues with.
var WaldurQueueArgs = map[string]any{
	"x-message-ttl":             3600000,
	"x-max-length":              10000,
	"x-overflow":                "reject-publish-dlx",
	"x-dead-letter-exchange":    "",
	"x-dead-letter-routing-key": "waldur.dlq.messages",
}

// WaldurDLQ is the queue Waldur's dead-letter routing key leads to.
const WaldurDLQ = "waldur.dlq.messages"

// Broker is the loopback RabbitMQ, reached through its management API.
type Broker struct {
	t    testing.TB
	base string
	hc   *http.Client
}

// New returns the broker, failing the test if its management API does not
// answer.
func New(t testing.TB) *Broker {
	t.Helper()
	b := &Broker{t: t, base: strings.TrimRight(ManagementURL, "/"), hc: &http.Client{Timeout: 15 * time.Second}}
	if _, err := b.do(http.MethodGet, "/api/overview", nil); err != nil {
		t.Fatalf("RabbitMQ is not reachable (run scripts/test-env.sh to start it): %v", err)
	}
	return b
}

// Unique returns prefix followed by a random suffix, for names that must
// not collide across test runs (go test -count=N) and parallel packages.
func Unique(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// do sends a management API request; a status of 300 or more is an error.
func (b *Broker) do(method, path string, body any) ([]byte, error) {
	var r io.Reader
	if body != nil {
		js, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, b.base+path, r)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(AdminUser, AdminPass)
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return out, fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(out))
	}
	return out, nil
}

func (b *Broker) must(method, path string, body any) []byte {
	b.t.Helper()
	out, err := b.do(method, path, body)
	if err != nil {
		b.t.Fatalf("management API: %v", err)
	}
	return out
}

// VHost creates a virtual host named name (use Unique), grants the admin
// user full permissions on it (as Waldur's admin has) and deletes it, with
// everything in it, when the test ends.
func (b *Broker) VHost(name string) string {
	b.t.Helper()
	p := "/api/vhosts/" + url.PathEscape(name)
	b.must(http.MethodPut, p, map[string]any{})
	b.t.Cleanup(func() { _, _ = b.do(http.MethodDelete, p, nil) })
	b.grant(name, AdminUser)
	return name
}

func (b *Broker) grant(vhost, user string) {
	b.t.Helper()
	b.must(http.MethodPut, "/api/permissions/"+url.PathEscape(vhost)+"/"+url.PathEscape(user),
		map[string]string{"configure": ".*", "write": ".*", "read": ".*"})
}

// User creates a broker user with password and full permissions on vhost,
// the way Waldur does for a subscription, and deletes it when the test ends.
func (b *Broker) User(vhost, name, password string) {
	b.t.Helper()
	p := "/api/users/" + url.PathEscape(name)
	b.must(http.MethodPut, p, map[string]any{"password": password, "tags": ""})
	b.t.Cleanup(func() { _, _ = b.do(http.MethodDelete, p, nil) })
	b.grant(vhost, name)
}

// Queue declares a durable queue with args.
func (b *Broker) Queue(vhost, name string, args map[string]any) {
	b.t.Helper()
	if args == nil {
		args = map[string]any{}
	}
	b.must(http.MethodPut, "/api/queues/"+url.PathEscape(vhost)+"/"+url.PathEscape(name),
		map[string]any{"durable": true, "auto_delete": false, "arguments": args})
}

// WaldurQueue declares a queue with Waldur's arguments.
func (b *Broker) WaldurQueue(vhost, name string) { b.Queue(vhost, name, WaldurQueueArgs) }

// Message is a message read back through the management API.
type Message struct {
	Payload     string
	Headers     map[string]any
	Redelivered bool
}

// Get takes up to n ready messages from a queue (acknowledging them: they
// are gone afterwards). Messages held unacknowledged by a consumer are not
// seen.
func (b *Broker) Get(vhost, queue string, n int) []Message {
	b.t.Helper()
	return b.get(vhost, queue, n, "ack_requeue_false")
}

// Peek is Get that leaves the messages in the queue.
func (b *Broker) Peek(vhost, queue string, n int) []Message {
	b.t.Helper()
	return b.get(vhost, queue, n, "ack_requeue_true")
}

func (b *Broker) get(vhost, queue string, n int, mode string) []Message {
	b.t.Helper()
	out := b.must(http.MethodPost, "/api/queues/"+url.PathEscape(vhost)+"/"+url.PathEscape(queue)+"/get",
		map[string]any{"count": n, "ackmode": mode, "encoding": "auto"})
	var raw []struct {
		Payload     string `json:"payload"`
		Redelivered bool   `json:"redelivered"`
		Properties  struct {
			Headers map[string]any `json:"headers"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(out, &raw); err != nil {
		b.t.Fatalf("management API get: %v: %s", err, out)
	}
	msgs := make([]Message, len(raw))
	for i, r := range raw {
		msgs[i] = Message{Payload: r.Payload, Headers: r.Properties.Headers, Redelivered: r.Redelivered}
	}
	return msgs
}

// CloseConnections makes the broker close every connection of vhost, as
// `rabbitmqctl close_all_connections --vhost V "test"`.
func (b *Broker) CloseConnections(vhost string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "rabbitmqctl", "close_all_connections", "--vhost", vhost, "test").CombinedOutput()
	if err != nil {
		b.t.Fatalf("rabbitmqctl close_all_connections: %v: %s", err, out)
	}
}

// Publish sends payload to queue the way Waldur does: one STOMP-over-TCP
// connection per message with the admin's credentials, SEND to
// /amq/queue/<queue> with Waldur's headers (x-message-id is
// waldur.MessageID over the destination), retried up to 5 times. It
// returns the message id. headers, if given, are added (and override).
func (b *Broker) Publish(vhost, queue string, payload []byte, headers ...string) string {
	b.t.Helper()
	id, err := PublishE(vhost, queue, payload, headers...)
	if err != nil {
		b.t.Fatal(err)
	}
	return id
}

// PublishE is Publish returning its error, for goroutines other than the
// test's.
func PublishE(vhost, queue string, payload []byte, headers ...string) (string, error) {
	dest := waldur.Destination(queue)
	id := waldur.MessageID(vhost, dest, payload)
	h := []string{"persistent", "true", "durable", "true", "auto-delete", "false", "x-message-id", id}
	h = append(h, headers...)
	var err error
	for attempt := range 5 {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 100 * time.Millisecond) // Waldur's retry backoff
		}
		if err = sendOnce(vhost, dest, payload, h); err == nil {
			return id, nil
		}
	}
	return "", fmt.Errorf("publish to %s in vhost %s: %w", dest, vhost, err)
}

func sendOnce(vhost, dest string, payload []byte, headers []string) error {
	c, err := gostomp.Dial("tcp", STOMPAddr, gostomp.ConnOpt.Host(vhost),
		gostomp.ConnOpt.Login(AdminUser, AdminPass), gostomp.ConnOpt.HeartBeat(0, 0))
	if err != nil {
		return err
	}
	defer c.MustDisconnect()
	var opts []func(*frame.Frame) error
	seen := map[string]int{}
	for i := 0; i+1 < len(headers); i += 2 {
		seen[headers[i]] = i
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if seen[headers[i]] == i { // the last value of a repeated name wins
			opts = append(opts, gostomp.SendOpt.Header(headers[i], headers[i+1]))
		}
	}
	opts = append(opts, gostomp.SendOpt.Receipt)
	if err := c.Send(dest, "application/json", payload, opts...); err != nil {
		return err
	}
	return c.Disconnect()
}

// WaitFor polls cond every 50ms until it holds or timeout passes, then
// fails the test with what. For external state only (queue contents, files
// written by other processes); use channels where a signal exists.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Depth returns a queue's ready and unacknowledged message counts, read
// with rabbitmqctl (exact, unlike the management API's sampled statistics).
func (b *Broker) Depth(vhost, queue string) (ready, unacked int) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "rabbitmqctl", "list_queues", "-q", "--no-table-headers", "-p", vhost,
		"name", "messages_ready", "messages_unacknowledged").CombinedOutput()
	if err != nil {
		b.t.Fatalf("rabbitmqctl list_queues: %v: %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == queue {
			fmt.Sscan(f[1], &ready)
			fmt.Sscan(f[2], &unacked)
			return ready, unacked
		}
	}
	b.t.Fatalf("queue %s not found in vhost %s: %s", queue, vhost, out)
	return 0, 0
}

// DeleteQueue deletes a queue.
func (b *Broker) DeleteQueue(vhost, name string) {
	b.t.Helper()
	b.must(http.MethodDelete, "/api/queues/"+url.PathEscape(vhost)+"/"+url.PathEscape(name), nil)
}
