package runner

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestDispatcherBoundsConcurrency checks that reused workers never run more
// jobs at once than the concurrency, keyed or not.
func TestDispatcherBoundsConcurrency(t *testing.T) {
	d := NewDispatcher(3, 12)
	var running, peak atomic.Int32
	job := func() {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(100 * time.Microsecond)
		running.Add(-1)
	}
	for i := range 300 {
		key := ""
		if i%2 == 0 {
			key = string(rune('a' + i%7))
		}
		if err := d.Submit(context.Background(), key, job); err != nil {
			t.Fatal(err)
		}
	}
	d.Wait()
	if p := peak.Load(); p < 2 || p > 3 {
		t.Errorf("peak concurrency %d, want 2 or 3", p)
	}
}

// TestDispatcherWorkersComeAndGo checks that workers exit when idle and
// that jobs submitted afterwards, and while the last ones exit, still run.
func TestDispatcherWorkersComeAndGo(t *testing.T) {
	d := NewDispatcher(2, 8)
	d.idle = time.Millisecond
	var ran atomic.Int32
	for round := range 20 {
		var wg sync.WaitGroup
		for range 5 {
			wg.Add(1)
			if err := d.Submit(context.Background(), "", func() { ran.Add(1); wg.Done() }); err != nil {
				t.Fatal(err)
			}
		}
		wg.Wait()
		time.Sleep(time.Duration(round%3) * time.Millisecond) // around the idle timeout
	}
	d.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for {
		d.mu.Lock()
		w := d.workers
		d.mu.Unlock()
		if w == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d workers still there after going idle", w)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if ran.Load() != 100 {
		t.Fatalf("ran %d of 100 jobs", ran.Load())
	}
}
