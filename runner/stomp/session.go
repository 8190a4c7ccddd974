package stomp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gostomp "github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"

	"github.com/eventfn/eventfn/internal/stompframe"
	"github.com/eventfn/eventfn/runner/broker"
)

// SubscribeError is a connection that was established but whose
// subscriptions the broker did not confirm: it refused one (a missing queue:
// RabbitMQ's STOMP sends "not_found"; over Web-STOMP it just closes the
// connection) or the connection failed meanwhile.
type SubscribeError struct{ Err error }

func (e *SubscribeError) Error() string { return "subscribing: " + e.Err.Error() }
func (e *SubscribeError) Unwrap() error { return e.Err }

// ErrConnectionGone is returned when settling a message whose connection
// has closed: STOMP acknowledgements are valid only on the connection that
// delivered the message. The broker redelivers it.
var ErrConnectionGone = errors.New("the connection that delivered the message is gone; the broker will redeliver it")

// session is one broker connection, kept up until its context ends.
type session struct {
	src *Source
	cfg ConnConfig
	log *slog.Logger

	mu   sync.Mutex
	conn *Conn  // the live connection, nil while down
	gen  uint64 // incremented for every connection

	ready atomic.Bool
}

func newSession(src *Source, cfg ConnConfig) *session {
	if cfg.Logger == nil {
		cfg.Logger = src.log
	}
	// Settling every unacknowledged message at once (dead-lettering takes
	// two frames) must never block on go-stomp's write queue.
	cfg.WriteQueue = max(cfg.WriteQueue, 2*src.cfg.Prefetch*len(cfg.Subscriptions)+64)
	log := src.log.With("broker", cfg.Endpoint.String(), "vhost", cfg.VHost, "login", cfg.Login)
	cfg.Logger = log
	return &session{src: src, cfg: cfg, log: log}
}

// current reports whether gen is the live connection.
func (ss *session) current(gen uint64) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.conn != nil && ss.gen == gen
}

// connFor returns the live connection if it is generation gen.
func (ss *session) connFor(gen uint64) (*Conn, error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.conn == nil || ss.gen != gen {
		return nil, ErrConnectionGone
	}
	return ss.conn, nil
}

func (ss *session) attach(c *Conn) uint64 {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.gen++
	ss.conn = c
	return ss.gen
}

func (ss *session) detach(gen uint64) {
	ss.mu.Lock()
	if ss.gen == gen {
		ss.conn = nil
	}
	ss.mu.Unlock()
	ss.ready.Store(false)
	ss.src.stateChanged()
}

// run keeps the connection up until ctx ends. It returns with the last
// connection still open, so that messages in flight can be acknowledged;
// shutdown closes it.
func (ss *session) run(ctx context.Context) {
	retry := broker.Retry{Backoff: ss.src.cfg.Backoff, StableAfter: ss.src.cfg.StableAfter}
	everUp := false
	for ctx.Err() == nil {
		conn, gen, subErr, err := ss.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			delay := retry.Failed()
			ss.src.setLastError(err)
			ss.logConnectError(err, retry.Failures(), delay)
			ss.reregister(ctx, err)
			sleep(ctx, delay)
			continue
		}
		up := time.Now()
		retry.Connected(up)
		ss.src.setLastError(nil)
		ss.ready.Store(true)
		ss.src.stateChanged()
		subs := make([]string, len(ss.cfg.Subscriptions))
		for i, s := range ss.cfg.Subscriptions {
			subs[i] = s.Destination
		}
		if everUp {
			if m := ss.src.cfg.Metrics; m != nil {
				m.Reconnects.WithLabelValues(ss.src.cfg.Name).Inc()
			}
			ss.log.Info("reconnected to broker and resubscribed", "attempts", retry.Failures(), "subscriptions", subs)
		} else {
			ss.log.Info("connected to broker and subscribed", "subscriptions", subs, "prefetch", ss.src.cfg.Prefetch)
		}
		everUp = true

		reason := ss.watch(ctx, conn, subErr)
		if ctx.Err() != nil {
			return // keep conn for the acknowledgements of messages in flight
		}
		ss.detach(gen)
		_ = conn.Close()
		delay := retry.Lost(time.Now())
		ss.src.setLastError(reason)
		ss.log.Warn("disconnected from broker; reconnecting", "reason", reason.Error(),
			"uptime", time.Since(up).Round(time.Millisecond).String(), "retry_in", delay.Round(time.Millisecond).String())
		ss.reregister(ctx, reason)
		sleep(ctx, delay)
	}
}

