// Package journal is the durable runner.Journal: an append-only log in the
// runner's state directory, replayed into a runner.MemoryJournal at start,
// that remembers which messages were handled (with their fate and entity
// keys, for de-duplication) and which plan steps of unfinished messages
// completed (with their results, for resumption). A message redelivered
// after a crash resumes after its last completed step; the same delivery
// again is acknowledged without running anything.
//
// Writes are group-committed without a timer: a committer goroutine writes
// whatever is queued when it is free, with one write and one fdatasync
// per batch, and a writer returns once its batch is on disk. Records are
// framed with a length and a CRC-32C; at open, an incomplete last record
// (eventfn stopped while writing it: it was never acknowledged) is cut
// off, and any other damage makes Open fail with a message naming the
// file and what to do, never a panic. The log is compacted (the live state
// rewritten to a new file, renamed over the old) when it has grown well
// beyond what it holds.
//
// A marker file next to the log records that a journal was created in the
// state directory, so that a log missing or emptied later is reported
// instead of silently taken as new.
package journal

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/runner"
)

// File names in the state directory.
const (
	// FileName is the journal's log.
	FileName = "journal.log"
	// MarkerName records that a journal was created in the directory.
	MarkerName = "journal.created"
	// oldBoltName is the bbolt journal of earlier versions: no longer read.
	oldBoltName = "eventfn.db"
)

// Defaults of Options.
const (
	DefaultMaxAge     = 7 * 24 * time.Hour
	DefaultMaxEntries = 100_000
	// DefaultCompactMin is the log size below which it is never compacted.
	DefaultCompactMin = 16 << 20
)

// maxRecord bounds one record's body: anything longer is damage.
const maxRecord = 64 << 20

const magic = "eventfn-journal-1"

// Record types.
const (
	recHeader   = 'H' // magic
	recComplete = 'C' // at, source, id, fate, keys
	recStep     = 'S' // at, sid, rule, step, result JSON
	recDone     = 'D' // at, sid, fate (compaction)
	recLast     = 'L' // at, key, sid (compaction)
	recProbe    = 'P' // nothing
)

// Options tune Open. Zero values mean the defaults.
type Options struct {
	// Window is the de-duplication window (runner.DefaultDedupWindow).
	Window time.Duration
	// MaxAge is how long step records of unfinished messages are kept.
	MaxAge time.Duration
	// MaxEntries bounds the handled ids (and keys) kept; the oldest go
	// first.
	MaxEntries int
	// CompactMin is the log size below which it is not compacted.
	CompactMin int64
	// NoSync skips fdatasync after writes: faster, and still safe against
	// a crash of eventfn itself, but not against a crash of the machine.
	NoSync bool
	// LockTimeout is how long Open waits for another process to release
	// the journal (default 3s).
	LockTimeout time.Duration
	// Logger receives reports and errors (default slog.Default()).
	Logger *slog.Logger
	// Now replaces time.Now (tests).
	Now func() time.Time
	// wrap, when set, wraps the log file for writes (tests inject faults).
	wrap func(writeSyncer) writeSyncer
}

// writeSyncer is what the committer writes to.
type writeSyncer interface {
	io.WriterAt
	Sync() error
}

// Journal is the durable runner.Journal. It is safe for concurrent use.
type Journal struct {
	mem  *runner.MemoryJournal
	opts Options
	log  *slog.Logger
	dir  string
	path string
	lock *os.File // the flock

	mu      sync.Mutex
	cur     *batch // being filled
	wake    chan struct{}
	closed  bool
	stopped chan struct{}

	// notify carries each written batch's CompleteAsync callbacks to the
	// notifier goroutine, which runs them in log order while the
	// committer goes on with the next batch; notified is closed when it
	// has run the last.
	notify   chan batchDone
	notified chan struct{}

	// committer's own (no lock needed)
	f        *os.File
	w        writeSyncer
	size     int64 // bytes of records known good on disk
	alloc    int64 // the file's size: zeros from size to alloc
	dirty    bool  // a failed write may have left bytes past size
	compactN int64 // log size after the last compaction (or open)

	recBytes atomic.Int64 // size, for Stats
}

// preallocChunk is how far ahead of the records the log file is extended
// with zeros: appending a record then overwrites allocated blocks without
// changing the file's size, so the fdatasync after it flushes the data
// alone, without a metadata commit (about half the cost, measured).
const preallocChunk = 4 << 20

