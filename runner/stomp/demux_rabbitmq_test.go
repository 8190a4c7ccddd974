package stomp_test

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eventfn/eventfn/event"
	"github.com/eventfn/eventfn/internal/stompframe"
	"github.com/eventfn/eventfn/runner"
	"github.com/eventfn/eventfn/waldur"
)

// TestHeartbeatsKeepABusyConnection: while every frame from the broker is
// a MESSAGE the wire takes (go-stomp reads none of them, nor the LF
// RabbitMQ ends each with, and RabbitMQ sends no heart-beats on a
// connection it is sending on), go-stomp's heart-beat timeout (RabbitMQ
// raises 300ms to 1s, go-stomp adds 5s) still never fires: the wire gives
// it heart-beats in their place. Messages arrive every 20ms for 6.6s, over
// TCP and WebSocket; none is lost and the connection stays up.
func TestHeartbeatsKeepABusyConnection(t *testing.T) {
	for _, tc := range []struct{ name, url string }{{"stomp", tcpURL()}, {"stomp+ws", wsURL()}} {
		t.Run(tc.name, func(t *testing.T) {
			s, rec, stayedUp := heartbeatSite(t, tc.url, 300*time.Millisecond)
			const n = 330
			for i := range n {
				s.b.Publish(s.vhost, s.queues[waldur.TypeOrder], payload(t, map[string]any{"n": i}))
				time.Sleep(20 * time.Millisecond) // the publishing rate under test, not synchronisation
			}
			got := rec.waitN(t, n, 20*time.Second)
			slices.SortFunc(got, func(a, b string) int { x, _ := strconv.Atoi(a); y, _ := strconv.Atoi(b); return x - y })
			for i, v := range got {
				if v != strconv.Itoa(i) {
					t.Fatalf("message %d recorded as %q: %v", i, v, got)
				}
			}
			stayedUp()
		})
	}
}

// TestLargeMessagesGoThroughGoStomp: a MESSAGE larger than the wire takes
// (stompframe.DefaultMaxTake) is read by go-stomp as before, acknowledged
// like the others, and the wire takes the next ones again. The queue is
// empty at the end: every message, large or not, was acknowledged.
func TestLargeMessagesGoThroughGoStomp(t *testing.T) {
	for _, tc := range []struct{ name, url string }{{"stomp", tcpURL()}, {"stomp+ws", wsURL()}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSite(t, waldur.TypeOrder)
			q := s.queues[waldur.TypeOrder]
			logger, _ := newLogger(t)
			rec := newRecorder()
			reg := registry(logger, rec)
			rs := parseRules(t, reg, "version: 1\nrules:\n  - {name: r, on: order, steps: [{record: '{{ payload.n }}-{{ len(payload.pad) }}'}]}\n")
			big := strings.Repeat("x", stompframe.DefaultMaxTake+1000)
			for i, pad := range []string{"small", big, "small", big} {
				s.b.Publish(s.vhost, q, payload(t, map[string]any{"n": i, "pad": pad}))
			}
			m := runner.NewMetrics()
			src, err := fromSpec(s.spec(tc.url), s.deps(logger, m))
			if err != nil {
				t.Fatal(err)
			}
			rr := startRunner(t, runner.Config{Rules: rs, Actions: reg, Sources: []runner.Source{src}, Logger: logger, Metrics: m,
				Limits: event.Limits{MaxBytes: 2 * stompframe.DefaultMaxTake}})
			got := rec.waitN(t, 4, 30*time.Second)
			slices.Sort(got)
			want := []string{"0-5", fmt.Sprintf("1-%d", len(big)), "2-5", fmt.Sprintf("3-%d", len(big))}
			if !slices.Equal(got, want) {
				t.Fatalf("recorded %v, want %v", got, want)
			}
			rr.settled(t, "broker", runner.FateAcked, 4, 10*time.Second)
			for deadline := time.Now().Add(15 * time.Second); ; {
				ready, unacked := s.b.Depth(s.vhost, q)
				if ready == 0 && unacked == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("queue holds %d ready, %d unacknowledged: not every message was acknowledged", ready, unacked)
				}
				time.Sleep(250 * time.Millisecond) // polling the broker's sampled statistics
			}
		})
	}
}
