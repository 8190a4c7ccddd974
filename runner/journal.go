package runner

import (
	"sync"
	"time"

	"github.com/eventfn/eventfn/actions"
)

// Journal remembers, per message id, which plan steps completed and whether
// the message was fully handled, for de-duplication and resumption.
type Journal interface {
	// Completed reports whether the message was handled to the end before.
	Completed(id string) bool
	// Progress returns the step record of one plan (by rule name) of a message.
	Progress(id, rule string) Progress
	// Complete marks the message handled; its step records may be dropped.
	Complete(id string) error
	// Close releases the journal.
	Close() error
}

// FateJournal is a Journal that also remembers how each handled message was
// settled. The runner needs it for dead-lettered messages: it records a
// message as handled before the broker hears of its fate, so when the
// dead-lettering does not reach the broker (the connection closed, or
// eventfn died, in between) the broker redelivers the message, and a
// journal that only knew "handled" would have it acknowledged as a
// duplicate: lost, in neither queue. With its fate known, the copy is
// dead-lettered again.
type FateJournal interface {
	Journal
	// CompleteFate is Complete that also records fate (FateAcked,
	// FateDeadLettered).
	CompleteFate(id, fate string) error
	// Fate returns the fate recorded for a handled message, FateAcked when
	// none was.
	Fate(id string) string
}

// Fates of handled messages, as the runner settles them (and as the fate
// label of eventfn_messages_settled_total).
const (
	FateAcked        = "acked"
	FateDeadLettered = "dead_lettered"
)

// MemoryJournal is a Journal in memory, bounded by age and entry count. It
// de-duplicates within one process lifetime only.
type MemoryJournal struct {
	mu         sync.Mutex
	maxAge     time.Duration
	maxEntries int
	done       map[string]time.Time
	fates      map[string]string // ids whose fate is not FateAcked
	order      []string
	steps      map[string]map[int]actions.Result // id + "\x00" + rule → step → result
	now        func() time.Time
}

// NewMemoryJournal returns a journal keeping up to maxEntries completed ids
// for up to maxAge (defaults: 100,000 and 24h).
func NewMemoryJournal(maxAge time.Duration, maxEntries int) *MemoryJournal {
	if maxAge <= 0 {
		maxAge = 24 * time.Hour
	}
	if maxEntries <= 0 {
		maxEntries = 100_000
	}
	return &MemoryJournal{maxAge: maxAge, maxEntries: maxEntries, done: map[string]time.Time{},
		fates: map[string]string{}, steps: map[string]map[int]actions.Result{}, now: time.Now}
}

// Completed implements Journal.
func (j *MemoryJournal) Completed(id string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	t, ok := j.done[id]
	return ok && j.now().Sub(t) < j.maxAge
}

// Progress implements Journal.
func (j *MemoryJournal) Progress(id, rule string) Progress {
	return &memProgress{j: j, key: id + "\x00" + rule}
}

// Complete implements Journal.
func (j *MemoryJournal) Complete(id string) error { return j.CompleteFate(id, FateAcked) }

// CompleteFate implements FateJournal.
func (j *MemoryJournal) CompleteFate(id, fate string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if fate == FateAcked {
		delete(j.fates, id)
	} else {
		j.fates[id] = fate
	}
	for k := range j.steps {
		if len(k) > len(id) && k[:len(id)] == id && k[len(id)] == 0 {
			delete(j.steps, k)
		}
	}
	if _, ok := j.done[id]; !ok {
		j.order = append(j.order, id)
	}
	j.done[id] = j.now()
	for len(j.order) > j.maxEntries {
		delete(j.done, j.order[0])
		delete(j.fates, j.order[0])
		j.order = j.order[1:]
	}
	return nil
}

// Fate implements FateJournal.
func (j *MemoryJournal) Fate(id string) string {
	j.mu.Lock()
	defer j.mu.Unlock()
	if f, ok := j.fates[id]; ok {
		return f
	}
	return FateAcked
}

// Close implements Journal.
func (j *MemoryJournal) Close() error { return nil }

type memProgress struct {
	j   *MemoryJournal
	key string
}

func (p *memProgress) Done(i int) (actions.Result, bool) {
	p.j.mu.Lock()
	defer p.j.mu.Unlock()
	r, ok := p.j.steps[p.key][i]
	return r, ok
}

func (p *memProgress) Record(i int, res actions.Result) error {
	p.j.mu.Lock()
	defer p.j.mu.Unlock()
	m := p.j.steps[p.key]
	if m == nil {
		m = map[int]actions.Result{}
		p.j.steps[p.key] = m
	}
	m[i] = res
	return nil
}
