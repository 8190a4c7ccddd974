package runner

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/eventfn/eventfn/actions"
)

// Journal remembers which messages were handled, with their fate and the
// entity keys they were handled under, for de-duplication; and which plan
// steps of unfinished messages completed, for resumption.
//
// De-duplication means "the same delivery again", not "the same content
// ever": a message is a duplicate only when the same id was completed for
// the same source within the de-duplication window and no other message
// for any of its keys was handled since. Keys are remembered for the
// window too: a key last handled longer ago makes the message run. Ids are
// scoped by source: an id pushed to one source never suppresses a message
// of another.
type Journal interface {
	// Duplicate reports whether the message id from source is the same
	// delivery again of one handled before, and if so the fate it was
	// settled with.
	Duplicate(source, id string, keys []string) (fate string, dup bool)
	// Progress returns the step record of one plan (by rule name) of a
	// message.
	Progress(source, id, rule string) Progress
	// Complete records the message handled, with its fate and keys; its
	// step records may be dropped. The record is durable when Complete
	// returns nil (for durable journals); on error nothing was recorded.
	Complete(c Completion) error
	// Close releases the journal.
	Close() error
}

// Completion is the record of one handled message.
type Completion struct {
	Source, ID string
	// Keys are the entity keys the message was handled under (see
	// EntityKey and dedupKeys).
	Keys []string
	// Fate is how it was settled: FateAcked or FateDeadLettered.
	Fate string
}

// AsyncCompleter is implemented by journals whose Complete waits for a
// disk write (the durable one). CompleteAsync records c like Complete but
// returns at once; done runs once the record is durable (nil) or failed to
// be written (nothing recorded), on a goroutine of the journal's, in the
// order the completions were made. done must not wait for the journal.
// The runner settles messages this way: no goroutine waits per message.
type AsyncCompleter interface {
	CompleteAsync(c Completion, done func(error))
}

// Prober is implemented by journals whose writes can fail (the durable
// one). After a failed write the runner stops taking messages and calls
// Probe until it succeeds.
type Prober interface {
	// Probe writes (and syncs) a record that changes nothing and reports
	// whether the journal can be written.
	Probe(ctx context.Context) error
}

// Fates of handled messages, as the runner settles them (and as the fate
// label of eventfn_messages_settled_total). A message dead-lettered before
// that comes back as the same delivery (its dead-lettering did not reach
// the broker: the connection closed, or eventfn died, in between) is
// dead-lettered again rather than acknowledged as a duplicate, which would
// lose it.
const (
	FateAcked        = "acked"
	FateDeadLettered = "dead_lettered"
)

// MemoryOptions tune a MemoryJournal. Zero values mean the defaults.
type MemoryOptions struct {
	// Window is how long a handled id counts for de-duplication
	// (DefaultDedupWindow).
	Window time.Duration
	// MaxEntries bounds the handled ids (and keys) kept; the oldest go
	// first (100,000).
	MaxEntries int
	// StepMaxAge is how long step records of unfinished messages are kept
	// (7 days).
	StepMaxAge time.Duration
	// Now replaces time.Now (tests).
	Now func() time.Time
}

// MemoryJournal is a Journal in memory, bounded by age and entry count. It
// de-duplicates within one process lifetime only. The durable journal
// (package runner/journal) keeps one as its index and replays its log
// into it.
type MemoryJournal struct {
	mu    sync.Mutex
	opts  MemoryOptions
	done  map[string]doneEntry // sid → last completion
	doneQ fifo
	last  map[string]lastEntry // key → last message handled under it
	lastQ fifo
	steps map[string]map[string]*planSteps // sid → rule → records
	ops   int
}

type doneEntry struct {
	at   int64
	fate string
}

type lastEntry struct {
	sid string
	at  int64
}

type planSteps struct {
	at  int64 // time of the newest record
	res map[int]actions.Result
}

// NewMemoryJournal returns a journal keeping up to maxEntries handled ids
// for a de-duplication window of window (defaults: 100,000 and
// DefaultDedupWindow).
func NewMemoryJournal(window time.Duration, maxEntries int) *MemoryJournal {
	return NewMemoryJournalWith(MemoryOptions{Window: window, MaxEntries: maxEntries})
}

