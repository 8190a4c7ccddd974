// Package mqtt is eventfn's MQTT source. It subscribes to topic filters on an
// MQTT 3.1.1 broker (RabbitMQ's MQTT and Web-MQTT plugins, Mosquitto) with
// QoS 1 and a persistent session, hands each message to the runner, and
// acknowledges it (PUBACK) only once the runner has settled it.
//
// # Delivery
//
//   - At least once. The session is persistent (clean session off, a stable
//     client id), so the broker keeps what is published while eventfn is
//     down or disconnected and delivers it on the next connection; messages
//     delivered but not acknowledged are sent again, with the DUP flag, when
//     the client reconnects (MQTT 3.1.1 §4.4). Both RabbitMQ and Mosquitto do
//     this (see the integration tests). Mosquitto keeps at most
//     max_queued_messages (default 1000) per offline client and drops the
//     rest: raise it for long outages.
//   - MQTT has no negative acknowledgement. Requeue leaves the message
//     unacknowledged: the broker sends it again after the next reconnect,
//     not before, and until then it holds one of the broker's in-flight
//     slots (RabbitMQ mqtt.prefetch, default 10; Mosquitto
//     max_inflight_messages, default 20). The runner requeues only when it
//     is shutting down, so in practice the message returns when eventfn
//     starts again.
//   - DeadLetter publishes the payload unchanged to the dead_letter topic
//     with QoS 1, waits for the broker's PUBACK, then acknowledges the
//     message. MQTT 3.1.1 has no headers to carry the reason (the runner logs
//     it). On RabbitMQ a topic with no subscriber drops what is published to
//     it: bind a queue to amq.topic for the dead-letter topic, or keep a
//     persistent subscriber.
//   - An acknowledgement can only travel on the connection its message came
//     on (paho drops acknowledgements meant for an earlier connection). Once
//     that connection is gone, settling returns an error and the broker
//     sends the message again; the runner's journal recognises it (below).
//     A redelivery that arrives while the first copy is still being handled
//     is not handed to the runner again: it is acknowledged together with
//     the first copy once that is settled.
//   - Messages reach the runner in the order the broker sent them (paho's
//     ordered router, with a handler that never blocks); the runner's
//     dispatcher then runs different keys concurrently.
//
// Events carry the headers mqtt-topic, x-message-id (unless message_id is
// none) and, on a redelivery, mqtt-dup: "true".
//
// # Message ids
//
// MQTT 3.1.1 carries no headers and no id that survives redelivery. By
// default (message_id: hash) a message's id is Waldur's x-message-id formula,
// the first 32 hex digits of sha256("{vhost}:{topic}:{payload}"), so a
// redelivered message is recognised by the runner's journal: skipped when it
// was handled, resumed after its last completed step when it was cut off.
// The price: two events with the same payload on the same topic within the
// journal's window (24 h by default) count as one and the second is skipped,
// exactly as with the x-message-id Waldur sends on its STOMP path. Where
// identical payloads are distinct events (a role granted, revoked and
// granted again within the window), set message_id: none, which turns
// de-duplication and resumption off for the source: redeliveries then run
// their plans again.
//
// # Connection
//
// The source connects, subscribes, and on any loss reconnects forever with
// exponential backoff and up to 25% jitter (1 s doubling to 2 min, back to
// 1 s once a connection has stayed up, subscribed, for a second), subscribing again each time
// (harmless when the broker kept the session; it tells when the broker kept
// none). paho's own reconnect is off: it has no jitter and its waits cannot
// be cancelled. Ready reports false while the source is down, and
// LastError says why. A broker that refuses the login (CONNACK "bad user
// name or password" or "not authorized"; RabbitMQ's Web-MQTT instead
// closes the WebSocket as "unauthenticated"), at the first connection as
// at later ones, is logged at error level and retried with the same
// backoff: the login may be created or rotated later.
//
// On stopping, the source keeps the connection until the runner has settled
// what it holds (up to DrainTimeout), makes one round trip so the broker has
// processed the last acknowledgements, and disconnects; what was not
// settled then is delivered again on the next start.
package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/gorilla/websocket"
	"golang.org/x/net/proxy"

	"github.com/eventfn/eventfn/internal/coalesce"
	"github.com/eventfn/eventfn/runner"
	"github.com/eventfn/eventfn/runner/broker"
	"github.com/eventfn/eventfn/waldur"
)

