// Package stomp is eventfn's STOMP source for RabbitMQ: STOMP 1.2 over TCP
// (stomp://), TLS (stomp+ssl://), WebSocket (stomp+ws://) and WebSocket
// with TLS (stomp+wss://), with client-individual acknowledgements, a
// prefetch limit, heart-beats, and reconnection forever with backoff. It also
// holds the Waldur source, which registers with Waldur's API and then
// consumes the queues Waldur made for it over the same machinery.
//
// Delivery is at least once: a message is acknowledged only when the
// runner settles it, on the connection that delivered it. A message whose
// connection is gone cannot be acknowledged; the broker redelivers it and
// the runner's journal recognises it. While a message with some
// x-message-id is being handled, another copy with the same id (a Waldur
// duplicate, or a redelivery after a reconnect) waits until the first is
// settled, so the journal sees the outcome of the first before deciding on
// the second.
//
// Dead-lettering (on_failure: dead-letter): with dead_letter set, the body
// is sent to that destination with the original headers plus
// x-eventfn-error (the reason), x-eventfn-source and
// x-eventfn-original-destination, with a receipt, and then the original is
// acknowledged. Without dead_letter the message is NACKed with
// requeue:false, so RabbitMQ routes it by the queue's own dead-letter
// settings: Waldur's queues have x-dead-letter-exchange "" and
// x-dead-letter-routing-key waldur.dlq.messages, i.e. the queue
// waldur.dlq.messages of the vhost (RabbitMQ drops it when that queue does
// not exist or the queue has no dead-letter exchange).
package stomp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/eventfn/eventfn/internal/stompframe"
	"github.com/eventfn/eventfn/runner"
	"github.com/eventfn/eventfn/runner/broker"
	"github.com/eventfn/eventfn/waldur"
)

// DefaultPrefetch is the prefetch-count of a subscription when none is
// configured: at most this many unacknowledged messages per subscription.
const DefaultPrefetch = 100

// DefaultTypeField is the payload field read for the event type when
// neither the source nor the destination gives one (Waldur's consumer
// queue carries object_type in every payload).
const DefaultTypeField = "object_type"

// Subscription is one destination of a connection.
type Subscription struct {
	// Destination, e.g. /amq/queue/<name> for an existing RabbitMQ queue.
	Destination string
	// Type fixes the event type of its messages; empty derives it.
	Type string
	// TypeField names the payload field holding the type, used when Type
	// is empty.
	TypeField string
}

// ConnConfig is one broker connection and what it subscribes to.
type ConnConfig struct {
	DialOptions
	Subscriptions []Subscription
	// OnNotFound, if set, is called when the broker answers a SUBSCRIBE
	// with "not found" (the queue is gone); it may re-create the queue
	// before the next attempt (Waldur's registration does).
	OnNotFound func(ctx context.Context) error
}

// Config configures a Source.
type Config struct {
	// Name is the source's name (messages' Source, logs, metrics).
	Name string
	// Connections are opened side by side; a plain STOMP source has one.
	Connections []ConnConfig
	// Prefetch is each subscription's prefetch-count (default 100).
	Prefetch int
	// DeadLetterOnFailure selects dead-lettering of failed and undecodable
	// messages (on_failure: dead-letter); otherwise they are acked.
	DeadLetterOnFailure bool
	// DeadLetter is the destination failed messages are sent to; empty
	// means NACK with requeue:false (the queue's dead-letter exchange).
	DeadLetter string
	// Backoff spaces connection attempts.
	Backoff Backoff
	// StableAfter is how long a connection must have lasted for the
	// backoff to start again from Backoff.Initial (default 1s: a broker
	// that closes connections often must not push the delay to minutes,
	// one that drops them at once must not be hammered).
	StableAfter time.Duration
	// DrainTimeout bounds how long, once stopping, the source keeps its
	// connections open for the acknowledgements of messages in flight
	// (default 30s).
	DrainTimeout time.Duration
	Logger       *slog.Logger
	// Metrics, if set, receives the Connected gauge and Reconnects counter.
	Metrics *runner.Metrics
}

// Source is a STOMP source: it implements runner.Source and runner.Readier.
type Source struct {
	cfg  Config
	log  *slog.Logger
	conf func(ctx context.Context) ([]ConnConfig, error) // the connections to open (after registration, for Waldur)

	q *fifo[*received]

	mu       sync.Mutex
	sessions []*session
	stopping bool
	lastErr  error

	outstanding broker.InFlight // delivered, not yet settled
}

var (
	_ runner.Source  = (*Source)(nil)
	_ runner.Readier = (*Source)(nil)
)

// New returns a source opening cfg.Connections.
func New(cfg Config) (*Source, error) {
	if len(cfg.Connections) == 0 {
		return nil, errors.New("stomp source: no connections")
	}
	for i := range cfg.Connections {
		if err := checkConn(&cfg.Connections[i]); err != nil {
			return nil, fmt.Errorf("stomp source %s: %w", cfg.Name, err)
		}
	}
	conns := cfg.Connections
	s := newSource(cfg)
	s.conf = func(context.Context) ([]ConnConfig, error) { return conns, nil }
	return s, nil
}

