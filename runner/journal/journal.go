// Package journal is the durable runner.Journal: a bbolt database in the
// runner's state directory that remembers, per message id, which steps of
// which plans completed (with their results) and which messages were handled
// to the end. It survives restarts, so a message redelivered after a crash
// resumes after its last completed step, and a duplicate of a handled message
// is acknowledged without running anything.
//
// The journal is bounded by age (MaxAge, default 7 days) and by the number of
// completed ids kept (MaxEntries, default 100,000); it is pruned when opened,
// periodically, and after every PruneEvery completions.
package journal

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/runner"
)

// FileName is the journal's file in the state directory.
const FileName = "eventfn.db"

// Defaults of Options.
const (
	DefaultMaxAge        = 7 * 24 * time.Hour
	DefaultMaxEntries    = 100_000
	DefaultPruneInterval = 10 * time.Minute
	DefaultPruneEvery    = 1000
)

var (
	bucketDone   = []byte("done")         // id → completion time (8 bytes, unix nanos, big endian)
	bucketByTime = []byte("done_by_time") // time (8 bytes) + id → nothing: completion order, for pruning
	bucketSteps  = []byte("steps")        // id 0x00 rule 0x00 step (4 bytes) → stepRecord JSON
	bucketFate   = []byte("fate")         // id → fate, for completed ids whose fate is not "acked"
	bucketMeta   = []byte("meta")
)

// Options tune Open. Zero values mean the defaults.
type Options struct {
	// MaxAge is how long a completed id (and an unfinished plan's step
	// records) are kept.
	MaxAge time.Duration
	// MaxEntries bounds the completed ids kept; the oldest go first.
	MaxEntries int
	// PruneInterval is how often the journal is pruned in the background.
	PruneInterval time.Duration
	// PruneEvery triggers a prune after this many completions.
	PruneEvery int
	// NoSync skips fsync after writes: faster, and still safe against a
	// crash of eventfn itself, but not against a crash of the machine.
	NoSync bool
	// LockTimeout is how long Open waits for another process to release the
	// file (default 3s).
	LockTimeout time.Duration
	// Logger receives pruning reports and errors (default slog.Default()).
	Logger *slog.Logger
	// Now replaces time.Now (tests).
	Now func() time.Time
}

// Journal is a bbolt-backed runner.Journal. It is safe for concurrent use.
type Journal struct {
	db   *bolt.DB
	opts Options
	log  *slog.Logger

	mu        sync.Mutex
	completes int
	pruneReq  chan struct{}
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

var _ runner.FateJournal = (*Journal)(nil)

// Open opens (creating if needed) the journal at dir/eventfn.db. dir is
// created with mode 0700 when missing. Another process holding the file
// makes Open fail after a few seconds rather than wait forever.
func Open(dir string, opts Options) (*Journal, error) {
	if opts.MaxAge <= 0 {
		opts.MaxAge = DefaultMaxAge
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	if opts.PruneInterval <= 0 {
		opts.PruneInterval = DefaultPruneInterval
	}
	if opts.PruneEvery <= 0 {
		opts.PruneEvery = DefaultPruneEvery
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
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("journal: state directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout, NoSync: opts.NoSync})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("journal: %s is locked by another process (is another eventfn using this state_dir?)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("journal: open %s: %w", path, err)
	}
	// Steps and completions of concurrent plans share one fsync.
	db.MaxBatchDelay = 2 * time.Millisecond
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketDone, bucketByTime, bucketSteps, bucketFate, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put([]byte("version"), []byte("1"))
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("journal: initialise %s: %w", path, err)
	}
	j := &Journal{db: db, opts: opts, log: opts.Logger,
		pruneReq: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	if _, err := j.Prune(); err != nil {
		db.Close()
		return nil, err
	}
	go j.pruneLoop()
	return j, nil
}

// Path returns the database file's path.
func (j *Journal) Path() string { return j.db.Path() }

// Completed implements runner.Journal.
func (j *Journal) Completed(id string) bool {
	var ok bool
	err := j.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketDone).Get([]byte(id))
		if len(v) == 8 {
			ok = j.opts.Now().Sub(time.Unix(0, int64(binary.BigEndian.Uint64(v)))) < j.opts.MaxAge
		}
		return nil
	})
	if err != nil {
		j.log.Error("journal read failed", "id", id, "error", err)
	}
	return ok
}