// Message id modes (Config.MessageID).
const (
	// MessageIDHash derives the id from vhost, topic and payload.
	MessageIDHash = "hash"
	// MessageIDNone gives messages no id: no de-duplication.
	MessageIDNone = "none"
)

// Defaults.
const (
	DefaultKeepAlive    = 30 * time.Second
	DefaultDrainTimeout = 30 * time.Second
	DefaultMinBackoff   = time.Second
	DefaultMaxBackoff   = 2 * time.Minute
)

// ErrLoginRefused is wrapped by LastError while the broker refuses the
// login.
var ErrLoginRefused = errors.New("broker refused the login")

// errConnGone is returned when a message's connection is gone before it
// could be acknowledged.
var errConnGone = errors.New("the connection the message came on is gone: the broker will deliver it again")

// Config configures a Source. Build it with FromSettings from a rules file's
// source, or directly.
type Config struct {
	// Name names the source in logs and metrics.
	Name string
	// URL is the broker: mqtt://host[:1883], mqtts://host[:8883],
	// mqtt+ws://host[:80]/path, mqtt+wss://host[:443]/path (path default /ws).
	URL string
	// VHost is the RabbitMQ virtual host; with it, a Login without ':' is
	// sent as "vhost:login" (RabbitMQ's MQTT form).
	VHost string
	// Login and Passcode authenticate; both empty means anonymous.
	Login    string
	Passcode string
	// Subscribe lists topic filters (+ and # allowed).
	Subscribe []string
	// QoS of the subscriptions: 1 (default) or 2.
	QoS byte
	// ClientID identifies the persistent session; keep it stable.
	ClientID string
	// Type fixes the event type. Else TypeField names a payload field
	// holding it, else it is the topic segment TypeSegment (1 the first, -1
	// the last; 0 means -1).
	Type        string
	TypeField   string
	TypeSegment int
	// DeadLetterOnFailure sends failed messages to DeadLetter (a topic);
	// else they are acked with an error log.
	DeadLetterOnFailure bool
	DeadLetter          string
	// MessageID is MessageIDHash (default) or MessageIDNone.
	MessageID string
	// TLS is used for mqtts and mqtt+wss.
	TLS *tls.Config
	// KeepAlive is the MQTT keep-alive (default 30s).
	KeepAlive time.Duration
	// DrainTimeout bounds how long Run, once its context ends, waits for
	// the runner to settle delivered messages before disconnecting
	// (default 30s); later acknowledgements are lost and the broker
	// redelivers those messages.
	DrainTimeout time.Duration
	// MinBackoff and MaxBackoff bound the reconnect delay (1s, 2min).
	MinBackoff, MaxBackoff time.Duration
	// ConnectTimeout bounds one connection attempt (default 30s).
	ConnectTimeout time.Duration
	Logger         *slog.Logger
	// Metrics, if set, receives the Connected gauge and Reconnects counter.
	Metrics *runner.Metrics
}

// Source is an MQTT source; it implements runner.Source and runner.Readier.
type Source struct {
	cfg    Config
	broker string // paho's broker URL
	user   string // login as sent
	vhost  string // for message ids
	log    *slog.Logger

	ready    atomic.Bool
	stopping atomic.Bool   // Run's context has ended
	gen      atomic.Uint64 // connection generation: bumped before each connection attempt and at the end

	mu      sync.Mutex
	queue   []inbound // received, not yet handed to the runner
	wake    chan struct{}
	pending broker.InFlight // handed to the runner, not settled
	// acks carries acknowledgements to the acker goroutine (see queueAck).
	acks    chan ackJob
	leaders map[string]*delivery // unsettled messages by dedup key
	client  paho.Client
	lastErr error // why the source is down, nil while connected
}

// inbound is a message as received.
type inbound struct {
	msg      paho.Message
	gen      uint64
	received time.Time
}

