// Package coalescetest has a transport double for tests of coalesced
// writes: a net.Conn whose every Write waits for the test.
package coalescetest

import (
	"bytes"
	"net"
	"sync"
	"testing"
	"time"
)

// Guard bounds a wait for something that must happen, so that a bug fails
// a test instead of hanging it.
const Guard = 10 * time.Second

// StallConn is a transport whose every Write waits for the test: it hands
// what it was given to Writes and returns what the test sends on Results.
// Close fails a Write in progress and every later one. Reads are not
// supported.
type StallConn struct {
	net.Conn
	Writes    chan []byte
	Results   chan error
	Closed    chan struct{}
	closeOnce sync.Once
}

// NewStallConn returns a StallConn.
func NewStallConn() *StallConn {
	return &StallConn{Writes: make(chan []byte), Results: make(chan error), Closed: make(chan struct{})}
}

// Write implements net.Conn.
func (c *StallConn) Write(p []byte) (int, error) {
	select {
	case c.Writes <- bytes.Clone(p):
	case <-c.Closed:
		return 0, net.ErrClosed
	}
	select {
	case err := <-c.Results:
		if err != nil {
			return 0, err
		}
		return len(p), nil
	case <-c.Closed:
		return 0, net.ErrClosed
	}
}

// Close implements net.Conn.
func (c *StallConn) Close() error {
	c.closeOnce.Do(func() { close(c.Closed) })
	return nil
}

// NextWrite returns the next transport Write.
func (c *StallConn) NextWrite(t testing.TB) string {
	t.Helper()
	select {
	case p := <-c.Writes:
		return string(p)
	case <-time.After(Guard):
		t.Fatal("no transport Write")
		return ""
	}
}

// NoMoreWrites checks that flushed is closed (the flusher returned) and
// that nothing more was written.
func (c *StallConn) NoMoreWrites(t testing.TB, flushed <-chan struct{}) {
	t.Helper()
	select {
	case <-flushed:
	case <-time.After(Guard):
		t.Fatal("the flusher goroutine did not return")
	}
	select {
	case p := <-c.Writes:
		t.Fatalf("transport written after the flusher stopped: %q", p)
	default:
	}
}