// batch is the records queued for one write.
type batch struct {
	buf   []byte
	apply []func()
	// after are the CompleteAsync callbacks of the batch's completions.
	after []func(error)
	done  chan struct{}
	err   error
}

// batchDone is a written batch's callbacks and its write's result.
type batchDone struct {
	after []func(error)
	err   error
}

var _ runner.Journal = (*Journal)(nil)
var _ runner.Prober = (*Journal)(nil)
var _ runner.AsyncCompleter = (*Journal)(nil)

// Open opens (creating if needed) the journal in dir, replaying its log.
// dir is created with mode 0700 when missing. It fails, with a message
// naming the file and what to do, when the log is damaged, or missing or
// empty where the marker says one was created; and when another process
// holds the journal.
func Open(dir string, opts Options) (*Journal, error) {
	if opts.MaxAge <= 0 {
		opts.MaxAge = DefaultMaxAge
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	if opts.CompactMin <= 0 {
		opts.CompactMin = DefaultCompactMin
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = 3 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(dir, 0o700); err != nil { //nolint:gosec // the state directory is runner.state_dir, from the trusted rules file
		return nil, fmt.Errorf("journal: state directory: %w", err)
	}
	j := &Journal{opts: opts, log: opts.Logger, dir: dir, path: filepath.Join(dir, FileName),
		wake: make(chan struct{}, 1), stopped: make(chan struct{}),
		notify: make(chan batchDone, 64), notified: make(chan struct{}),
		mem: runner.NewMemoryJournalWith(runner.MemoryOptions{Window: opts.Window, MaxEntries: opts.MaxEntries,
			StepMaxAge: opts.MaxAge, Now: opts.Now})}
	if err := j.lockDir(); err != nil {
		return nil, err
	}
	if err := j.openLog(); err != nil {
		j.lock.Close()
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, oldBoltName)); err == nil { //nolint:gosec // under runner.state_dir, from the trusted rules file
		j.log.Warn("journal: "+filepath.Join(dir, oldBoltName)+" is the journal of an earlier eventfn and is no longer read (remove it)",
			"journal", j.path)
	}
	go j.commit()
	go j.notifier()
	return j, nil
}

// lockDir takes an exclusive flock on the log's lock file, waiting up to
// LockTimeout.
func (j *Journal) lockDir() error {
	lp := filepath.Join(j.dir, FileName+".lock")
	f, err := os.OpenFile(lp, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	deadline := time.Now().Add(j.opts.LockTimeout)
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			j.lock = f
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return fmt.Errorf("journal: %s is locked by another process (is another eventfn using this state_dir?)", j.path)
			}
			return fmt.Errorf("journal: lock %s: %w", lp, err)
		}
		time.Sleep(50 * time.Millisecond) // flock has no timeout of its own
	}
}

// openLog checks the marker, replays the log (or creates it) and leaves it
// open for appending.
func (j *Journal) openLog() error {
	marker := filepath.Join(j.dir, MarkerName)
	created, merr := os.ReadFile(marker)
	hasMarker := merr == nil
	st, err := os.Stat(j.path)
	switch {
	case errors.Is(err, os.ErrNotExist) && hasMarker:
		return fmt.Errorf("journal: %s is missing, but %s says a journal was created there (%s): it was deleted or the state directory was replaced; "+
			"restore it from a backup, or delete %s to start with an empty journal (messages handled in the last de-duplication window may then run again)",
			j.path, marker, bytes.TrimSpace(created), marker)
	case err == nil && st.Size() == 0 && hasMarker:
		return fmt.Errorf("journal: %s is empty, but %s says a journal was created there (%s): it was truncated; "+
			"restore it from a backup, or delete both files to start with an empty journal (messages handled in the last de-duplication window and unfinished plans may then run again)",
			j.path, marker, bytes.TrimSpace(created))
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("journal: %w", err)
	}
	if err == nil && st.Size() > 0 {
		if err := j.replay(); err != nil {
			return err
		}
	} else if err := j.create(); err != nil {
		return err
	}
	if !hasMarker {
		if err := writeFileSync(marker, []byte(fmt.Sprintf("journal %s created %s\n", FileName, j.opts.Now().UTC().Format(time.RFC3339)))); err != nil {
			return fmt.Errorf("journal: marker: %w", err)
		}
		if err := syncDir(j.dir); err != nil {
			return fmt.Errorf("journal: %w", err)
		}
	}
	f, err := os.OpenFile(j.path, os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	st, err = f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("journal: %w", err)
	}
	j.setFile(f)
	j.alloc = st.Size()
	j.compactN = j.size
	j.recBytes.Store(j.size)
	return nil
}

