package mqtt

import (
	"context"
	"fmt"

	"github.com/eventfn/eventfn/runner"
)

// delivery is one message handed to the runner, with the redeliveries of it
// that arrived while the runner held it. It implements runner.Settler.
type delivery struct {
	s   *Source
	key string
	// copies and settled are guarded by s.mu.
	copies  []inbound
	settled bool
}

// take marks d settled and returns its copies; ok is false when it was
// settled before. The caller must call done once the copies are
// acknowledged (or left).
func (d *delivery) take() (copies []inbound, ok bool) {
	s := d.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if d.settled {
		return nil, false
	}
	d.settled = true
	if s.leaders[d.key] == d {
		delete(s.leaders, d.key)
	}
	return d.copies, true
}

// done counts d out of the messages the runner holds.
func (d *delivery) done() { d.s.pending.Done() }

// finish settles d without acknowledging anything.
func (d *delivery) finish() {
	if _, ok := d.take(); ok {
		d.done()
	}
}

// live returns the copies that came on the current connection, if it is
// up: only their acknowledgements can reach the broker.
func (d *delivery) live(copies []inbound) []inbound {
	if !d.s.connectionOpen() {
		return nil
	}
	gen := d.s.gen.Load()
	var out []inbound
	for _, c := range copies {
		if c.gen == gen {
			out = append(out, c)
		}
	}
	return out
}

// Ack implements runner.Settler: PUBACK for every copy on the current
// connection, sent by the acker (queueAck).
func (d *delivery) Ack(ctx context.Context) error {
	copies, ok := d.take()
	if !ok {
		return nil
	}
	live := d.live(copies)
	if len(live) == 0 {
		d.done()
		return errConnGone
	}
	return d.s.queueAck(ctx, d, live)
}

// Requeue implements runner.Settler. MQTT has no negative acknowledgement:
// the message is left unacknowledged and the broker sends it again after
// the next reconnect.
func (d *delivery) Requeue(context.Context) error {
	copies, ok := d.take()
	if !ok {
		return nil
	}
	defer d.done()
	if !d.s.stopping.Load() {
		d.s.log.Warn("mqtt cannot requeue: the message stays unacknowledged until the next reconnect",
			"topic", copies[0].msg.Topic(), "id", d.key)
	}
	return nil
}

// DeadLetter implements runner.Settler: it publishes the payload to the
// dead-letter topic (QoS 1, waiting for the broker's PUBACK), then
// acknowledges the message. The reason is not sent: MQTT 3.1.1 has no
// headers.
func (d *delivery) DeadLetter(ctx context.Context, _ string) error {
	copies, ok := d.take()
	if !ok {
		return nil
	}
	live := d.live(copies)
	if len(live) == 0 {
		// Not published: the message comes again and is decided again,
		// rather than landing twice in the dead-letter topic.
		d.done()
		return errConnGone
	}
	d.s.mu.Lock()
	c := d.s.client
	d.s.mu.Unlock()
	topic := d.s.cfg.DeadLetter
	if err := WaitToken(ctx, c.Publish(topic, 1, false, live[0].msg.Payload())); err != nil {
		d.done()
		return fmt.Errorf("publishing to dead-letter topic %q: %w", topic, err)
	}
	return d.s.queueAck(ctx, d, live)
}

// ackQueue bounds the acknowledgements waiting for the acker.
const ackQueue = 1024

// ackJob is the copies of one delivery to acknowledge.
type ackJob struct {
	d      *delivery
	copies []inbound
}

// queueAck hands copies to the acker, which acknowledges them and then
// counts d done. paho's Ack blocks until its writer takes the PUBACK (and
// while its outgoing queue is full: a stalled connection), so it runs in
// one goroutine of the source's rather than the runner's, or one per
// message; the queue is waited on, bounded by runner.SettleTimeout, only
// when full. The PUBACK is then on its way, as a STOMP ACK is once queued
// for go-stomp's writer; drain waits for the acker's queue too (d counts
// as pending until it is sent).
func (s *Source) queueAck(ctx context.Context, d *delivery, copies []inbound) error {
	job := ackJob{d: d, copies: copies}
	select {
	case s.acks <- job:
		return nil
	default:
	}
	ctx, cancel := context.WithTimeout(ctx, runner.SettleTimeout)
	defer cancel()
	select {
	case s.acks <- job:
		return nil
	case <-ctx.Done():
		d.done()
		return fmt.Errorf("acknowledging: %w", ctx.Err())
	}
}

// acker sends the queued acknowledgements, in order, until stop is closed
// (after the connection's last acknowledgements were flushed).
func (s *Source) acker(stop <-chan struct{}) {
	for {
		select {
		case job := <-s.acks:
			for _, c := range job.copies {
				c.msg.Ack()
			}
			job.d.done()
		case <-stop:
			return
		}
	}
}
