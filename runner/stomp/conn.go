package stomp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	gostomp "github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"

	"github.com/eventfn/eventfn/internal/stompframe"
)

// DefaultHeartbeat is the STOMP heart-beat interval, both ways. Without
// heart-beats RabbitMQ behind Waldur's ingress drops idle connections.
const DefaultHeartbeat = 10 * time.Second

// DialOptions say how to open one STOMP connection.
type DialOptions struct {
	Endpoint Endpoint
	// TLS is used by stomp+ssl and stomp+wss (nil: system roots, the
	// URL's host verified).
	TLS *tls.Config
	// VHost is sent as the CONNECT host header (RabbitMQ's virtual host);
	// empty means "/".
	VHost string
	// Login and Passcode authenticate; Passcode is never logged.
	Login, Passcode string
	// Heartbeat is the heart-beat interval both ways (0: DefaultHeartbeat,
	// negative: none).
	Heartbeat time.Duration
	// WriteQueue is the capacity of go-stomp's write queue (default 64).
	// A source sizes it so that settling every unacknowledged message at
	// once never blocks.
	WriteQueue int
	// ConnectTimeout bounds dialling and the CONNECT exchange (default 30s).
	ConnectTimeout time.Duration
	Logger         *slog.Logger
}

// Conn is an open STOMP connection.
type Conn struct {
	*gostomp.Conn
	wire *wire
}

// Close drops the connection at once, without DISCONNECT. It never blocks:
// closing the transport is what matters, and go-stomp's own shutdown may
// wait for a lock held by a stuck writer.
func (c *Conn) Close() error {
	err := c.wire.Close()
	go func() { _ = c.Conn.MustDisconnect() }()
	return err
}

// Dead is closed when the connection's transport has failed or was closed.
func (c *Conn) Dead() <-chan struct{} { return c.wire.dead }

// Disconnect closes the connection gracefully: DISCONNECT, then wait up to
// timeout for the broker's receipt; the transport is closed in any case.
func (c *Conn) Disconnect(timeout time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- c.Conn.Disconnect() }()
	var err error
	select {
	case err = <-done:
	case <-c.wire.dead:
	case <-time.After(timeout):
		err = errors.New("no receipt for DISCONNECT")
	}
	_ = c.wire.Close()
	return err
}

// BrokerError is an ERROR frame sent by the broker: refused credentials,
// a missing queue or vhost, a refused frame.
type BrokerError struct {
	// Message is the ERROR frame's message header ("Bad CONNECT",
	// "not_found", "access_refused", …).
	Message string
	// Detail is the frame's body, trimmed.
	Detail string
}

func (e *BrokerError) Error() string {
	if e.Detail == "" {
		return "broker sent ERROR: " + e.Message
	}
	return "broker sent ERROR: " + e.Message + ": " + e.Detail
}

// NotFound reports whether the broker said a queue (or other destination)
// does not exist.
func (e *BrokerError) NotFound() bool {
	s := strings.ToLower(e.Message + " " + e.Detail)
	return strings.Contains(s, "not_found") || strings.Contains(s, "not found")
}

// Missing names what the broker said does not exist, as "queue 'q' in
// vhost 'v'" (RabbitMQ's "NOT_FOUND - no queue 'q' in vhost 'v'"), or ""
// when it is not a not-found error or names nothing.
func (e *BrokerError) Missing() string {
	if !e.NotFound() {
		return ""
	}
	if m := noSuch.FindStringSubmatch(e.Detail); m != nil {
		return m[1]
	}
	return ""
}

var noSuch = regexp.MustCompile(`(?i)no (\S+ '[^']*'(?: in vhost '[^']*')?)`)

