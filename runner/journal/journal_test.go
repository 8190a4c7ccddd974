package journal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

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
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	j, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() })
	return j
}

func complete(t *testing.T, j *Journal, source, id, fate string, keys ...string) {
	t.Helper()
	if err := j.Complete(runner.Completion{Source: source, ID: id, Keys: keys, Fate: fate}); err != nil {
		t.Fatal(err)
	}
}

func TestProgressAndCompletionsSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, Options{})
	p := j.Progress("s", "m1", "create-account")
	if _, ok := p.Done(0); ok {
		t.Fatal("fresh journal reports step 0 done")
	}
	if err := p.Record(0, actions.Result{"ok": true, "exit_code": 0, "stdout": "made"}); err != nil {
		t.Fatal(err)
	}
	if err := j.Progress("s", "m1", "other-rule").Record(1, actions.Result{"ok": true}); err != nil {
		t.Fatal(err)
	}
	complete(t, j, "s", "done1", runner.FateAcked, "entity:a")
	complete(t, j, "s", "dl", runner.FateDeadLettered, "entity:b")
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	j = open(t, dir, Options{})
	res, ok := j.Progress("s", "m1", "create-account").Done(0)
	if !ok || res["stdout"] != "made" || res["exit_code"] != float64(0) {
		t.Fatalf("after reopen: step 0 = %v, %v", res, ok)
	}
	if _, ok := j.Progress("s", "m1", "create-account").Done(1); ok {
		t.Error("step 1 reported done")
	}
	if _, ok := j.Progress("s", "m1", "other-rule").Done(1); !ok {
		t.Error("other rule's step lost")
	}
	if _, ok := j.Progress("other-source", "m1", "create-account").Done(0); ok {
		t.Error("steps are scoped by source")
	}
	if f, dup := j.Duplicate("s", "done1", []string{"entity:a"}); !dup || f != runner.FateAcked {
		t.Errorf("done1 after reopen: %q %v", f, dup)
	}
	if f, dup := j.Duplicate("s", "dl", []string{"entity:b"}); !dup || f != runner.FateDeadLettered {
		t.Errorf("dl after reopen: %q %v, want the dead-lettered fate", f, dup)
	}
	// Completing drops the steps.
	complete(t, j, "s", "m1", runner.FateAcked, "entity:c")
	if _, ok := j.Progress("s", "m1", "create-account").Done(0); ok {
		t.Error("steps kept after completion")
	}
}

// TestGrantRevokeSequenceSurvivesReopen: de-duplication by entity holds
// across restarts.
func TestGrantRevokeSequenceSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, Options{})
	key := "entity:user_role|project_uuid=p|user_uuid=u"
	complete(t, j, "stomp", "hash-grant", runner.FateAcked, key)
	complete(t, j, "stomp", "hash-revoke", runner.FateAcked, key)
	j.Close()
	j = open(t, dir, Options{})
	if _, dup := j.Duplicate("stomp", "hash-grant", []string{key}); dup {
		t.Error("grant after revoke taken for a duplicate")
	}
	if _, dup := j.Duplicate("stomp", "hash-revoke", []string{key}); !dup {
		t.Error("a redelivery of the last revoke not recognised")
	}
	if _, dup := j.Duplicate("http", "hash-revoke", []string{key}); dup {
		t.Error("an id of another source suppressed")
	}
}

func TestWindowExpires(t *testing.T) {
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	dir := t.TempDir()
	j := open(t, dir, Options{Window: time.Minute, Now: clk.Now})
	complete(t, j, "s", "a", runner.FateAcked, "k")
	clk.Add(30 * time.Second)
	j.Close()
	j = open(t, dir, Options{Window: time.Minute, Now: clk.Now})
	if _, dup := j.Duplicate("s", "a", []string{"k"}); !dup {
		t.Error("within the window: not a duplicate")
	}
	clk.Add(31 * time.Second)
	if _, dup := j.Duplicate("s", "a", []string{"k"}); dup {
		t.Error("past the window: still a duplicate")
	}
}

func TestTornLastRecordIsCutOff(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, Options{})
	complete(t, j, "s", "kept", runner.FateAcked, "k1")
	end := j.Stats().Bytes
	j.Close()
	path := filepath.Join(dir, FileName)
	good, _ := os.ReadFile(path)
	good = good[:end]
	// A record eventfn was writing when it died, cut short.
	torn := appendRecord(nil, []byte{recComplete}, []byte("0123456789"))
	f, _ := os.OpenFile(path, os.O_WRONLY, 0)
	f.WriteAt(torn[:len(torn)-4], end)
	f.Close()
	j = open(t, dir, Options{})
	if _, dup := j.Duplicate("s", "kept", []string{"k1"}); !dup {
		t.Error("record before the torn one lost")
	}
	complete(t, j, "s", "after", runner.FateAcked, "k2")
	j.Close()
	if b, _ := os.ReadFile(path); len(b) <= len(good) || string(b[:len(good)]) != string(good) {
		t.Fatal("the torn tail was not cut off before new writes")
	}
	j = open(t, dir, Options{})
	if _, dup := j.Duplicate("s", "after", []string{"k2"}); !dup {
		t.Error("record written after the cut lost")
	}
}

