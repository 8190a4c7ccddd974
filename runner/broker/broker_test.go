package broker

import (
	"sync"
	"testing"
	"time"
)

func TestBackoffDoublesWithJitterUpToMax(t *testing.T) {
	b := Backoff{Initial: 100 * time.Millisecond, Max: time.Second}
	for failures, base := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond,
		4: 800 * time.Millisecond, 5: time.Second, 50: time.Second} {
		for range 100 {
			d := b.Delay(failures)
			if d < base*3/4 || d > base*5/4 {
				t.Fatalf("failures %d: %v not within ±25%% of %v", failures, d, base)
			}
		}
	}
	if d := (Backoff{}).Delay(1); d < 750*time.Millisecond || d > 1250*time.Millisecond {
		t.Errorf("default initial: %v", d)
	}
}

func TestRetryResetsOnlyAfterAStableConnection(t *testing.T) {
	r := Retry{Backoff: Backoff{Initial: time.Second, Max: time.Hour}, StableAfter: time.Minute}
	r.Failed()
	r.Failed()
	t0 := time.Unix(1000, 0)
	r.Connected(t0)
	r.Lost(t0.Add(time.Second)) // flapping: keeps counting
	if r.Failures() != 3 {
		t.Fatalf("failures = %d after a short connection, want 3", r.Failures())
	}
	r.Connected(t0)
	r.Lost(t0.Add(2 * time.Minute))
	if r.Failures() != 1 {
		t.Fatalf("failures = %d after a stable connection, want 1", r.Failures())
	}
}

func TestInFlightWait(t *testing.T) {
	var f InFlight
	if n := f.Wait(time.Hour); n != 0 {
		t.Fatalf("empty: %d", n)
	}
	f.Add()
	f.Add()
	if n := f.Wait(time.Millisecond); n != 2 {
		t.Fatalf("timed out with %d, want 2", n)
	}
	var wg sync.WaitGroup
	started := make(chan struct{})
	wg.Go(func() {
		<-started
		f.Done()
		f.Done()
	})
	close(started)
	if n := f.Wait(time.Hour); n != 0 {
		t.Fatalf("after settling: %d", n)
	}
	wg.Wait()
	f.Done() // an extra Done does not go negative
	if f.Len() != 0 {
		t.Fatalf("len = %d", f.Len())
	}
}