// New checks cfg and returns a source.
func New(cfg Config) (*Source, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	broker, err := BrokerURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	if cfg.TLS != nil && !strings.HasPrefix(broker, "ssl:") && !strings.HasPrefix(broker, "wss:") {
		return nil, fmt.Errorf("mqtt: tls settings need an mqtts:// or mqtt+wss:// url, not %s", schemeOf(cfg.URL))
	}
	if len(cfg.Subscribe) == 0 {
		return nil, errors.New("mqtt: subscribe needs at least one topic filter")
	}
	for _, f := range cfg.Subscribe {
		if err := checkFilter(f); err != nil {
			return nil, err
		}
	}
	switch cfg.QoS {
	case 0:
		cfg.QoS = 1
	case 1, 2:
	default:
		return nil, fmt.Errorf("mqtt: qos %d: want 1 or 2 (QoS 0 loses messages)", cfg.QoS)
	}
	switch cfg.MessageID {
	case "":
		cfg.MessageID = MessageIDHash
	case MessageIDHash, MessageIDNone:
	default:
		return nil, fmt.Errorf("mqtt: message_id %q: want hash or none", cfg.MessageID)
	}
	if cfg.DeadLetterOnFailure {
		if cfg.DeadLetter == "" {
			return nil, errors.New("mqtt: on_failure dead-letter needs dead_letter (a topic)")
		}
		if strings.ContainsAny(cfg.DeadLetter, "+#") {
			return nil, fmt.Errorf("mqtt: dead_letter %q: a topic to publish to cannot hold + or #", cfg.DeadLetter)
		}
	}
	if cfg.ClientID == "" {
		return nil, errors.New("mqtt: empty client id")
	}
	if cfg.Passcode != "" && cfg.Login == "" {
		return nil, errors.New("mqtt: a passcode without a login")
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 30 * time.Second
	}
	user, vhost := Login(cfg.VHost, cfg.Login)
	return &Source{
		cfg: cfg, broker: broker, user: user, vhost: vhost,
		log:  cfg.Logger.With("source", cfg.Name),
		wake: make(chan struct{}, 1), leaders: map[string]*delivery{}, acks: make(chan ackJob, ackQueue),
	}, nil
}

// Name implements runner.Source.
func (s *Source) Name() string { return s.cfg.Name }

// Ready implements runner.Readier: true while connected and subscribed.
func (s *Source) Ready() bool { return s.ready.Load() }

// ClientID returns the session's client id.
func (s *Source) ClientID() string { return s.cfg.ClientID }

// Run implements runner.Source: it connects, subscribes and delivers until
// ctx ends, reconnecting whenever the connection is lost.
func (s *Source) Run(ctx context.Context, deliver runner.Deliver) error {
	lost := make(chan error, 1)
	opts := s.options(lost)
	client := paho.NewClient(opts)
	s.mu.Lock()
	s.client = client
	s.mu.Unlock()

	pctx, stopPump := context.WithCancel(ctx)
	pumpDone := make(chan struct{})
	go func() { defer close(pumpDone); s.pump(pctx, deliver) }()
	ackerDone := make(chan struct{})
	stopAcker := make(chan struct{})
	go func() { defer close(ackerDone); s.acker(stopAcker) }()
	s.setConnected(false)
	defer func() {
		stopPump() // what is still queued stays unacknowledged
		s.setConnected(false)
		s.stopping.Store(true)
		s.drain() // the acker has sent what it was given: pending counts its queue
		s.flush(client)
		client.Disconnect(500)
		s.gen.Add(1)
		close(stopAcker)
		select { // paho's Ack can block for good on a dead connection
		case <-ackerDone:
		case <-time.After(time.Second):
			s.log.Warn("mqtt source stopped with an acknowledgement still being sent")
		}
		<-pumpDone
		s.log.Info("mqtt source stopped", "client_id", s.cfg.ClientID)
	}()

	everConnected := false
	retry := broker.Retry{Backoff: broker.Backoff{Initial: s.cfg.MinBackoff, Max: s.cfg.MaxBackoff}}
	for {
		select { // a loss reported for an earlier connection
		case <-lost:
		default:
		}
		// Messages from here on belong to the new connection; those of
		// the previous one can no longer be acknowledged.
		s.gen.Add(1)
		sessionPresent, err := s.connect(ctx, client)
		var delay time.Duration
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil:
			retry.Connected(time.Now())
			s.setLastError(nil)
			s.setConnected(true)
			if everConnected && s.cfg.Metrics != nil {
				s.cfg.Metrics.Reconnects.WithLabelValues(s.cfg.Name).Inc()
			}
			attrs := []any{"url", s.cfg.URL, "client_id", s.cfg.ClientID, "session_present", sessionPresent}
			if everConnected && !sessionPresent {
				s.log.Warn("mqtt reconnected but the broker kept no session: what was published while disconnected is lost", attrs...)
			} else {
				s.log.Info("mqtt connected and subscribed", append(attrs, "subscribe", s.cfg.Subscribe)...)
			}
			everConnected = true
			reason := s.waitLost(ctx, client, lost)
			if ctx.Err() != nil {
				return nil
			}
			s.setLastError(reason)
			// A flapping connection keeps backing off.
			delay = retry.Lost(time.Now())
		case errors.Is(err, ErrLoginRefused):
			// Loudly, but on: the login may be created later, or the
			// broker may have refused it while restarting.
			delay = retry.Failed()
			s.setLastError(err)
			s.log.Error("mqtt login refused; check login, vhost and passcode. Retrying", "url", s.cfg.URL,
				"login", s.user, "attempt", retry.Failures(), "retry_in", delay.Round(time.Millisecond).String(), "error", err)
		default:
			delay = retry.Failed()
			s.setLastError(err)
			s.log.Warn("mqtt cannot connect; retrying", "url", s.cfg.URL, "attempt", retry.Failures(),
				"retry_in", delay.Round(time.Millisecond).String(), "error", err)
		}
		if !broker.Sleep(ctx, delay) {
			return nil
		}
	}
}

