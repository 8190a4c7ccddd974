package stomp

import (
	"context"
	"fmt"
	"strings"
	"sync"

	gostomp "github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"
)

// settler settles one message on the connection that delivered it.
type settler struct {
	src  *Source
	r    *received
	id   string
	once sync.Once
}

// release marks the message settled for the source's bookkeeping.
func (st *settler) release() {
	st.once.Do(func() { st.src.released(st.id) })
}

// Ack implements runner.Settler.
func (st *settler) Ack(ctx context.Context) error {
	defer st.release()
	c, err := st.r.ss.connFor(st.r.gen)
	if err != nil {
		return err
	}
	if err := c.Ack(st.r.msg); err != nil {
		return fmt.Errorf("ack: %w", err)
	}
	return nil
}

// Requeue implements runner.Settler. While the source runs the message is
// NACKed (RabbitMQ requeues it); once the source is stopping it is left
// unacknowledged, and the broker requeues it when the connection closes
// (a NACK then would bring it straight back to this consumer).
func (st *settler) Requeue(ctx context.Context) error {
	defer st.release()
	st.src.mu.Lock()
	stopping := st.src.stopping
	st.src.mu.Unlock()
	if stopping {
		return nil
	}
	c, err := st.r.ss.connFor(st.r.gen)
	if err != nil {
		return err
	}
	if err := c.Nack(st.r.msg); err != nil {
		return fmt.Errorf("nack: %w", err)
	}
	return nil
}

// DeadLetter implements runner.Settler; see the package documentation.
func (st *settler) DeadLetter(ctx context.Context, reason string) error {
	defer st.release()
	c, err := st.r.ss.connFor(st.r.gen)
	if err != nil {
		return err
	}
	msg := st.r.msg
	if dl := st.src.cfg.DeadLetter; dl != "" {
		if err := st.sendDeadLetter(ctx, c, dl, reason); err != nil {
			return err
		}
		if err := c.Ack(msg); err != nil {
			return fmt.Errorf("ack after dead-lettering to %s: %w", dl, err)
		}
		return nil
	}
	ackID := msg.Header.Get(frame.Ack)
	c.wire.addHeader("NACK", ackID, "requeue", "false")
	if err := c.Nack(msg); err != nil {
		c.wire.forget("NACK", ackID)
		return fmt.Errorf("nack (requeue:false): %w", err)
	}
	return nil
}

// skipHeaders are MESSAGE headers that describe the delivery, not the
// message, and are not copied to a dead-letter SEND.
var skipHeaders = map[string]bool{
	frame.MessageId: true, frame.Subscription: true, frame.Ack: true, frame.Destination: true,
	frame.ContentLength: true, frame.ContentType: true, frame.Receipt: true, "redelivered": true,
}

// maxReasonLen bounds the x-eventfn-error header.
const maxReasonLen = 2000

func (st *settler) sendDeadLetter(ctx context.Context, c *Conn, dest, reason string) error {
	msg := st.r.msg
	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen] + "…"
	}
	opts := []func(*frame.Frame) error{gostomp.SendOpt.Receipt}
	for i := range msg.Header.Len() {
		k, v := msg.Header.GetAt(i)
		if !skipHeaders[k] && !strings.HasPrefix(k, "x-eventfn-") {
			opts = append(opts, gostomp.SendOpt.Header(k, v))
		}
	}
	opts = append(opts,
		gostomp.SendOpt.Header("x-eventfn-error", reason),
		gostomp.SendOpt.Header("x-eventfn-source", st.src.cfg.Name),
		gostomp.SendOpt.Header("x-eventfn-original-destination", st.r.sub.Destination),
	)
	if _, ok := msg.Header.Contains("persistent"); !ok {
		opts = append(opts, gostomp.SendOpt.Header("persistent", "true"))
	}
	done := make(chan error, 1)
	go func() { done <- c.Send(dest, msg.ContentType, msg.Body, opts...) }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("dead-letter to %s: %w", dest, brokerError(err))
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("dead-letter to %s: no receipt: %w", dest, ctx.Err())
	}
}