// Progress implements runner.Journal.
func (j *Journal) Progress(id, rule string) runner.Progress {
	return &progress{j: j, prefix: stepPrefix(id, rule)}
}

// Complete implements runner.Journal: the message is marked handled and its
// step records are dropped.
func (j *Journal) Complete(id string) error { return j.CompleteFate(id, runner.FateAcked) }

// Fate implements runner.FateJournal.
func (j *Journal) Fate(id string) string {
	fate := runner.FateAcked
	err := j.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketFate).Get([]byte(id)); v != nil {
			fate = string(v)
		}
		return nil
	})
	if err != nil {
		j.log.Error("journal read failed", "id", id, "error", err)
	}
	return fate
}

// CompleteFate implements runner.FateJournal: Complete, and the fate is
// remembered as long as the completion.
func (j *Journal) CompleteFate(id, fate string) error {
	now := j.opts.Now()
	err := j.db.Batch(func(tx *bolt.Tx) error {
		done, byTime := tx.Bucket(bucketDone), tx.Bucket(bucketByTime)
		if fate == runner.FateAcked {
			if err := tx.Bucket(bucketFate).Delete([]byte(id)); err != nil {
				return err
			}
		} else if err := tx.Bucket(bucketFate).Put([]byte(id), []byte(fate)); err != nil {
			return err
		}
		if old := done.Get([]byte(id)); len(old) == 8 {
			if err := byTime.Delete(timeKey(binary.BigEndian.Uint64(old), id)); err != nil {
				return err
			}
		}
		if err := deletePrefix(tx.Bucket(bucketSteps), []byte(id+"\x00")); err != nil {
			return err
		}
		ts := uint64(now.UnixNano())
		if err := done.Put([]byte(id), u64(ts)); err != nil {
			return err
		}
		return byTime.Put(timeKey(ts, id), nil)
	})
	if err != nil {
		return fmt.Errorf("journal: complete %s: %w", id, err)
	}
	j.mu.Lock()
	j.completes++
	trigger := j.completes%j.opts.PruneEvery == 0
	j.mu.Unlock()
	if trigger {
		select {
		case j.pruneReq <- struct{}{}:
		default:
		}
	}
	return nil
}

// Stats counts what the journal holds.
type Stats struct {
	// Completed is the number of completed ids kept.
	Completed int
	// Steps is the number of step records of unfinished messages.
	Steps int
}

// Stats returns the journal's counts.
func (j *Journal) Stats() (Stats, error) {
	var s Stats
	err := j.db.View(func(tx *bolt.Tx) error {
		s.Completed = tx.Bucket(bucketDone).Stats().KeyN
		s.Steps = tx.Bucket(bucketSteps).Stats().KeyN
		return nil
	})
	return s, err
}

