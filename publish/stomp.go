package publish

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	gostomp "github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"

	"github.com/eventfn/eventfn/runner/stomp"
)

// stompPublisher publishes over one STOMP connection.
type stompPublisher struct {
	c     *stomp.Conn
	every int
	n     int
}

// DialSTOMP opens a STOMP publisher (stomp://, stomp+ssl://, stomp+ws://,
// stomp+wss://). Heart-beats are off: a publisher only writes.
func DialSTOMP(ctx context.Context, o Options) (Publisher, error) {
	e, err := stomp.ParseURL(o.URL)
	if err != nil {
		return nil, err
	}
	vhost := o.VHost
	if vhost == "" {
		vhost = e.VHost
	}
	login := o.Login
	if login == "" {
		login = e.Login
	}
	d := stomp.DialOptions{Endpoint: e, VHost: vhost, Login: login, Passcode: o.Passcode, Heartbeat: -1, Logger: o.Logger}
	if e.Secure() {
		conf, err := stomp.TLSOptions{CAFile: o.CAFile, CertFile: o.CertFile, KeyFile: o.KeyFile,
			ServerName: o.ServerName, InsecureSkipVerify: o.InsecureSkipVerify}.Config(e.Host())
		if err != nil {
			return nil, err
		}
		d.TLS = conf
	}
	c, err := stomp.Dial(ctx, d)
	if err != nil {
		return nil, err
	}
	return &stompPublisher{c: c, every: max(o.ConfirmEvery, 1)}, nil
}

// Publish implements Publisher: SEND, with a receipt (RabbitMQ confirms the
// message) every ConfirmEvery messages.
func (p *stompPublisher) Publish(ctx context.Context, m Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.n++
	opts := make([]func(*frame.Frame) error, 0, len(m.Headers)+1)
	contentType := ""
	for k, v := range m.Headers {
		if strings.EqualFold(k, frame.ContentType) {
			contentType = v
			continue
		}
		opts = append(opts, gostomp.SendOpt.Header(k, v))
	}
	if p.n%p.every == 0 {
		opts = append(opts, gostomp.SendOpt.Receipt)
	}
	// go-stomp can wait for a receipt until its own timeout (2 minutes)
	// after the broker closed the connection (when the ERROR frame comes in
	// while the SEND is still queued), so the wait ends with ctx or with
	// the transport too.
	done := make(chan error, 1)
	go func() { done <- p.c.Send(m.Destination, contentType, m.Body, opts...) }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("send: %w", stomp.AsBrokerError(err))
		}
		return nil
	case <-p.c.Dead():
		select {
		case err := <-done: // the send may have completed just before
			if err == nil {
				return nil
			}
		default:
		}
		_ = p.c.Close()
		return errors.New("send: the connection was closed before the broker confirmed the message")
	case <-ctx.Done():
		_ = p.c.Close()
		return fmt.Errorf("send: %w", ctx.Err())
	}
}

// Close implements Publisher: DISCONNECT and wait for its receipt, which
// the broker sends after every earlier frame.
func (p *stompPublisher) Close() error {
	return p.c.Disconnect(30 * time.Second)
}
