package stomp

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	gostomp "github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"

	"github.com/eventfn/eventfn/internal/brokertest"
	"github.com/eventfn/eventfn/internal/coalesce/coalescetest"
	"github.com/eventfn/eventfn/waldur"
)

// brokerEndpoints are the loopback RabbitMQ's STOMP and Web-STOMP.
func brokerEndpoints(t *testing.T) map[string]Endpoint {
	t.Helper()
	out := map[string]Endpoint{}
	for name, u := range map[string]string{
		"stomp":    "stomp://" + brokertest.STOMPAddr,
		"stomp+ws": "stomp+ws://" + brokertest.WebSTOMPAddr + "/ws",
	} {
		e, err := ParseURL(u)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = e
	}
	return out
}

func dialAdmin(t *testing.T, e Endpoint, vhost string) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Dial(ctx, DialOptions{Endpoint: e, VHost: vhost,
		Login: brokertest.AdminUser, Passcode: brokertest.AdminPass})
	if err != nil {
		t.Fatal(err)
	}
	if !c.wire.coalesced() {
		t.Fatalf("writes over %s are not coalesced", e)
	}
	return c
}

// TestCoalescedAcksOverTheBroker: several ACK frames in one transport
// Write (over Web-STOMP: one WebSocket message) are each applied by
// RabbitMQ. The frames are one wire Write, and the flusher hands what is
// pending to the transport in one Write, so they cannot be split. The
// last ACK asks for a receipt, read by the wire; DISCONNECT then goes out
// through the flusher and its receipt comes back.
func TestCoalescedAcksOverTheBroker(t *testing.T) {
	const n = 20
	for name, e := range brokerEndpoints(t) {
		t.Run(name, func(t *testing.T) {
			b := brokertest.New(t)
			vhost := b.VHost(brokertest.Unique("eventfn-test-"))
			q := brokertest.Unique("wire-")
			b.Queue(vhost, q, nil)
			for i := range n {
				b.Publish(vhost, q, fmt.Appendf(nil, `{"n":%d}`, i))
			}
			c := dialAdmin(t, e, vhost)
			defer func() { _ = c.Close() }()
			sub, err := c.Subscribe(waldur.Destination(q), gostomp.AckClientIndividual,
				gostomp.SubscribeOpt.Header("prefetch-count", "100"))
			if err != nil {
				t.Fatal(err)
			}
			var acks strings.Builder
			token := brokertest.Unique("acked-")
			for i := range n {
				var msg *gostomp.Message
				select {
				case msg = <-sub.C:
				case <-time.After(coalescetest.Guard):
					t.Fatalf("received %d of %d messages", i, n)
				}
				if msg.Err != nil {
					t.Fatal(msg.Err)
				}
				acks.WriteString("ACK\nid:" + escapeHeader(msg.Header.Get(frame.Ack)) + "\n")
				if i == n-1 {
					acks.WriteString("receipt:" + token + "\n")
				}
				acks.WriteString("\n\x00")
			}
			receipted := c.wire.expect(token)
			if _, err := c.wire.Write([]byte(acks.String())); err != nil {
				t.Fatal(err)
			}
			select {
			case <-receipted:
			case <-c.Dead():
				t.Fatalf("the broker closed the connection: %v", c.wire.err())
			case <-time.After(coalescetest.Guard):
				t.Fatal("no receipt for the ACKs")
			}
			if err := c.Disconnect(coalescetest.Guard); err != nil {
				t.Fatalf("Disconnect: %v", err)
			}
			select {
			case <-c.wire.flushed():
			case <-time.After(coalescetest.Guard):
				t.Fatal("the flusher goroutine did not return after Disconnect")
			}
			// An ACK not applied would be requeued by the disconnection.
			brokertest.WaitFor(t, 30*time.Second, "an empty queue", func() bool {
				ready, unacked := b.Depth(vhost, q)
				return ready == 0 && unacked == 0
			})
		})
	}
}

// TestWireFlusherStopsOnClose: dropping a connection stops its flusher.
func TestWireFlusherStopsOnClose(t *testing.T) {
	for name, e := range brokerEndpoints(t) {
		t.Run(name, func(t *testing.T) {
			c := dialAdmin(t, e, "/")
			if err := c.Close(); err != nil {
				t.Logf("Close: %v", err)
			}
			select {
			case <-c.wire.flushed():
			case <-time.After(coalescetest.Guard):
				t.Fatal("the flusher goroutine did not return after Close")
			}
		})
	}
}
