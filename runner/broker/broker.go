// Package broker holds what the broker sources (runner/stomp, runner/mqtt)
// share: the reconnection backoff, with one jitter, the count of
// consecutive failures that a connection that stayed up resets, and the
// count of messages in flight that shutdown waits for.
package broker

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// Defaults of Backoff and Retry.
const (
	DefaultInitial     = time.Second
	DefaultMax         = 2 * time.Minute
	DefaultStableAfter = time.Second
)

// Backoff is the delay between connection attempts: Initial, doubling per
// consecutive failure up to Max, each delay varied by ±25% so that many
// agents do not reconnect in step.
type Backoff struct {
	Initial time.Duration // default 1s
	Max     time.Duration // default 2m
}

// Delay returns the wait before attempt number failures (1 = after the
// first failure).
func (b Backoff) Delay(failures int) time.Duration {
	initial, maxD := b.Initial, b.Max
	if initial <= 0 {
		initial = DefaultInitial
	}
	if maxD <= 0 {
		maxD = DefaultMax
	}
	if maxD < initial {
		maxD = initial
	}
	d := initial
	for i := 1; i < failures && d < maxD; i++ {
		d *= 2
	}
	d = min(d, maxD)
	return time.Duration(float64(d) * (0.75 + 0.5*rand.Float64()))
}

// Sleep waits d or until ctx ends; it reports whether d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Retry counts the consecutive failures of one connection loop and gives
// the wait before the next attempt. A connection that stayed up at least
// StableAfter starts the backoff again from Initial when it is lost; one
// that did not keeps backing off, so a broker that accepts and then drops
// connections is not hammered. Not safe for concurrent use: one loop owns
// it.
type Retry struct {
	Backoff Backoff
	// StableAfter: see Retry (default 1s).
	StableAfter time.Duration

	failures int
	up       time.Time
}

// Failed counts a failed attempt and returns the wait before the next.
func (r *Retry) Failed() time.Duration {
	r.failures++
	return r.Backoff.Delay(r.failures)
}

// Connected records that a connection is up.
func (r *Retry) Connected(now time.Time) { r.up = now }

// Lost counts a lost connection and returns the wait before the next
// attempt; the count starts again when the connection was stable.
func (r *Retry) Lost(now time.Time) time.Duration {
	stable := r.StableAfter
	if stable <= 0 {
		stable = DefaultStableAfter
	}
	if now.Sub(r.up) >= stable {
		r.failures = 0
	}
	return r.Failed()
}

// Failures returns the consecutive failures so far.
func (r *Retry) Failures() int { return r.failures }

// InFlight counts the messages handed to the runner and not yet settled,
// so that shutdown can wait for their acknowledgements. The zero value is
// ready to use.
type InFlight struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to 0; nil while n == 0
}

// Add counts one more message in flight.
func (f *InFlight) Add() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 {
		f.idle = make(chan struct{})
	}
	f.n++
}

// Done counts one message settled.
func (f *InFlight) Done() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 {
		return
	}
	f.n--
	if f.n == 0 {
		close(f.idle)
		f.idle = nil
	}
}

// Len returns the messages in flight.
func (f *InFlight) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

// Wait waits until no message is in flight, or timeout passes; it returns
// how many are still in flight (0 when all were settled).
func (f *InFlight) Wait(timeout time.Duration) int {
	f.mu.Lock()
	idle := f.idle
	f.mu.Unlock()
	if idle == nil {
		return 0
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-idle:
		return 0
	case <-t.C:
		return f.Len()
	}
}