func (j *Journal) setFile(f *os.File) {
	j.f, j.w = f, writeSyncer(dataSyncer{f})
	if j.opts.wrap != nil {
		j.w = j.opts.wrap(j.w)
	}
}

// create writes a new log holding only the header.
func (j *Journal) create() error {
	buf := appendRecord(nil, []byte{recHeader}, []byte(magic))
	if err := writeFileSync(j.path, buf); err != nil {
		return fmt.Errorf("journal: create %s: %w", j.path, err)
	}
	if err := syncDir(j.dir); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	j.size = int64(len(buf))
	return nil
}

// damaged is the error of a log that cannot be read.
func (j *Journal) damaged(off int64, what string) error {
	return fmt.Errorf("journal: %s is damaged at offset %d (%s): eventfn will not start on it. "+
		"Move it aside (keep it for inspection) and delete %s to start with an empty journal; "+
		"messages handled in the last de-duplication window and unfinished plans may then run again",
		j.path, off, what, filepath.Join(j.dir, MarkerName))
}

// replay reads the log into memory. An incomplete last record is cut off;
// other damage is an error. It never panics on bad bytes.
func (j *Journal) replay() (err error) {
	f, err := os.OpenFile(j.path, os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	size := st.Size()
	r := bufio.NewReaderSize(f, 1<<20)
	var off int64
	defer func() {
		if p := recover(); p != nil {
			err = j.damaged(off, fmt.Sprintf("unreadable record: %v", p))
		}
	}()
	var hdr [8]byte
	n := 0
	body := make([]byte, 0, 4096)
	for off < size {
		torn := func(what string) error {
			// The rest of the file must be this one incomplete record
			// (or zeros after it): the tail of a write eventfn did not
			// finish. Otherwise it is damage.
			j.log.Warn("journal: cut off an incomplete last record (eventfn stopped while writing it; it was never acknowledged)",
				"journal", j.path, "offset", off, "bytes", size-off, "reason", what)
			if err := f.Truncate(off); err != nil {
				return fmt.Errorf("journal: truncate %s: %w", j.path, err)
			}
			j.size = off
			return f.Sync()
		}
		if size-off < 8 {
			return torn("short header")
		}
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return fmt.Errorf("journal: read %s: %w", j.path, err)
		}
		ln := int64(binary.LittleEndian.Uint32(hdr[:4]))
		sum := binary.LittleEndian.Uint32(hdr[4:])
		if ln == 0 || ln > maxRecord {
			if ln == 0 && sum == 0 && allZero(r) {
				break // the zeros the log is extended with ahead of its records
			}
			return j.damaged(off, fmt.Sprintf("record length %d", ln))
		}
		if off+8+ln > size {
			return torn("record longer than the file")
		}
		body = slices.Grow(body[:0], int(ln))[:ln]
		if _, err := io.ReadFull(r, body); err != nil {
			return fmt.Errorf("journal: read %s: %w", j.path, err)
		}
		if crc32.Checksum(body, castagnoli) != sum {
			if off+8+ln == size || allZero(r) {
				return torn("checksum mismatch in the last record")
			}
			return j.damaged(off, "checksum mismatch")
		}
		if n == 0 && (body[0] != recHeader || string(body[1:]) != magic) {
			return fmt.Errorf("journal: %s is not an eventfn journal (or of an unknown version): move it aside", j.path)
		}
		if err := j.applyRecord(body); err != nil {
			return j.damaged(off, err.Error())
		}
		n++
		off += 8 + ln
	}
	j.size = off
	j.log.Info("journal replayed", "journal", j.path, "records", n, "bytes", off)
	return nil
}

// allZero reports whether r has only zero bytes left.
func allZero(r io.Reader) bool {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		for _, b := range buf[:n] {
			if b != 0 {
				return false
			}
		}
		if err != nil {
			return true
		}
	}
}

