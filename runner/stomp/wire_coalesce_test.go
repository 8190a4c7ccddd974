package stomp

import (
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eventfn/eventfn/internal/coalesce/coalescetest"
)

// noMoreWrites checks that the wire's flusher has returned and wrote
// nothing more.
func noMoreWrites(t *testing.T, w *wire, c *coalescetest.StallConn) {
	t.Helper()
	c.NoMoreWrites(t, w.flushed())
}

func mustWrite(t *testing.T, w *wire, frames ...string) {
	t.Helper()
	for _, f := range frames {
		if n, err := w.Write([]byte(f)); err != nil || n != len(f) {
			t.Fatalf("Write(%q) = %d, %v", f, n, err)
		}
	}
}

func waitDead(t *testing.T, w *wire) error {
	t.Helper()
	select {
	case <-w.dead:
		return w.err()
	case <-time.After(coalescetest.Guard):
		t.Fatal("the wire is not dead")
		return nil
	}
}

// TestWireCoalescesWhileAWriteIsInProgress: the frames written while the
// transport is busy leave together in the next transport Write, in order
// and byte for byte, headers added as without coalescing; once the flusher
// is idle a frame leaves on its own.
func TestWireCoalescesWhileAWriteIsInProgress(t *testing.T) {
	c := coalescetest.NewStallConn()
	w := newWireMode(c, true)
	defer func() { _ = w.Close() }()
	addRewrites(w)

	mustWrite(t, w, connectFrame)
	if got := c.NextWrite(t); got != connectFrame {
		t.Fatalf("first transport Write %q, want %q", got, connectFrame)
	}
	// The transport is now busy with CONNECT.
	const ack8 = "ACK\nid:T_1@@s@@8\n\n\x00"
	mustWrite(t, w, append(slices.Clone(rewriteIn), ack8)...)
	c.Results <- nil
	want := strings.Join(rewriteOut, "") + ack8
	if got := c.NextWrite(t); got != want {
		t.Fatalf("second transport Write\n%q\nwant\n%q", got, want)
	}
	c.Results <- nil

	ack := "ACK\nid:T_1@@s@@9\n\n\x00"
	mustWrite(t, w, ack)
	if got := c.NextWrite(t); got != ack {
		t.Fatalf("transport Write on an idle wire %q, want %q", got, ack)
	}
	c.Results <- nil
}

// TestWireCloseStopsTheFlusher: Close writes nothing more (what is pending
// is dropped), stops the flusher goroutine, and later Writes fail.
func TestWireCloseStopsTheFlusher(t *testing.T) {
	c := coalescetest.NewStallConn()
	w := newWireMode(c, true)
	mustWrite(t, w, "ACK\nid:1\n\n\x00")
	c.NextWrite(t)
	mustWrite(t, w, "ACK\nid:2\n\n\x00") // pending behind the busy transport
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	noMoreWrites(t, w, c)
	if _, err := w.Write([]byte("ACK\nid:3\n\n\x00")); !errors.Is(err, errClosedByUs) {
		t.Errorf("Write after Close: %v, want %v", err, errClosedByUs)
	}
	if err := waitDead(t, w); !errors.Is(err, errClosedByUs) {
		t.Errorf("dead with %v, want %v", err, errClosedByUs)
	}

	// An idle flusher stops too.
	c = coalescetest.NewStallConn()
	w = newWireMode(c, true)
	_ = w.Close()
	noMoreWrites(t, w, c)
}

// TestWireWriteErrorKills: a failed transport Write kills the wire with its
// error, closes the transport (go-stomp's reader fails at once), stops the
// flusher, and every later Write returns the error.
func TestWireWriteErrorKills(t *testing.T) {
	boom := errors.New("connection reset")
	c := coalescetest.NewStallConn()
	w := newWireMode(c, true)
	defer func() { _ = w.Close() }()
	mustWrite(t, w, "ACK\nid:1\n\n\x00")
	c.NextWrite(t)
	mustWrite(t, w, "ACK\nid:2\n\n\x00")
	c.Results <- boom
	if err := waitDead(t, w); !errors.Is(err, boom) {
		t.Errorf("dead with %v, want %v", err, boom)
	}
	noMoreWrites(t, w, c)
	select {
	case <-c.Closed:
	default:
		t.Error("the transport was not closed after a write error")
	}
	for range 2 {
		if _, err := w.Write([]byte("ACK\nid:3\n\n\x00")); !errors.Is(err, boom) {
			t.Errorf("Write after a write error: %v, want %v", err, boom)
		}
	}
}

// TestWireCoalescesDialledTransports: the transports dialTransport makes
// are coalesced; any other net.Conn is written synchronously.
func TestWireCoalescesDialledTransports(t *testing.T) {
	if coalesces(&pipeConn{}) {
		t.Error("a test double is coalesced")
	}
	for _, c := range []net.Conn{&net.TCPConn{}, tls.Client(&net.TCPConn{}, &tls.Config{}), newWSConn(nil)} {
		if !coalesces(c) {
			t.Errorf("%T is not coalesced", c)
		}
	}
}