// waitLost waits until the connection is lost, returning why, or ctx
// ends (nil).
func (s *Source) waitLost(ctx context.Context, c paho.Client, lost <-chan error) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case reason := <-lost:
			if c.IsConnectionOpen() { // late news of an earlier connection
				continue
			}
			s.setConnected(false)
			s.log.Warn("mqtt connection lost; reconnecting", "url", s.cfg.URL, "reason", errText(reason))
			if reason == nil {
				reason = errors.New("connection lost")
			}
			return fmt.Errorf("connection lost: %s", errText(reason))
		}
	}
}

// LastError returns why the source is not connected: the last connection
// or subscription error, or why the connection was lost; nil while
// connected.
func (s *Source) LastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

func (s *Source) setLastError(err error) {
	s.mu.Lock()
	s.lastErr = err
	s.mu.Unlock()
}

// connectionOpen reports whether the current connection is up.
func (s *Source) connectionOpen() bool {
	s.mu.Lock()
	c := s.client
	s.mu.Unlock()
	return c != nil && c.IsConnectionOpen()
}

// options builds paho's options; lost receives connection losses.
func (s *Source) options(lost chan<- error) *paho.ClientOptions {
	o := paho.NewClientOptions().
		AddBroker(s.broker).
		SetClientID(s.cfg.ClientID).
		SetProtocolVersion(4). // MQTT 3.1.1, no silent fallback to 3.1
		SetCleanSession(false).
		SetAutoAckDisabled(true).
		// Ordered: the handler runs on paho's router goroutine in arrival
		// order and only queues the message, so it never blocks paho.
		SetOrderMatters(true).
		SetAutoReconnect(false). // Run reconnects, with jitter and a cancellable wait
		SetConnectRetry(false).
		SetKeepAlive(s.cfg.KeepAlive).
		SetConnectTimeout(s.cfg.ConnectTimeout).
		SetWriteTimeout(s.cfg.ConnectTimeout).
		SetDefaultPublishHandler(s.receive).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case lost <- err:
			default:
			}
		})
	if s.user != "" {
		o.SetUsername(s.user)
		o.SetPassword(s.cfg.Passcode)
	}
	if s.cfg.TLS != nil {
		o.SetTLSConfig(s.cfg.TLS)
	}
	o.SetCustomOpenConnectionFn(openConnection)
	return o
}

