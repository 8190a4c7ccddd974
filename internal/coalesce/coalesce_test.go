package coalesce

import (
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eventfn/eventfn/internal/coalesce/coalescetest"
)

func mustWrite(t *testing.T, w *Conn, frames ...string) {
	t.Helper()
	for _, f := range frames {
		if n, err := w.Write([]byte(f)); err != nil || n != len(f) {
			t.Fatalf("Write(%q) = %d, %v", f, n, err)
		}
	}
}

// TestCoalescesWhileAWriteIsInProgress: what is written while the transport
// is busy leaves in the next transport Write, in order; on an idle Conn a
// frame leaves on its own.
func TestCoalescesWhileAWriteIsInProgress(t *testing.T) {
	c := coalescetest.NewStallConn()
	w := New(c, nil)
	defer func() { _ = w.Close() }()
	mustWrite(t, w, "one")
	if got := c.NextWrite(t); got != "one" {
		t.Fatalf("first transport Write %q", got)
	}
	mustWrite(t, w, "two", "three", "four")
	c.Results <- nil
	if got := c.NextWrite(t); got != "twothreefour" {
		t.Fatalf("second transport Write %q, want the three frames written meanwhile", got)
	}
	c.Results <- nil
	mustWrite(t, w, "five")
	if got := c.NextWrite(t); got != "five" {
		t.Fatalf("transport Write on an idle Conn %q", got)
	}
	c.Results <- nil
}

// TestCloseStopsTheFlusher: Close writes nothing more (what is pending is
// dropped), stops the flusher, closes the transport, and later Writes fail.
func TestCloseStopsTheFlusher(t *testing.T) {
	c := coalescetest.NewStallConn()
	w := New(c, func(error) { t.Error("Close reported as a write error") })
	mustWrite(t, w, "one")
	c.NextWrite(t)
	mustWrite(t, w, "two") // pending behind the busy transport
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c.NoMoreWrites(t, w.Flushed())
	if _, err := w.Write([]byte("three")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close: %v, want %v", err, net.ErrClosed)
	}
	select {
	case <-c.Closed:
	default:
		t.Error("Close did not close the transport")
	}

	// An idle flusher stops too.
	c = coalescetest.NewStallConn()
	w = New(c, nil)
	_ = w.Close()
	c.NoMoreWrites(t, w.Flushed())
}

// TestWriteErrorIsReportedOnce: a failed transport Write is reported once,
// closes the transport (the reader fails at once), stops the flusher, and
// every later Write returns the error.
func TestWriteErrorIsReportedOnce(t *testing.T) {
	boom := errors.New("connection reset")
	c := coalescetest.NewStallConn()
	reported := make(chan error, 2)
	w := New(c, func(err error) { reported <- err })
	defer func() { _ = w.Close() }()
	mustWrite(t, w, "one")
	c.NextWrite(t)
	mustWrite(t, w, "two")
	c.Results <- boom
	c.NoMoreWrites(t, w.Flushed())
	if err := <-reported; !errors.Is(err, boom) {
		t.Errorf("reported %v, want %v", err, boom)
	}
	select {
	case <-c.Closed:
	default:
		t.Error("the transport was not closed after a write error")
	}
	for range 2 {
		if _, err := w.Write([]byte("three")); !errors.Is(err, boom) {
			t.Errorf("Write after a write error: %v, want %v", err, boom)
		}
	}
	if len(reported) != 0 {
		t.Errorf("the error was reported %d more times", len(reported))
	}
}