// applyRecord applies one replayed record to memory.
func (j *Journal) applyRecord(body []byte) error {
	d := decoder{b: body[1:]}
	switch body[0] {
	case recHeader, recProbe:
	case recComplete:
		at := d.varint()
		c := runner.Completion{Source: d.str(), ID: d.str(), Fate: d.str()}
		for k := d.uvarint(); k > 0 && d.err == nil; k-- {
			c.Keys = append(c.Keys, d.str())
		}
		if d.err == nil {
			j.mem.Apply(c, time.Unix(0, at))
		}
	case recStep:
		at, sid, rule, i, raw := d.varint(), d.str(), d.str(), d.uvarint(), d.rest()
		if d.err != nil {
			break
		}
		var res actions.Result
		if err := json.Unmarshal(raw, &res); err != nil {
			return fmt.Errorf("step record: %w", err)
		}
		if res == nil {
			res = actions.Result{}
		}
		j.mem.ApplyStep(sid, rule, int(i), res, time.Unix(0, at))
	case recDone:
		at, sid, fate := d.varint(), d.str(), d.str()
		if d.err == nil {
			j.mem.RestoreDone(sid, fate, at)
		}
	case recLast:
		at, key, sid := d.varint(), d.str(), d.str()
		if d.err == nil {
			j.mem.RestoreLast(key, sid, at)
		}
	default:
		return fmt.Errorf("unknown record type %q", body[0])
	}
	return d.err
}

// Duplicate implements runner.Journal.
func (j *Journal) Duplicate(source, id string, keys []string) (string, bool) {
	return j.mem.Duplicate(source, id, keys)
}

// Progress implements runner.Journal.
func (j *Journal) Progress(source, id, rule string) runner.Progress {
	return &progress{j: j, sid: runner.SID(source, id), rule: rule}
}

// Complete implements runner.Journal: it returns once the completion is on
// disk (or failed to be written: then nothing changed).
func (j *Journal) Complete(c runner.Completion) error {
	b, apply := j.completion(c)
	if err := j.submit(b, apply); err != nil {
		return fmt.Errorf("journal: complete %s: %w", c.ID, err)
	}
	return nil
}

// CompleteAsync implements runner.AsyncCompleter: the completion joins the
// next batch like Complete's, but the caller does not wait for it; done
// runs on the journal's notifier goroutine once the batch is on disk (nil)
// or failed to be written, in log order, while the committer writes the
// next batch. A closed journal calls done at once, on the caller's
// goroutine.
func (j *Journal) CompleteAsync(c runner.Completion, done func(error)) {
	b, apply := j.completion(c)
	wrapped := func(err error) {
		if err != nil {
			err = fmt.Errorf("journal: complete %s: %w", c.ID, err)
		}
		done(err)
	}
	if err := j.queue(b, apply, wrapped); err != nil {
		wrapped(err)
	}
}

// completion encodes c's record, and what applies it to memory once it is
// written.
func (j *Journal) completion(c runner.Completion) ([]byte, func()) {
	at := j.opts.Now()
	b := make([]byte, 0, 16+len(c.Source)+len(c.ID)+len(c.Fate)+8*len(c.Keys))
	b = append(b, recComplete)
	b = binary.AppendVarint(b, at.UnixNano())
	b = appendStr(appendStr(appendStr(b, c.Source), c.ID), c.Fate)
	b = binary.AppendUvarint(b, uint64(len(c.Keys)))
	for _, k := range c.Keys {
		b = appendStr(b, k)
	}
	return b, func() { j.mem.Apply(c, at) }
}

// Probe implements runner.Prober.
func (j *Journal) Probe(ctx context.Context) error {
	if err := j.submit([]byte{recProbe}, nil); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

var errClosed = errors.New("journal closed")

// submit queues one record for the next batch and waits for the batch to
// be on disk; apply runs (in log order) once it is.
func (j *Journal) submit(body []byte, apply func()) error {
	b, err := j.enqueue(body, apply, nil)
	if err != nil {
		return err
	}
	<-b.done
	return b.err
}

// queue queues one record for the next batch without waiting; after runs
// on the notifier once the batch is written.
func (j *Journal) queue(body []byte, apply func(), after func(error)) error {
	_, err := j.enqueue(body, apply, after)
	return err
}

// enqueue adds one record to the batch being filled and wakes the
// committer.
func (j *Journal) enqueue(body []byte, apply func(), after func(error)) (*batch, error) {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return nil, errClosed
	}
	b := j.cur
	if b == nil {
		b = &batch{done: make(chan struct{})}
		j.cur = b
	}
	b.buf = appendRecord(b.buf, body[:1], body[1:])
	if apply != nil {
		b.apply = append(b.apply, apply)
	}
	if after != nil {
		b.after = append(b.after, after)
	}
	j.mu.Unlock()
	select {
	case j.wake <- struct{}{}:
	default:
	}
	return b, nil
}

