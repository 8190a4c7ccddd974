package journal

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/runner"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func open(t *testing.T, dir string, opts Options) *Journal {
	t.Helper()
	j, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() })
	return j
}

func TestProgressAndCompleteSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, Options{})
	p := j.Progress("m1", "create-account")
	if _, ok := p.Done(0); ok {
		t.Fatal("fresh journal reports step 0 done")
	}
	if err := p.Record(0, actions.Result{"ok": true, "exit_code": 0, "stdout": "made"}); err != nil {
		t.Fatal(err)
	}
	if err := j.Progress("m1", "other-rule").Record(1, actions.Result{"ok": true}); err != nil {
		t.Fatal(err)
	}
	if j.Completed("m1") {
		t.Fatal("m1 completed before Complete")
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	// A restart: the step records are still there.
	j = open(t, dir, Options{})
	res, ok := j.Progress("m1", "create-account").Done(0)
	if !ok || res["stdout"] != "made" || res["exit_code"] != float64(0) {
		t.Fatalf("after reopen: Done(0) = %v, %v", res, ok)
	}
	if _, ok := j.Progress("m1", "create-account").Done(1); ok {
		t.Fatal("step 1 was never recorded")
	}
	if _, ok := j.Progress("m1", "other-rule").Done(1); !ok {
		t.Fatal("other rule's step lost")
	}
	if _, ok := j.Progress("m10", "create-account").Done(0); ok {
		t.Fatal("m10 sees m1's steps")
	}
	if err := j.Complete("m1"); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	j = open(t, dir, Options{})
	if !j.Completed("m1") {
		t.Fatal("completion lost over reopen")
	}
	if j.Completed("m2") {
		t.Fatal("m2 never completed")
	}
	if _, ok := j.Progress("m1", "create-account").Done(0); ok {
		t.Fatal("step records of a completed message should be dropped")
	}
	st, err := j.Stats()
	if err != nil || st.Completed != 1 || st.Steps != 0 {
		t.Fatalf("stats = %+v, %v", st, err)
	}
}