func TestDamagedJournalIsRefusedNotPanicking(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, Options{})
	for i := range 20 {
		complete(t, j, "s", fmt.Sprint("id", i), runner.FateAcked, "k")
	}
	end := int(j.Stats().Bytes)
	j.Close()
	path := filepath.Join(dir, FileName)
	b, _ := os.ReadFile(path)
	for _, off := range []int{end / 3, end / 2, 40, end + 100} {
		d := append([]byte(nil), b...)
		d[off] ^= 0xff
		os.WriteFile(path, d, 0o600)
		_, err := Open(dir, Options{Logger: slog.New(slog.DiscardHandler)})
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "damaged") ||
			!strings.Contains(err.Error(), "Move it aside") {
			t.Errorf("byte %d flipped: Open error = %v; want a refusal naming the file and what to do", off, err)
		}
	}
	os.WriteFile(path, []byte("SQLite format 3\x00 certainly not a journal, and longer than a header"), 0o600)
	if _, err := Open(dir, Options{Logger: slog.New(slog.DiscardHandler)}); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("foreign file: Open error = %v", err)
	}
}

func TestEmptyOrMissingJournalIsReported(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, Options{})
	complete(t, j, "s", "a", runner.FateAcked, "k")
	j.Close()
	path := filepath.Join(dir, FileName)
	os.Truncate(path, 0)
	_, err := Open(dir, Options{Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "is empty") || !strings.Contains(err.Error(), MarkerName) {
		t.Errorf("emptied journal: Open error = %v", err)
	}
	os.Remove(path)
	_, err = Open(dir, Options{Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "is missing") {
		t.Errorf("deleted journal: Open error = %v", err)
	}
	// What the message says to do works.
	os.Remove(filepath.Join(dir, MarkerName))
	open(t, dir, Options{})
}

// failingWriter fails writes while fail is set, writing half of the bytes
// first, as a full disk does.
type failingWriter struct {
	w    writeSyncer
	mu   sync.Mutex
	fail bool
}

func (f *failingWriter) set(v bool) { f.mu.Lock(); f.fail = v; f.mu.Unlock() }

func (f *failingWriter) WriteAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	fail := f.fail
	f.mu.Unlock()
	if fail {
		n, _ := f.w.WriteAt(p[:len(p)/2], off)
		return n, syscall.ENOSPC
	}
	return f.w.WriteAt(p, off)
}

func (f *failingWriter) Sync() error { return f.w.Sync() }

func TestFailedWriteRecordsNothingAndRecovers(t *testing.T) {
	dir := t.TempDir()
	fw := &failingWriter{}
	j := open(t, dir, Options{wrap: func(w writeSyncer) writeSyncer { fw.w = w; return fw }})
	complete(t, j, "s", "before", runner.FateAcked, "k0")
	fw.set(true)
	err := j.Complete(runner.Completion{Source: "s", ID: "lost", Keys: []string{"k1"}, Fate: runner.FateAcked})
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Complete on a full disk: %v, want ENOSPC", err)
	}
	if _, dup := j.Duplicate("s", "lost", []string{"k1"}); dup {
		t.Error("a completion that was not written counts")
	}
	if err := j.Probe(context.Background()); err == nil {
		t.Error("Probe succeeded on a full disk")
	}
	fw.set(false)
	if err := j.Probe(context.Background()); err != nil {
		t.Fatalf("Probe after space came back: %v", err)
	}
	complete(t, j, "s", "after", runner.FateAcked, "k2")
	j.Close()
	// The half-written records were cut back: the log replays cleanly.
	j = open(t, dir, Options{})
	for id, want := range map[string]bool{"before": true, "lost": false, "after": true} {
		if _, dup := j.Duplicate("s", id, []string{map[string]string{"before": "k0", "lost": "k1", "after": "k2"}[id]}); dup != want {
			t.Errorf("%s after reopen: %v, want %v", id, dup, want)
		}
	}
}

func TestCompactionKeepsTheLiveState(t *testing.T) {
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	dir := t.TempDir()
	opts := Options{Window: time.Minute, CompactMin: 4 << 10, Now: clk.Now}
	j := open(t, dir, opts)
	if err := j.Progress("s", "unfinished", "r").Record(0, actions.Result{"n": 1}); err != nil {
		t.Fatal(err)
	}
	for i := range 2000 {
		complete(t, j, "s", fmt.Sprint("id", i), runner.FateAcked, fmt.Sprint("k", i%10))
		clk.Add(100 * time.Millisecond)
	}
	complete(t, j, "s", "dl", runner.FateDeadLettered, "kdl")
	st := j.Stats()
	if st.Bytes > 64<<10 {
		t.Errorf("log is %d bytes after 2000 completions: not compacted", st.Bytes)
	}
	j.Close()
	j = open(t, dir, opts)
	if _, ok := j.Progress("s", "unfinished", "r").Done(0); !ok {
		t.Error("step record of an unfinished message lost in compaction")
	}
	if f, dup := j.Duplicate("s", "dl", []string{"kdl"}); !dup || f != runner.FateDeadLettered {
		t.Errorf("fate lost in compaction: %q %v", f, dup)
	}
	if _, dup := j.Duplicate("s", "id1999", []string{"k9"}); !dup {
		t.Error("recent completion lost in compaction")
	}
	if _, dup := j.Duplicate("s", "id0", []string{"k0"}); dup {
		t.Error("completion older than the window kept")
	}
}

func TestConcurrentUse(t *testing.T) {
	j := open(t, t.TempDir(), Options{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				id := fmt.Sprintf("w%d-%d", w, i)
				if err := j.Progress("s", id, "r").Record(0, actions.Result{"i": i}); err != nil {
					t.Error(err)
					return
				}
				if err := j.Complete(runner.Completion{Source: "s", ID: id, Keys: []string{id}}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if st := j.Stats(); st.Completed != 800 {
		t.Errorf("completed = %d, want 800", st.Completed)
	}
}

func TestLockedByAnotherProcessIsAClearError(t *testing.T) {
	dir := t.TempDir()
	open(t, dir, Options{})
	_, err := Open(dir, Options{LockTimeout: 100 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("second Open: %v", err)
	}
}