// notifier runs the CompleteAsync callbacks of written batches, in order.
func (j *Journal) notifier() {
	defer close(j.notified)
	for d := range j.notify {
		for _, f := range d.after {
			f(d.err)
		}
	}
}

// commit is the committer: it writes whatever is queued, one write and one
// sync per batch, with no timer; writers that queue meanwhile make up the
// next batch.
func (j *Journal) commit() {
	defer close(j.stopped)
	defer close(j.notify)
	for {
		<-j.wake
		j.gather()
		j.mu.Lock()
		b, closed := j.cur, j.closed
		j.cur = nil
		j.mu.Unlock()
		if b != nil {
			b.err = j.write(b.buf)
			if b.err == nil {
				for _, f := range b.apply {
					f()
				}
			}
			close(b.done)
			if len(b.after) > 0 {
				j.notify <- batchDone{after: b.after, err: b.err}
			}
		}
		if closed {
			return
		}
		if b != nil && b.err == nil {
			j.maybeCompact()
		}
	}
}

// gather yields the processor while the batch grows, up to maxYields
// times, so that writers already runnable (a plan finishing, its
// completion about to be queued) join this batch rather than the next:
// with few messages in flight (a broker window of 10) batches were of two
// or three completions, each paying a sync. A yield is not a wait: when
// nothing else is runnable it returns at once, and the batch is written.
func (j *Journal) gather() {
	for range maxYields {
		n := j.queued()
		runtime.Gosched()
		if j.queued() == n {
			return
		}
	}
}

// maxYields bounds gather.
const maxYields = 4

// queued returns the size of the batch being gathered.
func (j *Journal) queued() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.cur == nil {
		return 0
	}
	return len(j.cur.buf)
}

// write appends buf to the log and syncs it. After a failed write the log
// is cut back to its last good size before anything else is written.
func (j *Journal) write(buf []byte) error {
	if j.dirty {
		if err := j.f.Truncate(j.size); err != nil {
			return fmt.Errorf("cut back the log after a failed write: %w", err)
		}
		j.alloc, j.dirty = j.size, false
	}
	if end := j.size + int64(len(buf)); end > j.alloc && !j.opts.NoSync {
		if err := j.extend(end); err != nil {
			j.dirty = true
			return fmt.Errorf("extend %s: %w", j.path, err)
		}
	}
	_, err := j.w.WriteAt(buf, j.size)
	if err == nil && !j.opts.NoSync {
		err = j.w.Sync()
	}
	if err != nil {
		j.dirty = true
		return fmt.Errorf("write %s: %w", j.path, err)
	}
	j.size += int64(len(buf))
	j.recBytes.Store(j.size)
	return nil
}

// extend fills the log file with zeros from alloc to past end and syncs
// the file's size.
func (j *Journal) extend(end int64) error {
	n := max(preallocChunk, end-j.alloc)
	zeros := make([]byte, 256<<10)
	for w := int64(0); w < n; {
		k := min(int64(len(zeros)), n-w)
		if _, err := j.w.WriteAt(zeros[:k], j.alloc+w); err != nil {
			return err
		}
		w += k
	}
	if err := j.f.Sync(); err != nil {
		return err
	}
	j.alloc += n
	return nil
}

// maybeCompact rewrites the log with only the live state when it has
// grown past CompactMin and twice its size after the last compaction.
func (j *Journal) maybeCompact() {
	if j.size < j.opts.CompactMin || j.size < 2*j.compactN {
		return
	}
	if err := j.Compact(); err != nil {
		j.log.Error("journal compaction failed; the log goes on growing", "journal", j.path, "error", err)
	}
}

