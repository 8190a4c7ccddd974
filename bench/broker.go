package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eventfn/eventfn/runner/mqtt"
	"github.com/eventfn/eventfn/runner/sources"
	sourcekit "github.com/eventfn/eventfn/source"
	"github.com/eventfn/eventfn/waldur"
)

// Transport families.
const (
	familySTOMP = "stomp"
	familyMQTT  = "mqtt"
)

// familyOf returns the transport family of a broker URL: the name of the
// source kind the source registry gives its scheme (as for `eventfn run`),
// which must be a broker's.
func familyOf(raw string) (string, error) {
	if _, _, ok := strings.Cut(raw, "://"); !ok {
		return "", fmt.Errorf("%q is not a broker URL (want e.g. stomp+ws://127.0.0.1:15674/ws)", raw)
	}
	f, err := sources.Standard().Family(raw)
	if err != nil {
		return "", err
	}
	if f != familySTOMP && f != familyMQTT {
		return "", fmt.Errorf("%s is not a broker's scheme (want a stomp or mqtt one)", sourcekit.Scheme(raw))
	}
	return f, nil
}

// management talks to RabbitMQ's management API: a virtual host per
// benchmark, a queue per consumer run.
type management struct {
	base       string
	user, pass string
	hc         *http.Client
}

func newManagement(base, user, pass string) *management {
	return &management{base: strings.TrimRight(base, "/"), user: user, pass: pass,
		hc: &http.Client{Timeout: 30 * time.Second}}
}

func (m *management) do(ctx context.Context, method, path string, body, out any) error {
	var r io.Reader
	if body != nil {
		js, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(js)
	}
	req, err := http.NewRequestWithContext(ctx, method, m.base+path, r)
	if err != nil {
		return err
	}
	req.SetBasicAuth(m.user, m.pass)
	req.Header.Set("Content-Type", "application/json")
	resp, err := m.hc.Do(req)
	if err != nil {
		return fmt.Errorf("management API %s: %w", m.base, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 300 {
		return fmt.Errorf("management API: %s %s: HTTP %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// version returns e.g. "RabbitMQ 3.10.8".
func (m *management) version(ctx context.Context) (string, error) {
	var o struct {
		Version string `json:"rabbitmq_version"`
	}
	if err := m.do(ctx, http.MethodGet, "/api/overview", nil, &o); err != nil {
		return "", err
	}
	return "RabbitMQ " + o.Version, nil
}

// createVHost creates a virtual host and gives user every permission on it.
func (m *management) createVHost(ctx context.Context, name, user string) error {
	if err := m.do(ctx, http.MethodPut, "/api/vhosts/"+url.PathEscape(name), map[string]any{}, nil); err != nil {
		return err
	}
	return m.do(ctx, http.MethodPut, "/api/permissions/"+url.PathEscape(name)+"/"+url.PathEscape(user),
		map[string]string{"configure": ".*", "write": ".*", "read": ".*"}, nil)
}

// deleteVHost deletes a virtual host and everything in it.
func (m *management) deleteVHost(ctx context.Context, name string) error {
	return m.do(ctx, http.MethodDelete, "/api/vhosts/"+url.PathEscape(name), nil, nil)
}

// queueArgs are the arguments Waldur declares its queues with, less
// x-max-length (10,000) and its x-overflow (reject-publish-dlx): a
// pre-fill beyond 10,000 messages would be refused, and a confirmed
// publish past the limit closes the publishing connection.
func queueArgs() map[string]any {
	return map[string]any{
		"x-message-ttl":             3600000,
		"x-dead-letter-exchange":    "",
		"x-dead-letter-routing-key": "waldur.dlq.messages",
	}
}

func (m *management) declareQueue(ctx context.Context, vhost, name string) error {
	return m.do(ctx, http.MethodPut, "/api/queues/"+url.PathEscape(vhost)+"/"+url.PathEscape(name),
		map[string]any{"durable": true, "auto_delete": false, "arguments": queueArgs()}, nil)
}

func (m *management) deleteQueue(ctx context.Context, vhost, name string) error {
	return m.do(ctx, http.MethodDelete, "/api/queues/"+url.PathEscape(vhost)+"/"+url.PathEscape(name), nil, nil)
}

// target is where one consumer run's messages go: a Waldur per-type queue
// (STOMP) or a Waldur topic with a persistent session (MQTT). Its name
// carries the event type, so the source derives it as it does for Waldur.
type target struct {
	queue    string // STOMP: the queue; MQTT: unused
	dest     string // STOMP destination or MQTT topic
	clientID string // MQTT: the consumer's session
}

// benchOffering is the offering UUID in every benchmark name and payload.
const benchOffering = "0f2c1e6b5d2a4c39a8e7f1b2c3d4e5f6"

func newTarget(family string, provisioned bool) target {
	sub := randomHex(16)
	if family == familyMQTT {
		return target{dest: waldur.MQTTTopic(sub, benchOffering, waldur.TypeOrder),
			clientID: "eventfn-bench-" + randomHex(6)}
	}
	q := waldur.QueueName(sub, benchOffering, waldur.TypeOrder)
	if !provisioned { // no management API: let RabbitMQ declare it (plain, durable)
		return target{queue: q, dest: "/queue/" + q}
	}
	return target{queue: q, dest: waldur.Destination(q)}
}

// primeMQTT creates the persistent session a consumer will resume (clean
// session off, a QoS 1 subscription), so that messages published before
// the consumer starts wait for it, as they do for a site agent that was
// down.
func primeMQTT(ctx context.Context, c connInfo, t target) error {
	broker, err := mqtt.BrokerURL(c.url)
	if err != nil {
		return err
	}
	opts := paho.NewClientOptions().AddBroker(broker).SetClientID(t.clientID).
		SetCleanSession(false).SetProtocolVersion(4).SetAutoReconnect(false).
		SetConnectTimeout(30 * time.Second)
	if c.login != "" {
		user, _ := mqtt.Login(c.vhost, c.login)
		opts.SetUsername(user).SetPassword(c.passcode)
	}
	if mqtt.IsSecure(c.url) {
		conf, err := c.tlsConfig()
		if err != nil {
			return err
		}
		opts.SetTLSConfig(conf)
	}
	cl := paho.NewClient(opts)
	if err := mqtt.WaitToken(ctx, cl.Connect()); err != nil {
		return fmt.Errorf("mqtt connect to %s: %w", c.url, err)
	}
	defer cl.Disconnect(250)
	if err := mqtt.WaitToken(ctx, cl.Subscribe(t.dest, 1, nil)); err != nil {
		return fmt.Errorf("mqtt subscribe %s: %w", t.dest, err)
	}
	return nil
}