// openConnection dials the broker for paho as paho itself does for the
// schemes BrokerURL makes (tcp, ssl, ws, wss; tcp and ssl through the
// ALL_PROXY proxy when it is set, ws and wss as paho's WebSocket dialer
// does), and coalesces the connection's writes: paho writes each packet on
// its own, so without it every PUBACK costs a system call (over a
// WebSocket, a message; MQTT lets a WebSocket message hold several
// packets). A failed write closes the
// connection, so paho's reader fails at once and the source reconnects.
func openConnection(uri *url.URL, o paho.ClientOptions) (net.Conn, error) {
	dialer := o.Dialer
	if dialer == nil {
		dialer = &net.Dialer{Timeout: o.ConnectTimeout}
	}
	var c net.Conn
	var err error
	switch uri.Scheme {
	case "tcp":
		c, err = proxy.FromEnvironmentUsing(dialer).Dial("tcp", uri.Host)
	case "ssl":
		if c, err = proxy.FromEnvironmentUsing(dialer).Dial("tcp", uri.Host); err == nil {
			cfg := o.TLSConfig.Clone()
			if cfg == nil {
				cfg = &tls.Config{}
			}
			if cfg.ServerName == "" {
				cfg.ServerName = uri.Hostname()
			}
			tc := tls.Client(c, cfg)
			ctx := context.Background()
			if o.ConnectTimeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, o.ConnectTimeout)
				defer cancel()
			}
			if err = tc.HandshakeContext(ctx); err != nil {
				_ = c.Close()
			}
			c = tc
		}
	case "ws", "wss":
		var tlsc *tls.Config
		if uri.Scheme == "wss" {
			tlsc = o.TLSConfig
		}
		c, err = paho.NewWebsocket(uri.String(), tlsc, o.ConnectTimeout, o.HTTPHeaders, o.WebsocketOptions)
	default:
		return nil, fmt.Errorf("mqtt: scheme %q: want tcp, ssl, ws or wss", uri.Scheme)
	}
	if err != nil {
		return nil, err
	}
	return coalesce.New(c, nil), nil
}

// connect makes one connection attempt and subscribes.
func (s *Source) connect(ctx context.Context, c paho.Client) (sessionPresent bool, err error) {
	tok := c.Connect()
	if err := WaitToken(ctx, tok); err != nil {
		if ctx.Err() != nil {
			c.Disconnect(0)
			return false, ctx.Err()
		}
		if loginRefused(err) {
			return false, fmt.Errorf("%w (login %q): %w", ErrLoginRefused, s.user, err)
		}
		if errors.Is(err, websocket.ErrBadHandshake) {
			return false, fmt.Errorf("connecting to %s: the server refused the WebSocket upgrade (check the url's path): %w", s.cfg.URL, err)
		}
		return false, fmt.Errorf("connecting to %s: %w", s.cfg.URL, err)
	}
	if ct, ok := tok.(*paho.ConnectToken); ok {
		sessionPresent = ct.SessionPresent()
	}
	filters := make(map[string]byte, len(s.cfg.Subscribe))
	for _, f := range s.cfg.Subscribe {
		filters[f] = s.cfg.QoS
	}
	// No callback: every message goes to the default handler exactly once,
	// even when several filters match its topic.
	st := c.SubscribeMultiple(filters, nil)
	err = WaitToken(ctx, st)
	if err == nil {
		if sub, ok := st.(*paho.SubscribeToken); ok {
			for f, code := range sub.Result() {
				if code == 0x80 {
					err = fmt.Errorf("broker refused the subscription to %q (check the login's permissions)", f)
					break
				}
			}
		}
	}
	if err != nil {
		c.Disconnect(0)
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		return false, fmt.Errorf("subscribing: %w", err)
	}
	return sessionPresent, nil
}

// loginRefused reports whether a connection attempt failed on the
// credentials: a CONNACK refusing them, or (RabbitMQ's Web-MQTT, which
// sends no CONNACK then) a WebSocket closed as "unauthenticated".
func loginRefused(err error) bool {
	if errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) || errors.Is(err, packets.ErrorRefusedNotAuthorised) {
		return true
	}
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		t := strings.ToLower(ce.Text)
		return strings.Contains(t, "unauthenticated") || strings.Contains(t, "not_authorized") || strings.Contains(t, "not authorized")
	}
	return false
}

// setConnected updates readiness and the Connected gauge.
func (s *Source) setConnected(up bool) {
	s.ready.Store(up)
	if m := s.cfg.Metrics; m != nil {
		v := 0.0
		if up {
			v = 1
		}
		m.Connected.WithLabelValues(s.cfg.Name).Set(v)
	}
}