// reregister calls OnNotFound when err may mean a missing queue.
func (ss *session) reregister(ctx context.Context, err error) {
	if ss.cfg.OnNotFound == nil || !maybeNotFound(err) {
		return
	}
	if rerr := ss.cfg.OnNotFound(ctx); rerr != nil {
		if ctx.Err() == nil {
			ss.log.Error("registering the queues again failed", "error", rerr)
		}
		return
	}
	ss.log.Info("queues registered again after a failed subscription")
}

// maybeNotFound reports whether a failed connection attempt may mean a
// missing queue: the broker said so, or it closed the connection while the
// subscriptions were pending (RabbitMQ Web-STOMP's way of saying so).
func maybeNotFound(err error) bool {
	var be *BrokerError
	if errors.As(err, &be) {
		return be.NotFound()
	}
	var se *SubscribeError
	return errors.As(err, &se)
}

func (ss *session) logConnectError(err error, failures int, delay time.Duration) {
	attrs := []any{"error", err.Error(), "attempt", failures, "retry_in", delay.Round(time.Millisecond).String()}
	var be *BrokerError
	var se *SubscribeError
	switch {
	case errors.As(err, &be) && be.NotFound():
		what := be.Missing()
		if what == "" {
			what = "a queue or destination"
		}
		ss.log.Error(fmt.Sprintf("broker refused a subscription: %s not found", what), attrs...)
	case errors.As(err, &be) && be.AccessRefused():
		ss.log.Error("broker refused the connection: check login, passcode (passcode_file/passcode_env) and vhost", attrs...)
	case errors.As(err, &se):
		ss.log.Error("broker closed the connection while subscribing: a queue may not exist (Web-STOMP reports a missing queue this way) or access to it is refused", attrs...)
	default:
		ss.log.Error("cannot connect to broker", attrs...)
	}
}

// subscribeTimeout bounds the wait for the broker to confirm subscriptions.
const subscribeTimeout = 30 * time.Second