// Prune drops completed ids older than MaxAge, the oldest ids beyond
// MaxEntries, and step records older than MaxAge. It returns how many
// entries it removed.
func (j *Journal) Prune() (int, error) {
	cutoff := uint64(j.opts.Now().Add(-j.opts.MaxAge).UnixNano())
	removed := 0
	err := j.db.Update(func(tx *bolt.Tx) error {
		done, byTime, steps := tx.Bucket(bucketDone), tx.Bucket(bucketByTime), tx.Bucket(bucketSteps)
		excess := done.Stats().KeyN - j.opts.MaxEntries
		var drop [][]byte
		c := byTime.Cursor()
		for k, _ := c.First(); k != nil && len(k) >= 8; k, _ = c.Next() {
			if binary.BigEndian.Uint64(k[:8]) >= cutoff && excess <= 0 {
				break
			}
			drop = append(drop, bytes.Clone(k))
			excess--
		}
		for _, k := range drop {
			if err := byTime.Delete(k); err != nil {
				return err
			}
			// The id's done entry goes only if it is this completion's.
			id := k[8:]
			if v := done.Get(id); v != nil && bytes.Equal(v, k[:8]) {
				if err := done.Delete(id); err != nil {
					return err
				}
				if err := tx.Bucket(bucketFate).Delete(id); err != nil {
					return err
				}
			}
			removed++
		}
		var stale [][]byte
		sc := steps.Cursor()
		for k, v := sc.First(); k != nil; k, v = sc.Next() {
			var rec stepRecord
			if err := json.Unmarshal(v, &rec); err != nil || uint64(rec.Time) < cutoff {
				stale = append(stale, bytes.Clone(k))
			}
		}
		for _, k := range stale {
			if err := steps.Delete(k); err != nil {
				return err
			}
			removed++
		}
		return nil
	})
	if err != nil {
		return removed, fmt.Errorf("journal: prune: %w", err)
	}
	if removed > 0 {
		j.log.Debug("journal pruned", "removed", removed)
	}
	return removed, nil
}

func (j *Journal) pruneLoop() {
	defer close(j.done)
	t := time.NewTicker(j.opts.PruneInterval)
	defer t.Stop()
	for {
		select {
		case <-j.stop:
			return
		case <-t.C:
		case <-j.pruneReq:
		}
		if _, err := j.Prune(); err != nil {
			j.log.Error("journal prune failed", "error", err)
		}
	}
}

// Close implements runner.Journal.
func (j *Journal) Close() error {
	var err error
	j.closeOnce.Do(func() {
		close(j.stop)
		<-j.done
		err = j.db.Close()
	})
	return err
}

// stepRecord is the stored form of one completed step.
type stepRecord struct {
	Time   int64          `json:"t"` // unix nanos
	Result actions.Result `json:"r"`
}

type progress struct {
	j      *Journal
	prefix []byte
}

// Done implements runner.Progress. Results come back as decoded JSON:
// numbers are float64.
func (p *progress) Done(i int) (actions.Result, bool) {
	var rec stepRecord
	var found bool
	err := p.j.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketSteps).Get(stepKey(p.prefix, i))
		if v == nil {
			return nil
		}
		found = true
		return json.Unmarshal(v, &rec)
	})
	if err != nil {
		p.j.log.Error("journal read failed", "error", err)
		return nil, false
	}
	if !found {
		return nil, false
	}
	if rec.Result == nil {
		rec.Result = actions.Result{}
	}
	return rec.Result, true
}

// Record implements runner.Progress.
func (p *progress) Record(i int, res actions.Result) error {
	v, err := json.Marshal(stepRecord{Time: p.j.opts.Now().UnixNano(), Result: res})
	if err != nil {
		return fmt.Errorf("journal: encode step result: %w", err)
	}
	key := stepKey(p.prefix, i)
	if err := p.j.db.Batch(func(tx *bolt.Tx) error { return tx.Bucket(bucketSteps).Put(key, v) }); err != nil {
		return fmt.Errorf("journal: record step: %w", err)
	}
	return nil
}

func stepPrefix(id, rule string) []byte { return []byte(id + "\x00" + rule + "\x00") }

func stepKey(prefix []byte, i int) []byte {
	k := make([]byte, len(prefix)+4)
	copy(k, prefix)
	binary.BigEndian.PutUint32(k[len(prefix):], uint32(i))
	return k
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func timeKey(ts uint64, id string) []byte { return append(u64(ts), id...) }

func deletePrefix(b *bolt.Bucket, prefix []byte) error {
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