func newSource(cfg Config) *Source {
	if cfg.Prefetch <= 0 {
		cfg.Prefetch = DefaultPrefetch
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 30 * time.Second
	}
	if cfg.StableAfter <= 0 {
		cfg.StableAfter = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Source{
		cfg: cfg,
		log: cfg.Logger.With("source", cfg.Name),
		q:   newFIFO[*received](),
	}
}

func checkConn(c *ConnConfig) error {
	if len(c.Subscriptions) == 0 {
		return fmt.Errorf("%s: nothing to subscribe to", c.Endpoint)
	}
	for i := range c.Subscriptions {
		sub := &c.Subscriptions[i]
		if sub.Destination == "" {
			return fmt.Errorf("%s: empty destination", c.Endpoint)
		}
		if sub.Type == "" {
			sub.Type = TypeOf(sub.Destination)
		}
		if sub.Type == "" && sub.TypeField == "" {
			sub.TypeField = DefaultTypeField
		}
	}
	return nil
}

// TypeOf derives the event type from a destination: for a Waldur per-type
// queue (…_offering_<32 hex>_<type>, under /amq/queue/, /queue/ or
// /topic/) the text after the offering; "" otherwise.
func TypeOf(destination string) string {
	name := destination
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	if t, ok := waldur.TypeFromQueue(name); ok {
		return t
	}
	return ""
}

// Name implements runner.Source.
func (s *Source) Name() string { return s.cfg.Name }

// Ready implements runner.Readier: every connection is up and its
// subscriptions confirmed by the broker.
func (s *Source) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.sessions) == 0 {
		return false
	}
	for _, ss := range s.sessions {
		if !ss.ready.Load() {
			return false
		}
	}
	return true
}

// LastError returns the last connection or registration error, nil when
// the source has been up since.
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

// stateChanged updates the Connected gauge after a session went up or down.
func (s *Source) stateChanged() {
	if s.cfg.Metrics == nil {
		return
	}
	v := 0.0
	if s.Ready() {
		v = 1
	}
	s.cfg.Metrics.Connected.WithLabelValues(s.cfg.Name).Set(v)
}

// Run implements runner.Source. It returns when ctx ends, after the
// messages in flight are settled (up to DrainTimeout) and the connections
// closed; unacknowledged messages then return to their queues.
func (s *Source) Run(ctx context.Context, deliver runner.Deliver) error {
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.Connected.WithLabelValues(s.cfg.Name).Set(0)
	}
	conns, err := s.conf(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	sessions := make([]*session, len(conns))
	for i, c := range conns {
		sessions[i] = newSession(s, c)
	}
	s.mu.Lock()
	s.sessions = sessions
	s.mu.Unlock()

	var wg sync.WaitGroup
	for _, ss := range sessions {
		wg.Go(func() { ss.run(ctx) })
	}
	s.deliverLoop(ctx, deliver)
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	wg.Wait()
	s.drain()
	for _, ss := range sessions {
		ss.shutdown()
	}
	s.stateChanged()
	return nil
}

// received is a message taken from a subscription.
type received struct {
	ss   *session
	gen  uint64
	sub  *Subscription
	hdr  stompframe.Header
	body []byte
	when time.Time
}

// deliverLoop hands received messages to the runner, one at a time, in
// arrival order, until ctx ends.
func (s *Source) deliverLoop(ctx context.Context, deliver runner.Deliver) {
	for {
		r, ok := s.q.pop(ctx)
		if !ok {
			return
		}
		if !r.ss.current(r.gen) {
			continue // its connection is gone: the broker redelivers it
		}
		m := s.message(r)
		if !s.admit(ctx, m.ID) {
			return
		}
		if err := deliver(ctx, m); err != nil {
			m.Settler.(*settler).release()
			if ctx.Err() != nil {
				return
			}
			s.log.Error("runner refused a message; it stays with the broker", "id", m.ID, "error", err)
		}
	}
}

// admit counts a message as delivered and not yet settled (drain waits
// for them). A second copy of a message in flight is not held back here:
// the runner parks it until the first copy settles and gives it the same
// fate, so other messages keep flowing (no head-of-line blocking).
func (s *Source) admit(ctx context.Context, _ string) bool {
	if ctx.Err() != nil {
		return false
	}
	s.outstanding.Add()
	return true
}

// released marks a delivered message settled.
func (s *Source) released(string) { s.outstanding.Done() }

// drain waits until every delivered message is settled, up to DrainTimeout.
func (s *Source) drain() {
	if n := s.outstanding.Wait(s.cfg.DrainTimeout); n > 0 {
		s.log.Warn("closing with messages still in flight; the broker will redeliver them", "in_flight", n)
	}
}

// message turns a received STOMP message into a runner.Message.
func (s *Source) message(r *received) *runner.Message {
	m := toMessage(s.cfg.Name, r.sub, r.hdr, r.body, s.cfg.DeadLetterOnFailure)
	m.Received = r.when
	m.Settler = &settler{src: s, r: r, id: m.ID}
	return m
}

// toMessage is the runner.Message (without its settler and time) of a
// MESSAGE frame's headers and body received on sub. It is pure, so that the
// path from frame to event can be fuzzed (FuzzMessageToEvent).
func toMessage(source string, sub *Subscription, h stompframe.Header, body []byte, deadLetter bool) *runner.Message {
	headers := make(map[string]string, h.Len())
	for i := h.Len() - 1; i >= 0; i-- { // last to first: the first occurrence wins, as STOMP says
		k, v := h.At(i)
		headers[k] = v
	}
	return &runner.Message{
		Source:      source,
		Destination: sub.Destination,
		Body:        body,
		Headers:     headers,
		// A copy: the header values share one string per frame (package
		// stompframe), and the id outlives the message in the journal.
		ID:                  strings.Clone(headers["x-message-id"]),
		Type:                sub.Type,
		TypeField:           sub.TypeField,
		DeadLetterOnFailure: deadLetter,
	}
}
