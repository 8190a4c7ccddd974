package stomp

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// stallConn is a transport whose every Write waits for the test: it hands
// what it was given to writes and returns what the test sends on results.
// Close fails a Write in progress and every later one.
type stallConn struct {
	net.Conn
	writes    chan []byte
	results   chan error
	closed    chan struct{}
	closeOnce sync.Once
}

func newStallConn() *stallConn {
	return &stallConn{writes: make(chan []byte), results: make(chan error), closed: make(chan struct{})}
}

func (c *stallConn) Write(p []byte) (int, error) {
	select {
	case c.writes <- bytes.Clone(p):
	case <-c.closed:
		return 0, net.ErrClosed
	}
	select {
	case err := <-c.results:
		if err != nil {
			return 0, err
		}
		return len(p), nil
	case <-c.closed:
		return 0, net.ErrClosed
	}
}

func (c *stallConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}

// guard bounds a wait for something that must happen, so that a bug fails
// the test instead of hanging it.
const guard = 10 * time.Second

// nextWrite returns the next transport Write.
func (c *stallConn) nextWrite(t *testing.T) string {
	t.Helper()
	select {
	case p := <-c.writes:
		return string(p)
	case <-time.After(guard):
		t.Fatal("no transport Write")
		return ""
	}
}

// noMoreWrites checks that the flusher has returned and wrote nothing
// more.
func noMoreWrites(t *testing.T, w *wire, c *stallConn) {
	t.Helper()
	select {
	case <-w.flushed:
	case <-time.After(guard):
		t.Fatal("the flusher goroutine did not return")
	}
	select {
	case p := <-c.writes:
		t.Fatalf("transport written after the flusher stopped: %q", p)
	default:
	}
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
	case <-time.After(guard):
		t.Fatal("the wire is not dead")
		return nil
	}
}

// TestWireCoalescesWhileAWriteIsInProgress: the frames written while the
// transport is busy leave together in the next transport Write, in order
// and byte for byte, headers added as without coalescing; once the flusher
// is idle a frame leaves on its own.
func TestWireCoalescesWhileAWriteIsInProgress(t *testing.T) {
	c := newStallConn()
	w := newWireMode(c, true)
	defer func() { _ = w.Close() }()
	addRewrites(w)

	mustWrite(t, w, connectFrame)
	if got := c.nextWrite(t); got != connectFrame {
		t.Fatalf("first transport Write %q, want %q", got, connectFrame)
	}
	// The transport is now busy with CONNECT.
	const ack8 = "ACK\nid:T_1@@s@@8\n\n\x00"
	mustWrite(t, w, append(slices.Clone(rewriteIn), ack8)...)
	c.results <- nil
	want := strings.Join(rewriteOut, "") + ack8
	if got := c.nextWrite(t); got != want {
		t.Fatalf("second transport Write\n%q\nwant\n%q", got, want)
	}
	c.results <- nil

	ack := "ACK\nid:T_1@@s@@9\n\n\x00"
	mustWrite(t, w, ack)
	if got := c.nextWrite(t); got != ack {
		t.Fatalf("transport Write on an idle wire %q, want %q", got, ack)
	}
	c.results <- nil
}

// TestWireCloseStopsTheFlusher: Close writes nothing more (what is pending
// is dropped), stops the flusher goroutine, and later Writes fail.
func TestWireCloseStopsTheFlusher(t *testing.T) {
	c := newStallConn()
	w := newWireMode(c, true)
	mustWrite(t, w, "ACK\nid:1\n\n\x00")
	c.nextWrite(t)
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
	c = newStallConn()
	w = newWireMode(c, true)
	_ = w.Close()
	noMoreWrites(t, w, c)
}

