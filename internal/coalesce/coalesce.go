// Package coalesce gathers a connection's writes into fewer transport
// writes. A client library that writes and flushes one small frame at a
// time (go-stomp's ACKs, paho's PUBACKs) costs a system call per frame,
// and over TLS or a WebSocket a record or a message of its own; behind a
// Conn, the frames written while a transport write is in progress, or
// while its flusher yields, leave together in the next one.
package coalesce

import (
	"net"
	"runtime"
	"sync"
	"time"
)

// MaxPending is the default bound of the bytes waiting for the flusher.
// Past it Write blocks, and the writer's queue behind it fills, so a
// stalled socket cannot grow memory without bound. ACKs are ~100 bytes: a
// full prefetch window of them is far below this.
const MaxPending = 1 << 20

// maxSpare is the largest buffer kept for reuse once written: a large
// frame does not pin its buffer for the connection's lifetime.
const maxSpare = 64 << 10

// maxYields bounds gather.
const maxYields = 4

// Conn is a net.Conn whose writes are coalesced by a flusher goroutine.
// Write returns once its bytes are queued; a transport error is returned
// by the Writes after it, and reported once to the function given to New.
type Conn struct {
	net.Conn

	onErr   func(error)
	flushed chan struct{} // closed when the flusher has returned

	mu      sync.Mutex
	pending []byte
	spare   []byte // the buffer the next swap makes pending; nil while in flight
	limit   int    // bytes pending past which Write waits
	werr    error  // why nothing more is written: a write failed, or Close
	// deadline is the write deadline last set; the flusher applies it to
	// the transport before its next Write (applied is what it last set).
	deadline, applied time.Time
	more              sync.Cond
	room              sync.Cond
	// waitHook, if set, is called (mu held) when a Write starts waiting
	// for room (tests).
	waitHook func()
}

// New wraps c and starts its flusher, which runs until Close or the first
// write error. onErr, if not nil, is called once with that error (on the
// flusher's goroutine), after which c is closed, so that its reader fails
// too: a library learns of a dead connection from its reads at once, not
// from its next Write, which may be a heart-beat seconds away.
func New(c net.Conn, onErr func(error)) *Conn {
	w := &Conn{Conn: c, onErr: onErr, limit: MaxPending, flushed: make(chan struct{})}
	w.more.L, w.room.L = &w.mu, &w.mu
	go w.flush()
	return w
}

// Write implements net.Conn: it queues p for the flusher. It waits while
// more than the limit is pending (a single Write larger than the limit
// still goes out when nothing else is pending).
func (w *Conn) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.werr == nil && len(w.pending) > 0 && len(w.pending)+len(p) > w.limit {
		if w.waitHook != nil {
			w.waitHook()
		}
		w.room.Wait()
	}
	if w.werr != nil {
		return 0, w.werr
	}
	w.pending = append(w.pending, p...)
	w.more.Signal()
	return len(p), nil
}

// SetWriteDeadline implements net.Conn. The deadline applies to the
// transport Writes that start after it is set: the flusher sets it on the
// transport, from its own goroutine, before each (a client library that
// sets a deadline around each Write, as paho does around a PUBLISH, would
// otherwise race with the flusher: a WebSocket connection does not allow
// it). A transport Write in progress is not cut short; Close is.
func (w *Conn) SetWriteDeadline(t time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.deadline = t
	return nil
}

// SetDeadline implements net.Conn: the read deadline is the transport's,
// the write deadline as SetWriteDeadline.
func (w *Conn) SetDeadline(t time.Time) error {
	if err := w.Conn.SetReadDeadline(t); err != nil {
		return err
	}
	return w.SetWriteDeadline(t)
}

// Close implements net.Conn. Nothing pending is written any more: the
// flusher stops (a transport Write in progress, stalled on a peer that
// reads nothing, fails as the transport closes), and later Writes fail
// with net.ErrClosed.
func (w *Conn) Close() error {
	w.mu.Lock()
	if w.werr == nil {
		w.werr = net.ErrClosed
	}
	w.pending = nil
	w.more.Broadcast()
	w.room.Broadcast()
	w.mu.Unlock()
	return w.Conn.Close()
}

// Flushed is closed once the flusher has returned (after Close or a
// write error).
func (w *Conn) Flushed() <-chan struct{} { return w.flushed }

// flush is the flusher goroutine. Whatever is pending when it wakes, and
// what joins while it yields (gather), goes out in one transport Write.
// When the connection is idle a frame leaves as soon as the flusher runs:
// no timer, no delay beyond a goroutine wake-up.
func (w *Conn) flush() {
	defer close(w.flushed)
	w.mu.Lock()
	for {
		for w.werr == nil && len(w.pending) == 0 {
			w.more.Wait()
		}
		if w.werr == nil {
			w.gather()
		}
		if w.werr != nil {
			// Closed: what is still pending is dropped, as a closed
			// connection's unsent bytes are.
			w.pending = nil
			w.mu.Unlock()
			return
		}
		out := w.pending
		w.pending, w.spare = w.spare[:0], nil
		deadline, apply := w.deadline, !w.deadline.Equal(w.applied)
		w.applied = w.deadline
		w.room.Broadcast()
		w.mu.Unlock()

		var err error
		if apply {
			err = w.Conn.SetWriteDeadline(deadline)
		}
		if err == nil {
			_, err = w.Conn.Write(out)
		}

		w.mu.Lock()
		if err != nil {
			first := w.werr == nil
			if first {
				w.werr = err
			}
			w.pending = nil
			w.room.Broadcast()
			w.mu.Unlock()
			if first {
				if w.onErr != nil {
					w.onErr(err)
				}
				_ = w.Conn.Close()
			}
			return
		}
		if cap(out) <= maxSpare {
			w.spare = out[:0]
		}
	}
}

// gather yields the processor while the pending bytes grow, up to
// maxYields times, so that frames about to be written (the ACKs of work
// finishing on other goroutines) leave in this Write rather than the next.
// A yield is not a wait: when nothing else is runnable it returns at once.
// w.mu is held, and released while yielding.
func (w *Conn) gather() {
	for range maxYields {
		n := len(w.pending)
		w.mu.Unlock()
		runtime.Gosched()
		w.mu.Lock()
		if len(w.pending) == n || w.werr != nil {
			return
		}
	}
}
