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
	if err := st.ack(c, "ACK"); err != nil {
		return fmt.Errorf("ack: %w", err)
	}
	return nil
}

// ack writes the ACK or NACK of the message (with extra headers) on c, as
// go-stomp would (its id header is the MESSAGE's ack header), but directly
// on the wire: no hand-off to go-stomp's writer goroutine per message.
func (st *settler) ack(c *Conn, command string, extra ...string) error {
	id, ok := st.r.hdr.Lookup(frame.Ack)
	if !ok {
		return fmt.Errorf("the MESSAGE has no %s header", frame.Ack)
	}
	return c.wire.writeFrame(command, append([]string{frame.Id, id}, extra...)...)
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
	if err := st.ack(c, "NACK"); err != nil {
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
	if dl := st.src.cfg.DeadLetter; dl != "" {
		if err := st.sendDeadLetter(ctx, c, dl, reason); err != nil {
			return err
		}
		if err := st.ack(c, "ACK"); err != nil {
			return fmt.Errorf("ack after dead-lettering to %s: %w", dl, err)
		}
		return nil
	}
	if err := st.ack(c, "NACK", "requeue", "false"); err != nil {
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
	h := st.r.hdr
	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen] + "…"
	}
	opts := []func(*frame.Frame) error{gostomp.SendOpt.Receipt}
	for i := range h.Len() {
		k, v := h.At(i)
		if !skipHeaders[k] && !strings.HasPrefix(k, "x-eventfn-") {
			opts = append(opts, gostomp.SendOpt.Header(k, v))
		}
	}
	opts = append(opts,
		gostomp.SendOpt.Header("x-eventfn-error", reason),
		gostomp.SendOpt.Header("x-eventfn-source", st.src.cfg.Name),
		gostomp.SendOpt.Header("x-eventfn-original-destination", st.r.sub.Destination),
	)
	if _, ok := h.Lookup("persistent"); !ok {
		opts = append(opts, gostomp.SendOpt.Header("persistent", "true"))
	}
	done := make(chan error, 1)
	go func() { done <- c.Send(dest, h.Get(frame.ContentType), st.r.body, opts...) }()
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