// receive is paho's handler: it queues the message and returns at once.
func (s *Source) receive(_ paho.Client, m paho.Message) {
	in := inbound{msg: m, gen: s.gen.Load(), received: time.Now()}
	s.mu.Lock()
	s.queue = append(s.queue, in)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// pump hands queued messages to the runner in order until ctx ends.
// Messages still queued then are left unacknowledged.
func (s *Source) pump(ctx context.Context, deliver runner.Deliver) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
		for {
			s.mu.Lock()
			if len(s.queue) == 0 || ctx.Err() != nil {
				s.mu.Unlock()
				break
			}
			in := s.queue[0]
			s.queue[0] = inbound{}
			s.queue = s.queue[1:]
			s.mu.Unlock()
			s.hand(ctx, deliver, in)
		}
	}
}

// hand gives one message to the runner, unless it is a redelivery of a
// message the runner still holds.
func (s *Source) hand(ctx context.Context, deliver runner.Deliver, in inbound) {
	topic, body := in.msg.Topic(), in.msg.Payload()
	key := waldur.MessageID(s.vhost, topic, body)
	s.mu.Lock()
	if l := s.leaders[key]; l != nil && in.msg.Duplicate() && !l.settled {
		l.copies = append(l.copies, in)
		s.mu.Unlock()
		s.log.Info("mqtt redelivery of a message still being handled: it will be acknowledged with it",
			"topic", topic, "id", key)
		return
	}
	d := &delivery{s: s, key: key, copies: []inbound{in}}
	s.leaders[key] = d
	s.pending.Add()
	s.mu.Unlock()

	m := s.message(topic, body, key, in.msg.Duplicate())
	m.Received, m.Settler = in.received, d
	if err := deliver(ctx, m); err != nil {
		// The runner is stopping and did not take the message; it stays
		// unacknowledged for the broker to send again.
		s.log.Debug("mqtt message not taken: runner stopping", "topic", topic, "error", err)
		d.finish()
	}
}

// message is the runner.Message (without its settler and time) of a
// publish on topic, key being its waldur.MessageID. It is pure, so that the
// path from publish to event can be fuzzed (FuzzMessageToEvent).
func (s *Source) message(topic string, body []byte, key string, dup bool) *runner.Message {
	m := &runner.Message{
		Source:              s.cfg.Name,
		Destination:         topic,
		Body:                body,
		Headers:             map[string]string{"mqtt-topic": topic},
		Type:                s.cfg.Type,
		TypeField:           s.cfg.TypeField,
		DeadLetterOnFailure: s.cfg.DeadLetterOnFailure,
	}
	if dup {
		m.Headers["mqtt-dup"] = "true"
	}
	if m.Type == "" && m.TypeField == "" {
		m.Type = typeFromTopic(topic, s.cfg.TypeSegment)
	}
	if s.cfg.MessageID == MessageIDHash {
		m.ID = key
		m.Headers["x-message-id"] = key
	}
	return m
}

// drain waits until the runner has settled every delivered message, or
// DrainTimeout.
func (s *Source) drain() {
	n := s.pending.Len()
	if n == 0 || !s.connectionOpen() { // nothing to wait for, or no way to acknowledge it
		return
	}
	s.log.Info("mqtt source stopping: waiting for delivered messages to be settled", "pending", n, "timeout", s.cfg.DrainTimeout)
	if n = s.pending.Wait(s.cfg.DrainTimeout); n > 0 {
		s.log.Warn("mqtt source stopping with messages unsettled: the broker will deliver them again", "pending", n)
	}
}

// flushTopic is a topic filter nobody subscribes to: unsubscribing from it
// is a round trip with no other effect.
const flushTopic = "eventfn/flush/unused"

// flush makes sure the broker has processed the acknowledgements sent so
// far: it answers packets in order, so the UNSUBACK of an UNSUBSCRIBE sent
// after them proves they arrived. Without it, Mosquitto 2.0 lost
// acknowledgements written just before paho's DISCONNECT (paho closes the
// socket right after), and sent those messages again on the next
// connection.
func (s *Source) flush(c paho.Client) {
	if !c.IsConnectionOpen() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := WaitToken(ctx, c.Unsubscribe(flushTopic)); err != nil {
		s.log.Warn("mqtt: could not confirm the last acknowledgements reached the broker; it may deliver those messages again", "error", err)
	}
}