// AccessRefused reports whether the broker refused the login, passcode or
// virtual host. A missing queue is not (RabbitMQ's message for it names the
// vhost).
func (e *BrokerError) AccessRefused() bool {
	if e.NotFound() {
		return false
	}
	s := strings.ToLower(e.Message + " " + e.Detail)
	for _, w := range []string{"access refused", "access_refused", "login", "passcode", "credentials",
		"authentication", "virtual host", "vhost", "not authorised", "not authorized"} {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

// AsBrokerError returns err as a *BrokerError when it carries the broker's
// ERROR frame, else err unchanged.
func AsBrokerError(err error) error { return brokerError(err) }

// brokerError turns a go-stomp error carrying an ERROR frame into a
// *BrokerError; other errors are returned as they are.
func brokerError(err error) error {
	var f *frame.Frame
	var se gostomp.Error
	var sep *gostomp.Error
	switch {
	case errors.As(err, &se):
		f = se.Frame
	case errors.As(err, &sep):
		f = sep.Frame
	}
	if f == nil || f.Command != frame.ERROR {
		return err
	}
	if f.Header.Len() == 1 && len(f.Body) == 0 {
		// go-stomp's own stand-in for a failed connection, not the broker's
		return fmt.Errorf("connection lost (%s)", f.Header.Get(frame.Message))
	}
	return errorFromFrame(f)
}

func errorFromFrame(f *frame.Frame) *BrokerError {
	msg := f.Header.Get(frame.Message)
	if msg == "" {
		msg = "(no message)"
	}
	detail := strings.TrimSpace(string(f.Body))
	if len(detail) > 512 {
		detail = detail[:512] + "…"
	}
	return &BrokerError{Message: msg, Detail: detail}
}

// Dial opens the transport and performs the STOMP 1.2 CONNECT exchange.
// An ERROR frame in answer (wrong credentials, unknown vhost) comes back as
// a *BrokerError.
func Dial(ctx context.Context, o DialOptions) (*Conn, error) {
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	hb := o.Heartbeat
	if hb == 0 {
		hb = DefaultHeartbeat
	}
	if hb < 0 {
		hb = 0
	}
	wq := o.WriteQueue
	if wq <= 0 {
		wq = 64
	}
	vhost := o.VHost
	if vhost == "" {
		vhost = "/"
	}
	ctx, cancel := context.WithTimeout(ctx, o.ConnectTimeout)
	defer cancel()
	raw, err := dialTransport(ctx, o.Endpoint, o.TLS)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", o.Endpoint, err)
	}
	w := newWire(raw)
	if hb > 0 {
		// go-stomp hears nothing of the MESSAGEs the wire takes: a
		// heart-beat in their place, four times per interval at least.
		w.demux.SetKeepAlive(min(stompframe.KeepAlive, hb/4))
	}
	// Closing the transport when ctx ends unblocks a stalled CONNECT.
	stop := context.AfterFunc(ctx, func() { _ = w.Close() })
	opts := []func(*gostomp.Conn) error{
		gostomp.ConnOpt.Host(vhost),
		gostomp.ConnOpt.AcceptVersion(gostomp.V12),
		gostomp.ConnOpt.HeartBeat(hb, hb),
		gostomp.ConnOpt.WriteChannelCapacity(wq),
		gostomp.ConnOpt.ReadChannelCapacity(64),
		// Generous: a late receipt must still find its waiter.
		gostomp.ConnOpt.RcvReceiptTimeout(2 * time.Minute),
		gostomp.ConnOpt.DisconnectReceiptTimeout(5 * time.Second),
		gostomp.ConnOpt.Logger(slogAdapter{o.Logger.With("endpoint", o.Endpoint.String())}),
	}
	if o.Login != "" || o.Passcode != "" {
		opts = append(opts, gostomp.ConnOpt.Login(o.Login, o.Passcode))
	}
	c, err := gostomp.ConnectWithContext(ctx, w, opts...)
	if !stop() || err != nil {
		_ = w.Close()
		if err == nil {
			err = ctx.Err()
		}
		err = brokerError(err)
		if ctx.Err() != nil && !isBrokerError(err) {
			err = fmt.Errorf("%w (%v)", err, context.Cause(ctx))
		}
		return nil, fmt.Errorf("connect to %s (vhost %q, login %q): %w", o.Endpoint, vhost, o.Login, err)
	}
	if c.Version() != gostomp.V12 {
		_ = c.MustDisconnect()
		return nil, fmt.Errorf("connect to %s: broker speaks STOMP %s, want 1.2", o.Endpoint, c.Version())
	}
	return &Conn{Conn: c, wire: w}, nil
}

func isBrokerError(err error) bool {
	var be *BrokerError
	return errors.As(err, &be)
}

// slogAdapter routes go-stomp's logging to slog, at debug level for its
// chatter: eventfn logs what matters itself.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Debugf(f string, v ...any)   { a.l.Debug("go-stomp: " + fmt.Sprintf(f, v...)) }
func (a slogAdapter) Infof(f string, v ...any)    { a.l.Debug("go-stomp: " + fmt.Sprintf(f, v...)) }
func (a slogAdapter) Warningf(f string, v ...any) { a.l.Debug("go-stomp: " + fmt.Sprintf(f, v...)) }
func (a slogAdapter) Errorf(f string, v ...any)   { a.l.Debug("go-stomp: " + fmt.Sprintf(f, v...)) }
func (a slogAdapter) Debug(m string)              { a.l.Debug("go-stomp: " + m) }
func (a slogAdapter) Info(m string)               { a.l.Debug("go-stomp: " + m) }
func (a slogAdapter) Warning(m string)            { a.l.Debug("go-stomp: " + m) }
func (a slogAdapter) Error(m string)              { a.l.Debug("go-stomp: " + m) }
