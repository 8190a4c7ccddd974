package journal

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"testing"

	"github.com/eventfn/eventfn/runner"
)

// CompleteAsync returns at once; each callback runs once, in the order
// the completions were made, and only when its record is on disk: the
// journal, reopened, knows every completion whose callback said nil.
func TestCompleteAsyncCallsBackInOrderOnceWritten(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, Options{})
	const n = 500
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	wg.Add(n)
	for i := range n {
		c := runner.Completion{Source: "s", ID: fmt.Sprint("m", i), Keys: []string{fmt.Sprint("k", i)}, Fate: runner.FateAcked}
		j.CompleteAsync(c, func(err error) {
			defer wg.Done()
			if err != nil {
				t.Errorf("completion %d: %v", i, err)
			}
			// Applied to memory before the callback runs.
			if _, dup := j.Duplicate("s", c.ID, c.Keys); !dup {
				t.Errorf("completion %d: not known when its callback runs", i)
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
		})
	}
	wg.Wait()
	for i, got := range order {
		if got != i {
			t.Fatalf("callback %d was completion %d: callbacks out of order", i, got)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = open(t, dir, Options{})
	for i := range n {
		if _, dup := j.Duplicate("s", fmt.Sprint("m", i), []string{fmt.Sprint("k", i)}); !dup {
			t.Fatalf("completion %d lost after reopen", i)
		}
	}
}

// A completion that cannot be written reports the write's error to its
// callback, and nothing is recorded.
func TestCompleteAsyncReportsAFailedWrite(t *testing.T) {
	fw := &failingWriter{}
	j := open(t, t.TempDir(), Options{wrap: func(w writeSyncer) writeSyncer { fw.w = w; return fw }})
	fw.set(true)
	got := make(chan error, 1)
	j.CompleteAsync(runner.Completion{Source: "s", ID: "lost", Keys: []string{"k"}, Fate: runner.FateAcked},
		func(err error) { got <- err })
	if err := <-got; !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("callback got %v, want ENOSPC", err)
	}
	if _, dup := j.Duplicate("s", "lost", []string{"k"}); dup {
		t.Error("a completion that was not written counts")
	}
}

// After Close, CompleteAsync calls back at once with an error; Close
// itself waits for the callbacks of what was queued before it.
func TestCompleteAsyncAfterClose(t *testing.T) {
	j := open(t, t.TempDir(), Options{})
	ran := false
	j.CompleteAsync(runner.Completion{Source: "s", ID: "a", Keys: []string{"k"}, Fate: runner.FateAcked},
		func(err error) {
			if err != nil {
				t.Errorf("queued before Close: %v", err)
			}
			ran = true
		})
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if !ran {
		t.Fatal("Close returned before the callback of a completion queued before it ran")
	}
	got := make(chan error, 1)
	j.CompleteAsync(runner.Completion{Source: "s", ID: "b", Keys: []string{"k"}, Fate: runner.FateAcked},
		func(err error) { got <- err })
	if err := <-got; err == nil {
		t.Fatal("CompleteAsync on a closed journal reported success")
	}
}