// WaitToken waits for a paho token to complete, or ctx to end, and returns
// the token's error (or ctx's).
func WaitToken(ctx context.Context, t paho.Token) error {
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func errText(err error) string {
	if err == nil {
		return "closed"
	}
	return err.Error()
}

// typeFromTopic returns segment n of topic (1 the first, -1 the last, 0
// the last), or "" when there is no such segment.
func typeFromTopic(topic string, n int) string {
	if n == 0 || n == -1 {
		return topic[strings.LastIndexByte(topic, '/')+1:]
	}
	segs := strings.Split(topic, "/")
	switch {
	case n > 0 && n <= len(segs):
		return segs[n-1]
	case n < 0 && -n <= len(segs):
		return segs[len(segs)+n]
	}
	return ""
}

// checkFilter checks an MQTT topic filter: + and # stand for whole levels,
// # only last.
func checkFilter(f string) error {
	if f == "" {
		return errors.New("mqtt: empty topic filter")
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		switch {
		case l == "#" && i != len(levels)-1:
			return fmt.Errorf("mqtt: topic filter %q: # must be the last level", f)
		case l != "#" && l != "+" && strings.ContainsAny(l, "+#"):
			return fmt.Errorf("mqtt: topic filter %q: + and # must stand for a whole level", f)
		}
	}
	return nil
}

// Login returns the user name to send, in RabbitMQ's "vhost:user" form
// when a vhost is given and the login has none, and the vhost in effect.
func Login(vhost, login string) (user, effective string) {
	if v, _, ok := strings.Cut(login, ":"); ok {
		return login, v
	}
	if vhost != "" && login != "" {
		return vhost + ":" + login, vhost
	}
	return login, vhost
}

func schemeOf(raw string) string {
	scheme, _, _ := strings.Cut(raw, ":")
	return scheme + "://"
}

// Schemes are the URL schemes of MQTT sources and publishers.
func Schemes() []string { return []string{"mqtt", "mqtts", "mqtt+ws", "mqtt+wss"} }

// IsSecure reports whether an MQTT URL uses TLS (mqtts, mqtt+wss).
func IsSecure(raw string) bool {
	scheme, _, _ := strings.Cut(raw, ":")
	return scheme == "mqtts" || scheme == "mqtt+wss"
}

// BrokerURL turns an eventfn MQTT URL (mqtt://host[:1883],
// mqtts://host[:8883], mqtt+ws://host[:80]/path, mqtt+wss://host[:443]/path,
// path default /ws) into paho's form (tcp://, ssl://, ws://, wss://). The
// URL must not carry credentials.
func BrokerURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("mqtt: url: %w", err)
	}
	if u.User != nil {
		return "", errors.New("mqtt: url: put credentials in login and passcode_file or passcode_env, not in the url")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("mqtt: url %q: no query or fragment expected (use the source's fields)", raw)
	}
	if u.Hostname() == "" {
		return "", fmt.Errorf("mqtt: url %q: missing host", raw)
	}
	var scheme, port string
	ws := false
	switch u.Scheme {
	case "mqtt":
		scheme, port = "tcp", "1883"
	case "mqtts":
		scheme, port = "ssl", "8883"
	case "mqtt+ws":
		scheme, port, ws = "ws", "80", true
	case "mqtt+wss":
		scheme, port, ws = "wss", "443", true
	default:
		return "", fmt.Errorf("mqtt: url scheme %q: want mqtt, mqtts, mqtt+ws or mqtt+wss", u.Scheme)
	}
	if u.Port() != "" {
		port = u.Port()
	}
	b := url.URL{Scheme: scheme, Host: joinHostPort(u.Hostname(), port)}
	if ws {
		b.Path = u.Path
		if b.Path == "" {
			b.Path = "/ws"
		}
	} else if u.Path != "" && u.Path != "/" {
		return "", fmt.Errorf("mqtt: url %q: a path is only meaningful for mqtt+ws and mqtt+wss", raw)
	}
	return b.String(), nil
}

func joinHostPort(host, port string) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + port
	}
	return host + ":" + port
}