func TestPruneByAge(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	dir := t.TempDir()
	j := open(t, dir, Options{MaxAge: time.Hour, Now: c.Now})
	for i := range 5 {
		if err := j.Complete(fmt.Sprint("old", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Progress("stuck", "r").Record(0, actions.Result{"ok": true}); err != nil {
		t.Fatal(err)
	}
	c.Add(50 * time.Minute)
	if err := j.Complete("new"); err != nil {
		t.Fatal(err)
	}
	c.Add(20 * time.Minute) // old* and stuck are now 70 min old, new 20 min
	if j.Completed("old0") {
		t.Fatal("an id older than MaxAge still counts as completed")
	}
	if !j.Completed("new") {
		t.Fatal("new lost")
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	// Opening prunes.
	j = open(t, dir, Options{MaxAge: time.Hour, Now: c.Now})
	st, err := j.Stats()
	if err != nil || st.Completed != 1 || st.Steps != 0 {
		t.Fatalf("after prune on open: %+v, %v (want 1 completed, 0 steps)", st, err)
	}
	if !j.Completed("new") {
		t.Fatal("pruning removed a young id")
	}
}

func TestPruneBySize(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	j := open(t, t.TempDir(), Options{MaxEntries: 10, Now: c.Now, PruneEvery: 1_000_000})
	for i := range 25 {
		c.Add(time.Second)
		if err := j.Complete(fmt.Sprintf("id%02d", i)); err != nil {
			t.Fatal(err)
		}
	}
	n, err := j.Prune()
	if err != nil || n != 15 {
		t.Fatalf("Prune() = %d, %v; want 15 removed", n, err)
	}
	for i := range 25 {
		want := i >= 15
		if got := j.Completed(fmt.Sprintf("id%02d", i)); got != want {
			t.Errorf("id%02d completed = %v, want %v", i, got, want)
		}
	}
}

func TestPruneTriggeredByCompletions(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	j := open(t, t.TempDir(), Options{MaxEntries: 5, PruneEvery: 10, Now: c.Now})
	for i := range 10 {
		c.Add(time.Second)
		if err := j.Complete(fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := j.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if st.Completed == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("background prune did not run: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRecompleteKeepsOneEntry(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	j := open(t, t.TempDir(), Options{MaxAge: time.Hour, Now: c.Now})
	if err := j.Complete("x"); err != nil {
		t.Fatal(err)
	}
	c.Add(50 * time.Minute)
	if err := j.Complete("x"); err != nil {
		t.Fatal(err)
	}
	c.Add(20 * time.Minute)
	if _, err := j.Prune(); err != nil {
		t.Fatal(err)
	}
	if !j.Completed("x") {
		t.Fatal("the second completion should have refreshed x's age")
	}
	st, _ := j.Stats()
	if st.Completed != 1 {
		t.Fatalf("completed = %d, want 1", st.Completed)
	}
}

func TestConcurrentUse(t *testing.T) {
	j := open(t, t.TempDir(), Options{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				id := fmt.Sprintf("w%d-%d", w, i)
				p := j.Progress(id, "r")
				for s := range 3 {
					if err := p.Record(s, actions.Result{"ok": true, "s": s}); err != nil {
						t.Error(err)
						return
					}
				}
				if err := j.Complete(id); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	st, err := j.Stats()
	if err != nil || st.Completed != 400 || st.Steps != 0 {
		t.Fatalf("stats = %+v, %v", st, err)
	}
}

func TestLockedByAnotherProcessIsAClearError(t *testing.T) {
	dir := t.TempDir()
	open(t, dir, Options{})
	_, err := Open(dir, Options{LockTimeout: 100 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("second Open: %v, want a 'locked' error", err)
	}
}

// TestFateSurvivesReopenAndPrune: the journal remembers that a message was
// dead-lettered (so that a copy the broker redelivers, because the
// dead-lettering never reached it, is dead-lettered again rather than
// acknowledged as a duplicate and lost), across a restart, until the
// completion itself is pruned; completing it as acked forgets it.
func TestFateSurvivesReopenAndPrune(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	dir := t.TempDir()
	j := open(t, dir, Options{MaxAge: time.Hour, Now: c.Now})
	if err := j.CompleteFate("dl", runner.FateDeadLettered); err != nil {
		t.Fatal(err)
	}
	if err := j.CompleteFate("ok", runner.FateAcked); err != nil {
		t.Fatal(err)
	}
	if got := j.Fate("never"); got != runner.FateAcked {
		t.Errorf("Fate of an unknown id = %q, want %q", got, runner.FateAcked)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	j = open(t, dir, Options{MaxAge: time.Hour, Now: c.Now})
	if !j.Completed("dl") || j.Fate("dl") != runner.FateDeadLettered {
		t.Fatalf("after reopen: completed %v, fate %q; want true, %q", j.Completed("dl"), j.Fate("dl"), runner.FateDeadLettered)
	}
	if j.Fate("ok") != runner.FateAcked {
		t.Errorf("fate of ok = %q", j.Fate("ok"))
	}
	if err := j.Complete("ok"); err != nil { // plain Complete: acked
		t.Fatal(err)
	}
	if err := j.CompleteFate("flip", runner.FateDeadLettered); err != nil {
		t.Fatal(err)
	}
	if err := j.CompleteFate("flip", runner.FateAcked); err != nil {
		t.Fatal(err)
	}
	if got := j.Fate("flip"); got != runner.FateAcked {
		t.Errorf("re-completed as acked: fate %q", got)
	}

	c.Add(2 * time.Hour)
	if _, err := j.Prune(); err != nil {
		t.Fatal(err)
	}
	if j.Completed("dl") || j.Fate("dl") != runner.FateAcked {
		t.Errorf("after pruning: completed %v, fate %q; the fate must go with the completion", j.Completed("dl"), j.Fate("dl"))
	}
	var left int
	if err := j.db.View(func(tx *bolt.Tx) error { left = tx.Bucket(bucketFate).Stats().KeyN; return nil }); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d fates left after pruning every completion", left)
	}
}