// NewMemoryJournalWith returns a journal tuned by opts.
func NewMemoryJournalWith(opts MemoryOptions) *MemoryJournal {
	if opts.Window <= 0 {
		opts.Window = DefaultDedupWindow
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 100_000
	}
	if opts.StepMaxAge <= 0 {
		opts.StepMaxAge = 7 * 24 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &MemoryJournal{opts: opts, done: map[string]doneEntry{}, last: map[string]lastEntry{},
		steps: map[string]map[string]*planSteps{}}
}

// SID is the source-scoped id a journal keys messages by.
func SID(source, id string) string { return source + "\x00" + id }

// Window returns the de-duplication window.
func (j *MemoryJournal) Window() time.Duration { return j.opts.Window }

// Duplicate implements Journal.
func (j *MemoryJournal) Duplicate(source, id string, keys []string) (string, bool) {
	sid := SID(source, id)
	j.mu.Lock()
	defer j.mu.Unlock()
	cutoff := j.opts.Now().UnixNano() - int64(j.opts.Window)
	d, ok := j.done[sid]
	if !ok || d.at <= cutoff {
		return "", false
	}
	for _, k := range keys {
		if l, ok := j.last[k]; !ok || l.sid != sid || l.at <= cutoff {
			return "", false
		}
	}
	return d.fate, true
}

// Progress implements Journal.
func (j *MemoryJournal) Progress(source, id, rule string) Progress {
	return &memProgress{j: j, sid: SID(source, id), rule: rule}
}

// Complete implements Journal.
func (j *MemoryJournal) Complete(c Completion) error {
	j.Apply(c, j.opts.Now())
	return nil
}

// Apply records c as completed at t (the durable journal calls it once c
// is on disk, and when it replays its log).
func (j *MemoryJournal) Apply(c Completion, t time.Time) {
	sid, at := SID(c.Source, c.ID), t.UnixNano()
	j.mu.Lock()
	defer j.mu.Unlock()
	j.restoreDone(sid, c.Fate, at)
	for _, k := range c.Keys {
		j.restoreLast(k, sid, at)
	}
	delete(j.steps, sid)
	j.prune()
}

// RestoreDone records sid (see SID) handled with fate at unix nanos at,
// without keys: the durable journal's snapshot records.
func (j *MemoryJournal) RestoreDone(sid, fate string, at int64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.restoreDone(sid, fate, at)
}

// RestoreLast records sid as the last message handled under key at unix
// nanos at: the durable journal's snapshot records.
func (j *MemoryJournal) RestoreLast(key, sid string, at int64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.restoreLast(key, sid, at)
}

func (j *MemoryJournal) restoreDone(sid, fate string, at int64) {
	if fate == "" {
		fate = FateAcked
	}
	j.done[sid] = doneEntry{at: at, fate: fate}
	j.doneQ.push(sid, at)
}

func (j *MemoryJournal) restoreLast(key, sid string, at int64) {
	j.last[key] = lastEntry{sid: sid, at: at}
	j.lastQ.push(key, at)
}

// ApplyStep records step i of a plan of sid done at t with res.
func (j *MemoryJournal) ApplyStep(sid, rule string, i int, res actions.Result, t time.Time) {
	j.mu.Lock()
	defer j.mu.Unlock()
	rs := j.steps[sid]
	if rs == nil {
		rs = map[string]*planSteps{}
		j.steps[sid] = rs
	}
	ps := rs[rule]
	if ps == nil {
		ps = &planSteps{res: map[int]actions.Result{}}
		rs[rule] = ps
	}
	ps.res[i] = res
	ps.at = max(ps.at, t.UnixNano())
}

// prune drops what fell out of the window or beyond MaxEntries; every
// 4,096 operations also stale step records. j.mu is held.
func (j *MemoryJournal) prune() {
	now := j.opts.Now().UnixNano()
	cutoff := now - int64(j.opts.Window)
	for {
		k, at, ok := j.doneQ.peek()
		if !ok || (at >= cutoff && len(j.done) <= j.opts.MaxEntries) {
			break
		}
		j.doneQ.pop()
		if d, ok := j.done[k]; ok && d.at == at {
			delete(j.done, k)
		}
	}
	for {
		k, at, ok := j.lastQ.peek()
		if !ok || (at >= cutoff && len(j.last) <= j.opts.MaxEntries) {
			break
		}
		j.lastQ.pop()
		if l, ok := j.last[k]; ok && l.at == at {
			delete(j.last, k)
		}
	}
	j.ops++
	if j.ops%4096 == 0 {
		stale := now - int64(j.opts.StepMaxAge)
		for sid, rs := range j.steps {
			for rule, ps := range rs {
				if ps.at < stale {
					delete(rs, rule)
				}
			}
			if len(rs) == 0 {
				delete(j.steps, sid)
			}
		}
	}
}

// Snapshot calls the functions with everything the journal holds (the
// durable journal's compaction): handled ids, keys, step records. It holds
// the journal's lock meanwhile.
func (j *MemoryJournal) Snapshot(done func(sid, fate string, at int64), last func(key, sid string, at int64),
	step func(sid, rule string, i int, res actions.Result, at int64)) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.prune()
	for sid, d := range j.done {
		done(sid, d.fate, d.at)
	}
	for k, l := range j.last {
		last(k, l.sid, l.at)
	}
	for sid, rs := range j.steps {
		for rule, ps := range rs {
			for i, res := range ps.res {
				step(sid, rule, i, res, ps.at)
			}
		}
	}
}