// TestBoundsPending: past the limit a Write waits until the flusher takes
// what is pending; a write error releases a waiting Write with the error.
func TestBoundsPending(t *testing.T) {
	c := coalescetest.NewStallConn()
	w := New(c, nil)
	defer func() { _ = w.Close() }()
	waiting := make(chan struct{}, 1)
	w.mu.Lock()
	w.limit = 64
	w.waitHook = func() { waiting <- struct{}{} }
	w.mu.Unlock()
	chunk := func(b byte) string { return strings.Repeat(string(b), 40) }

	// A first Write larger than the limit goes out: nothing is pending.
	big := strings.Repeat("x", 100)
	mustWrite(t, w, big)
	if got := c.NextWrite(t); got != big {
		t.Fatalf("transport got %q", got)
	}
	mustWrite(t, w, chunk('a')) // 40 pending
	done := make(chan error, 1)
	go func() { _, err := w.Write([]byte(chunk('b'))); done <- err }()
	<-waiting // 80 would be over 64
	c.Results <- nil
	if got := c.NextWrite(t); got != chunk('a') {
		t.Fatalf("transport got %q, want the pending chunk alone", got)
	}
	if err := <-done; err != nil {
		t.Fatalf("the waiting Write: %v", err)
	}
	c.Results <- nil
	if got := c.NextWrite(t); got != chunk('b') {
		t.Fatalf("transport got %q, want the chunk that waited", got)
	}

	// A write error while a Write waits for room.
	mustWrite(t, w, chunk('c')) // pending behind the busy transport
	go func() { _, err := w.Write([]byte(chunk('d'))); done <- err }()
	<-waiting
	boom := errors.New("broken pipe")
	c.Results <- boom
	if err := <-done; !errors.Is(err, boom) {
		t.Errorf("the waiting Write returned %v, want %v", err, boom)
	}
	c.NoMoreWrites(t, w.Flushed())
}

// TestStalledSocket: a peer that reads nothing makes Writes wait once the
// limit is pending; Close releases the stalled transport Write and the
// waiting Write.
func TestStalledSocket(t *testing.T) {
	client, server := net.Pipe() // nobody reads server: every Write stalls
	defer func() { _ = server.Close() }()
	w := New(client, nil)
	waiting := make(chan struct{}, 1)
	w.mu.Lock()
	w.limit = 4 << 10
	w.waitHook = func() {
		select {
		case waiting <- struct{}{}:
		default:
		}
	}
	w.mu.Unlock()
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
	_ = w.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("the waiting Write returned %v, want %v", err, net.ErrClosed)
		}
	case <-time.After(coalescetest.Guard):
		t.Fatal("the waiting Write was not released by Close")
	}
	select {
	case <-w.Flushed():
	case <-time.After(coalescetest.Guard):
		t.Fatal("the stalled flusher did not return")
	}
}

// TestWriteDeadline: a write deadline applies to the transport Writes that
// start after it: one in the past fails the next, which is reported, and
// later Writes return its error; a deadline set and cleared around each
// Write (as paho does) from another goroutine than the flusher's does not
// race with it (-race).
func TestWriteDeadline(t *testing.T) {
	var want strings.Builder
	for i := range 200 {
		want.WriteString(strconv.Itoa(i) + ",")
	}
	client, server := net.Pipe()
	defer func() { _ = server.Close() }()
	got := make(chan string, 1)
	go func() {
		b := make([]byte, want.Len())
		n, _ := io.ReadFull(server, b)
		got <- string(b[:n])
	}()
	w := New(client, nil)
	for i := range 200 {
		if err := w.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, w, strconv.Itoa(i)+",")
		if err := w.SetWriteDeadline(time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case s := <-got:
		if s != want.String() {
			t.Errorf("the peer read %q, want %q", s, want.String())
		}
	case <-time.After(coalescetest.Guard):
		t.Fatal("the peer did not read everything written")
	}
	_ = w.Close()

	late, peer := net.Pipe()
	defer func() { _ = peer.Close() }()
	reported := make(chan error, 1)
	w = New(late, func(err error) { reported <- err })
	defer func() { _ = w.Close() }()
	if err := w.SetDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, w, "late")
	select {
	case err := <-reported:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("reported %v, want a deadline error", err)
		}
	case <-time.After(coalescetest.Guard):
		t.Fatal("a Write past the deadline did not fail")
	}
	if _, err := w.Write([]byte("after")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Write after the deadline error: %v", err)
	}
}