// connect dials, subscribes to every destination and waits until the
// broker confirms them (a RECEIPT for the last SUBSCRIBE). Messages may
// arrive before the confirmation; they are queued like any other.
func (ss *session) connect(ctx context.Context) (*Conn, uint64, <-chan error, error) {
	conn, err := Dial(ctx, ss.cfg.DialOptions)
	if err != nil {
		return nil, 0, nil, err
	}
	gen := ss.attach(conn)
	conn.wire.take(ss.take(gen))
	fail := func(err error) (*Conn, uint64, <-chan error, error) {
		ss.detach(gen)
		_ = conn.Close()
		return nil, 0, nil, &SubscribeError{Err: err}
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	token := "eventfn-subscribed-" + hex.EncodeToString(b[:])
	confirmed := conn.wire.expect(token)
	subErr := make(chan error, len(ss.cfg.Subscriptions)+1)
	prefetch := strconv.Itoa(ss.src.cfg.Prefetch)
	for i := range ss.cfg.Subscriptions {
		sub := &ss.cfg.Subscriptions[i]
		id := subID(i)
		if i == len(ss.cfg.Subscriptions)-1 {
			conn.wire.addHeader("SUBSCRIBE", id, "receipt", token)
		}
		gs, err := conn.Subscribe(sub.Destination, gostomp.AckClientIndividual,
			gostomp.SubscribeOpt.Id(id), gostomp.SubscribeOpt.Header("prefetch-count", prefetch))
		if err != nil {
			return fail(fmt.Errorf("subscribe %s: %w", sub.Destination, brokerError(err)))
		}
		go ss.pump(gs, gen, sub, subErr)
	}
	t := time.NewTimer(subscribeTimeout)
	defer t.Stop()
	select {
	case <-confirmed:
		if !conn.wire.sawError() {
			return conn, gen, subErr, nil
		}
		// An ERROR came before the RECEIPT: wait for go-stomp to report it.
		select {
		case err := <-subErr:
			return fail(err)
		case <-conn.Dead():
			return fail(reasonOf(conn, subErr))
		case <-t.C:
			return fail(fmt.Errorf("broker sent an ERROR while subscribing and did not close within %s", subscribeTimeout))
		case <-ctx.Done():
			return fail(ctx.Err())
		}
	case err := <-subErr:
		return fail(err)
	case <-conn.Dead():
		return fail(reasonOf(conn, subErr))
	case <-t.C:
		return fail(fmt.Errorf("broker did not confirm the subscriptions within %s", subscribeTimeout))
	case <-ctx.Done():
		return fail(ctx.Err())
	}
}

// take returns what takes the MESSAGE frames of connection gen's
// subscriptions out of the stream go-stomp reads (stompframe.Demux), on
// the goroutine reading the connection, and queues them for the source:
// one parse, no hand-offs between go-stomp's goroutines (see package
// stompframe). A frame for no subscription of the session's is left to
// go-stomp.
func (ss *session) take(gen uint64) func(*stompframe.Frame) bool {
	return func(f *stompframe.Frame) bool {
		i, ok := subIndex(f.Header.Get(frame.Subscription))
		if !ok || i >= len(ss.cfg.Subscriptions) {
			return false
		}
		ss.src.q.push(&received{ss: ss, gen: gen, sub: &ss.cfg.Subscriptions[i], hdr: f.Header, body: f.Body,
			when: time.Now()})
		return true
	}
}

// subID is the id of subscription i of a connection.
func subID(i int) string { return "sub-" + strconv.Itoa(i) }

// subIndex is the inverse of subID.
func subIndex(id string) (int, bool) {
	n, ok := strings.CutPrefix(id, "sub-")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(n)
	return i, err == nil && i >= 0 && subID(i) == id
}

// pump moves a subscription's messages that go-stomp delivers (those the
// wire left to it: larger than stompframe.DefaultMaxTake, or after a frame
// it does not parse) to the source's queue at once, so that go-stomp never
// stops reading the connection; and reports the subscription's errors.
func (ss *session) pump(gs *gostomp.Subscription, gen uint64, sub *Subscription, subErr chan<- error) {
	for msg := range gs.C {
		if msg.Err != nil {
			select {
			case subErr <- fmt.Errorf("subscription %s: %w", sub.Destination, brokerError(msg.Err)):
			default:
			}
			continue
		}
		hdr := make(stompframe.Header, 0, 2*msg.Header.Len())
		for i := range msg.Header.Len() {
			k, v := msg.Header.GetAt(i)
			hdr = append(hdr, k, v)
		}
		ss.src.q.push(&received{ss: ss, gen: gen, sub: sub, hdr: hdr, body: msg.Body, when: time.Now()})
	}
	select {
	case subErr <- fmt.Errorf("subscription %s closed", sub.Destination):
	default:
	}
}

// watch waits until the connection fails or ctx ends, and returns why it
// failed.
func (ss *session) watch(ctx context.Context, conn *Conn, subErr <-chan error) error {
	hb := ss.cfg.Heartbeat
	if hb == 0 {
		hb = DefaultHeartbeat
	}
	var tick <-chan time.Time
	if hb > 0 {
		t := time.NewTicker(hb)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-subErr:
			return err
		case <-conn.Dead():
			return reasonOf(conn, subErr)
		case <-tick:
			// go-stomp closes a connection whose heart-beats stop; this
			// catches the case where its goroutines are stuck instead.
			if idle := conn.wire.idle(); idle > 3*hb+5*time.Second {
				return fmt.Errorf("no data from the broker for %s (heart-beats missing)", idle.Round(time.Second))
			}
		}
	}
}

// reasonOf prefers the broker's ERROR frame (delivered to the
// subscriptions) over the bare transport error.
func reasonOf(conn *Conn, subErr <-chan error) error {
	select {
	case err := <-subErr:
		return err
	case <-time.After(100 * time.Millisecond):
	}
	err := conn.wire.err()
	if errors.Is(err, errClosedByUs) {
		return err
	}
	return fmt.Errorf("connection lost: %w", err)
}

// shutdown closes the live connection gracefully.
func (ss *session) shutdown() {
	ss.mu.Lock()
	c := ss.conn
	ss.conn = nil
	ss.gen++
	ss.mu.Unlock()
	ss.ready.Store(false)
	if c != nil {
		if err := c.Disconnect(5 * time.Second); err != nil {
			ss.log.Debug("disconnect", "error", err)
		}
		ss.log.Info("disconnected from broker")
	}
}