// Len returns the number of handled ids and of keys kept.
func (j *MemoryJournal) Len() (ids, keys int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.done), len(j.last)
}

// StepDone returns the recorded result of step i of a plan of sid.
func (j *MemoryJournal) StepDone(sid, rule string, i int) (actions.Result, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	ps := j.steps[sid][rule]
	if ps == nil {
		return nil, false
	}
	r, ok := ps.res[i]
	return r, ok
}

// Outbox implements Outboxer: the recorded emitted events whose
// completion is not recorded, oldest first.
func (j *MemoryJournal) Outbox() []actions.Result {
	j.mu.Lock()
	defer j.mu.Unlock()
	type rec struct {
		at  int64
		res actions.Result
	}
	var recs []rec
	for _, rs := range j.steps {
		if ps := rs[outboxRule]; ps != nil {
			if res, ok := ps.res[0]; ok {
				recs = append(recs, rec{ps.at, res})
			}
		}
	}
	slices.SortFunc(recs, func(a, b rec) int { return cmp.Compare(a.at, b.at) })
	out := make([]actions.Result, len(recs))
	for i, r := range recs {
		out[i] = r.res
	}
	return out
}

// Close implements Journal.
func (j *MemoryJournal) Close() error { return nil }

type memProgress struct {
	j         *MemoryJournal
	sid, rule string
}

func (p *memProgress) Done(i int) (actions.Result, bool) { return p.j.StepDone(p.sid, p.rule, i) }

func (p *memProgress) Record(i int, res actions.Result) error {
	p.j.ApplyStep(p.sid, p.rule, i, res, p.j.opts.Now())
	return nil
}

// fifo is a queue of (key, time) in insertion order, for pruning by age:
// a ring that doubles when full, so that a journal at its steady size (as
// many pushed as pruned) pushes and pops without allocating or copying.
type fifo struct {
	items []fifoItem
	head  int // index of the oldest item
	n     int // items queued
}

type fifoItem struct {
	k  string
	at int64
}

func (q *fifo) push(k string, at int64) {
	if q.n == len(q.items) {
		grown := make([]fifoItem, max(64, 2*len(q.items)))
		q.n = copy(grown, q.items[q.head:])
		q.n += copy(grown[q.n:], q.items[:q.head])
		q.items, q.head = grown, 0
	}
	q.items[(q.head+q.n)%len(q.items)] = fifoItem{k, at}
	q.n++
}

func (q *fifo) peek() (string, int64, bool) {
	if q.n == 0 {
		return "", 0, false
	}
	it := q.items[q.head]
	return it.k, it.at, true
}

func (q *fifo) pop() {
	q.items[q.head] = fifoItem{} // drop the key for the GC
	q.head = (q.head + 1) % len(q.items)
	q.n--
}