// TestWireWriteErrorKills: a failed transport Write kills the wire with its
// error, closes the transport (go-stomp's reader fails at once), stops the
// flusher, and every later Write returns the error.
func TestWireWriteErrorKills(t *testing.T) {
	boom := errors.New("connection reset")
	c := newStallConn()
	w := newWireMode(c, true)
	defer func() { _ = w.Close() }()
	mustWrite(t, w, "ACK\nid:1\n\n\x00")
	c.nextWrite(t)
	mustWrite(t, w, "ACK\nid:2\n\n\x00")
	c.results <- boom
	if err := waitDead(t, w); !errors.Is(err, boom) {
		t.Errorf("dead with %v, want %v", err, boom)
	}
	noMoreWrites(t, w, c)
	select {
	case <-c.closed:
	default:
		t.Error("the transport was not closed after a write error")
	}
	for range 2 {
		if _, err := w.Write([]byte("ACK\nid:3\n\n\x00")); !errors.Is(err, boom) {
			t.Errorf("Write after a write error: %v, want %v", err, boom)
		}
	}
}

// TestWireBoundsPending: past the limit a Write waits until the flusher
// takes what is pending; a write error releases a waiting Write with the
// error.
func TestWireBoundsPending(t *testing.T) {
	c := newStallConn()
	w := newWireMode(c, true)
	defer func() { _ = w.Close() }()
	waiting := make(chan struct{}, 1)
	w.limit = 64
	w.waitHook = func() { waiting <- struct{}{} }
	chunk := func(b byte) string { return strings.Repeat(string(b), 39) + "\x00" } // 40 bytes

	// A first Write larger than the limit goes out: nothing is pending.
	big := strings.Repeat("x", 100) + "\x00"
	mustWrite(t, w, big)
	if got := c.nextWrite(t); got != big {
		t.Fatalf("transport got %q", got)
	}
	mustWrite(t, w, chunk('a')) // 40 pending
	done := make(chan error, 1)
	go func() { _, err := w.Write([]byte(chunk('b'))); done <- err }()
	<-waiting // 80 would be over 64
	c.results <- nil
	if got := c.nextWrite(t); got != chunk('a') {
		t.Fatalf("transport got %q, want the pending chunk alone", got)
	}
	if err := <-done; err != nil {
		t.Fatalf("the waiting Write: %v", err)
	}
	c.results <- nil
	if got := c.nextWrite(t); got != chunk('b') {
		t.Fatalf("transport got %q, want the chunk that waited", got)
	}

	// A write error while a Write waits for room.
	mustWrite(t, w, chunk('c')) // pending behind the busy transport
	go func() { _, err := w.Write([]byte(chunk('d'))); done <- err }()
	<-waiting
	boom := errors.New("broken pipe")
	c.results <- boom
	if err := <-done; !errors.Is(err, boom) {
		t.Errorf("the waiting Write returned %v, want %v", err, boom)
	}
	noMoreWrites(t, w, c)
}

// TestWireStalledSocketDeadline: a peer that reads nothing makes Writes
// wait once the limit is pending, and a write deadline on the wire still
// fails the transport Write, kills the wire and releases the waiting Write.
func TestWireStalledSocketDeadline(t *testing.T) {
	client, server := net.Pipe() // nobody reads server: every Write stalls
	defer func() { _ = server.Close() }()
	w := newWireMode(client, true)
	defer func() { _ = w.Close() }()
	waiting := make(chan struct{}, 1)
	w.limit = 4 << 10
	w.waitHook = func() {
		select {
		case waiting <- struct{}{}:
		default:
		}
	}
	done := make(chan error, 1)
	go func() {
		frame := []byte("ACK\nid:" + strings.Repeat("7", 200) + "\n\n\x00")
		for {
			if _, err := w.Write(frame); err != nil {
				done <- err
				return
			}
		}
	}()
	<-waiting
	if err := w.SetWriteDeadline(time.Now()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("the waiting Write returned %v, want a deadline error", err)
		}
	case <-time.After(guard):
		t.Fatal("the waiting Write was not released by the write deadline")
	}
	if err := waitDead(t, w); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("dead with %v, want a deadline error", err)
	}
	select {
	case <-w.flushed:
	case <-time.After(guard):
		t.Fatal("the flusher goroutine did not return")
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