// Compact rewrites the log with the live state only. It is called by the
// committer (so no write runs meanwhile) and by tests with no writers.
func (j *Journal) Compact() error {
	type rec struct {
		at   int64
		body []byte
	}
	var recs []rec
	var encErr error
	j.mem.Snapshot(func(sid, fate string, at int64) {
		b := binary.AppendVarint([]byte{recDone}, at)
		recs = append(recs, rec{at, appendStr(appendStr(b, sid), fate)})
	}, func(key, sid string, at int64) {
		b := binary.AppendVarint([]byte{recLast}, at)
		recs = append(recs, rec{at, appendStr(appendStr(b, key), sid)})
	}, func(sid, rule string, i int, res actions.Result, at int64) {
		raw, err := json.Marshal(res)
		if err != nil {
			encErr = err
			return
		}
		b := binary.AppendVarint([]byte{recStep}, at)
		b = binary.AppendUvarint(appendStr(appendStr(b, sid), rule), uint64(i))
		recs = append(recs, rec{at, append(b, raw...)})
	})
	if encErr != nil {
		return encErr
	}
	// In time order, so that the replayed index prunes oldest first.
	slices.SortStableFunc(recs, func(a, b rec) int { return int(min(max(a.at-b.at, -1), 1)) })
	buf := appendRecord(nil, []byte{recHeader}, []byte(magic))
	for _, r := range recs {
		buf = appendRecord(buf, r.body[:1], r.body[1:])
	}
	tmp := j.path + ".compact"
	if err := writeFileSync(tmp, buf); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, j.path); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := syncDir(j.dir); err != nil {
		return err
	}
	f, err := os.OpenFile(j.path, os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	old := j.f
	j.setFile(f)
	old.Close()
	before := j.size
	j.size, j.alloc, j.compactN, j.dirty = int64(len(buf)), int64(len(buf)), int64(len(buf)), false
	j.recBytes.Store(j.size)
	j.log.Debug("journal compacted", "journal", j.path, "bytes_before", before, "bytes_after", j.size, "records", len(recs))
	return nil
}

// Outbox implements runner.Outboxer.
func (j *Journal) Outbox() []actions.Result { return j.mem.Outbox() }

// Stats counts what the journal holds.
type Stats struct {
	// Completed is the number of handled ids kept; Keys of entity keys.
	Completed, Keys int
	// Bytes is the size of the log's records (the file is extended with
	// zeros ahead of them).
	Bytes int64
}

// Stats returns the journal's counts.
func (j *Journal) Stats() Stats {
	ids, keys := j.mem.Len()
	return Stats{Completed: ids, Keys: keys, Bytes: j.recBytes.Load()}
}

// Path returns the log's path.
func (j *Journal) Path() string { return j.path }

// Close implements runner.Journal: queued writes finish first.
func (j *Journal) Close() error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return nil
	}
	j.closed = true
	j.mu.Unlock()
	select {
	case j.wake <- struct{}{}:
	default:
	}
	<-j.stopped
	<-j.notified
	err := j.f.Close()
	j.lock.Close()
	return err
}

type progress struct {
	j         *Journal
	sid, rule string
}

// Done implements runner.Progress. Results read back from the log are
// decoded JSON: numbers are float64.
func (p *progress) Done(i int) (actions.Result, bool) { return p.j.mem.StepDone(p.sid, p.rule, i) }

// Record implements runner.Progress: it returns once the record is on disk.
func (p *progress) Record(i int, res actions.Result) error {
	raw, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("journal: encode step result: %w", err)
	}
	at := p.j.opts.Now()
	b := binary.AppendVarint([]byte{recStep}, at.UnixNano())
	b = binary.AppendUvarint(appendStr(appendStr(b, p.sid), p.rule), uint64(i))
	b = append(b, raw...)
	// Memory holds the decoded form, as a replay would.
	var back actions.Result
	if err := json.Unmarshal(raw, &back); err != nil || back == nil {
		back = actions.Result{}
	}
	if err := p.j.submit(b, func() { p.j.mem.ApplyStep(p.sid, p.rule, i, back, at) }); err != nil {
		return fmt.Errorf("journal: record step: %w", err)
	}
	return nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendRecord frames typ+body: length (4 bytes LE), CRC-32C (4 bytes LE),
// body.
func appendRecord(buf, typ, body []byte) []byte {
	n := len(typ) + len(body)
	crc := crc32.Update(crc32.Update(0, castagnoli, typ), castagnoli, body)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(n))
	buf = binary.LittleEndian.AppendUint32(buf, crc)
	return append(append(buf, typ...), body...)
}

func appendStr(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// decoder reads a record body; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

var errShort = errors.New("truncated record body")

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.err = errShort
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) rest() []byte {
	b := d.b
	d.b = nil
	return b
}

// dataSyncer syncs with fdatasync: the log's data, and its size, without
// the rest of its metadata.
type dataSyncer struct{ f *os.File }

func (d dataSyncer) WriteAt(p []byte, off int64) (int, error) { return d.f.WriteAt(p, off) }

func (d dataSyncer) Sync() error {
	for {
		err := syscall.Fdatasync(int(d.f.Fd()))
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
