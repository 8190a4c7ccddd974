package runner

import (
	"context"
	"errors"
	"sync"
)

// brood is what a message waits for before it is settled: the events its
// emit steps derived (see emit). An emitted event lives in the runner only,
// so its parent is what the broker (and the journal) hold for it: the
// parent is settled only once each of its derived events is, and is left
// for redelivery when one of them is (the runner stopped while it ran).
// On redelivery the parent's emit steps run again (they are never recorded
// done) and emit the same ids, which the journal recognises when their
// events had completed.
type brood struct {
	mu      sync.Mutex
	pending int
	// left: a derived event was left unsettled, for redelivery.
	left bool
	// settle is the parent's settlement, waiting for pending to reach 0.
	settle func(left bool)
}

// add counts a derived event about to be delivered.
func (b *brood) add() {
	b.mu.Lock()
	b.pending++
	b.mu.Unlock()
}

// done counts a derived event settled; left when it was not handled (it
// was requeued). The last one runs the parent's settlement if it waits.
func (b *brood) done(left bool) {
	b.mu.Lock()
	b.pending--
	b.left = b.left || left
	var settle func(bool)
	if b.pending == 0 {
		settle, b.settle = b.settle, nil
	}
	left = b.left
	b.mu.Unlock()
	if settle != nil {
		settle(left)
	}
}

// wait runs settle once no derived event is pending: at once, or when the
// last one settles (on its goroutine). settle learns whether one was left
// for redelivery.
func (b *brood) wait(settle func(left bool)) {
	b.mu.Lock()
	if b.pending > 0 {
		b.settle = settle
		b.mu.Unlock()
		return
	}
	left := b.left
	b.mu.Unlock()
	settle(left)
}

// errEmittedLeft is the reason a message is left for redelivery when an
// event it emitted was.
var errEmittedLeft = errors.New("an event it emitted was not handled (the runner stopped): left for redelivery, to emit it again")

type parentKey struct{}

// withParent returns ctx carrying m as the parent of the events emitted
// under it.
func withParent(ctx context.Context, m *Message) context.Context {
	return context.WithValue(ctx, parentKey{}, m)
}

// parentOf returns the message whose plan runs under ctx, if its rules
// emit.
func parentOf(ctx context.Context) *Message {
	m, _ := ctx.Value(parentKey{}).(*Message)
	return m
}

// descendsFrom reports whether m was emitted, directly or not, by a plan
// of p.
func (m *Message) descendsFrom(p *Message) bool {
	for a := m.parent; a != nil; a = a.parent {
		if a == p {
			return true
		}
	}
	return false
}
