package stomp

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// fifo is an unbounded queue of received messages. go-stomp stops reading
// the connection (heart-beats and acknowledgements included) while a
// subscription's channel is full, so received messages are moved here at
// once; the broker's prefetch limit bounds how many can wait.
type fifo[T any] struct {
	mu     sync.Mutex
	items  []T
	head   int
	signal chan struct{}
}

func newFIFO[T any]() *fifo[T] { return &fifo[T]{signal: make(chan struct{}, 1)} }

func (q *fifo[T]) push(v T) {
	q.mu.Lock()
	q.items = append(q.items, v)
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// pop waits for an item until ctx ends.
func (q *fifo[T]) pop(ctx context.Context) (T, bool) {
	for {
		q.mu.Lock()
		if q.head < len(q.items) {
			v := q.items[q.head]
			var zero T
			q.items[q.head] = zero
			q.head++
			if q.head == len(q.items) {
				q.items, q.head = q.items[:0], 0
			} else if q.head > 1024 && q.head*2 > len(q.items) {
				q.items = append(q.items[:0:0], q.items[q.head:]...)
				q.head = 0
			}
			q.mu.Unlock()
			return v, true
		}
		q.mu.Unlock()
		select {
		case <-q.signal:
		case <-ctx.Done():
			var zero T
			return zero, false
		}
	}
}

func (q *fifo[T]) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) - q.head
}

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
		initial = time.Second
	}
	if maxD <= 0 {
		maxD = 2 * time.Minute
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

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
