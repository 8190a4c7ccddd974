package stomp

import (
	"context"
	"sync"
	"time"

	"github.com/eventfn/eventfn/runner/broker"
)

// fifo is an unbounded queue of received messages. They are put here by
// the goroutine reading the connection (session.take), or by session.pump
// for those go-stomp delivers, at once: neither may wait, or the
// connection's heart-beats and receipts would wait too (go-stomp stops
// reading while a subscription's channel is full). The broker's prefetch
// limit bounds how many can wait.
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

// Backoff is the delay between connection attempts, shared with the MQTT
// source: see broker.Backoff.
type Backoff = broker.Backoff

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool { return broker.Sleep(ctx, d) }
