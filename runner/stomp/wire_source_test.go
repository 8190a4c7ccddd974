package stomp_test

import (
	"fmt"
	"testing"
	"time"

	gostomp "github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"

	"github.com/eventfn/eventfn/internal/brokertest"
	"github.com/eventfn/eventfn/runner"
	"github.com/eventfn/eventfn/waldur"
)

// publishMany sends n order events, {"n": i}, to queue over one go-stomp
// connection with Waldur's headers (brokertest.Publish opens a connection
// per message: too slow for a backlog). The last SEND asks for a receipt,
// so the broker has them all when it returns.
func publishMany(t *testing.T, vhost, queue string, n int) {
	t.Helper()
	c, err := gostomp.Dial("tcp", brokertest.STOMPAddr, gostomp.ConnOpt.Host(vhost),
		gostomp.ConnOpt.Login(brokertest.AdminUser, brokertest.AdminPass), gostomp.ConnOpt.HeartBeat(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.MustDisconnect() }()
	dest := waldur.Destination(queue)
	for i := range n {
		body := payload(t, map[string]any{"n": i})
		opts := []func(*frame.Frame) error{
			gostomp.SendOpt.Header("persistent", "true"),
			gostomp.SendOpt.Header("x-message-id", waldur.MessageID(vhost, dest, body)),
		}
		if i == n-1 {
			opts = append(opts, gostomp.SendOpt.Receipt)
		}
		if err := c.Send(dest, "application/json", body, opts...); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
}

// TestManyMessagesAllAcked: a backlog consumed through the source with a
// full prefetch window, so that ACKs queue behind one another and leave
// coalesced, ends acknowledged: every message is handled once, and the
// queue is empty once the source has disconnected (an ACK lost would have
// the broker requeue its message).
func TestManyMessagesAllAcked(t *testing.T) {
	const n = 1000
	for _, tc := range []struct{ name, url string }{{"stomp", tcpURL()}, {"stomp+ws", wsURL()}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSite(t, waldur.TypeOrder)
			q := s.queues[waldur.TypeOrder]
			logger, _ := newLogger(t)
			rec := newRecorder()
			reg := registry(logger, rec)
			rs := parseRules(t, reg, "version: 1\nrules:\n  - {name: r, on: order, steps: [{record: '{{ payload.n }}'}]}\n")
			publishMany(t, s.vhost, q, n)
			spec := s.spec(tc.url)
			spec.Prefetch = 100
			m := runner.NewMetrics()
			src, err := fromSpec(spec, s.deps(logger, m))
			if err != nil {
				t.Fatal(err)
			}
			rr := startRunner(t, runner.Config{Rules: rs, Actions: reg, Sources: []runner.Source{src},
				Logger: logger, Metrics: m, Concurrency: 8})
			rec.waitN(t, n, 60*time.Second)
			rr.settled(t, "broker", "acked", n, 30*time.Second)
			rr.stop(t)
			counts := rec.counts()
			for i := range n {
				if c := counts[fmt.Sprint(i)]; c != 1 {
					t.Errorf("message %d handled %d times", i, c)
				}
			}
			// rabbitmqctl's counts are exact; the broker may still be
			// taking the closed connection's messages back.
			brokertest.WaitFor(t, 30*time.Second, "an empty queue", func() bool {
				ready, unacked := s.b.Depth(s.vhost, q)
				return ready == 0 && unacked == 0
			})
		})
	}
}
