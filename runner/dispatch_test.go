package runner

import (
	"context"
	"fmt"
	"strings"
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

// bigPayload is a body of about 400 KB: items of 400 characters.
func bigPayload(key string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"k": %q, "items": [`, key)
	for i := range 1000 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q", strings.Repeat(string(rune('a'+i%26)), 399)+fmt.Sprint(i%10))
	}
	b.WriteString("]}")
	return []byte(b.String())
}

// expensiveRules has a when that compares every item of a 400 KB payload
// with every other (a million comparisons), and records each plan.
const expensiveRules = `
version: 1
types: [big, small]
rules:
  - name: slow
    on: big
    key: payload.k
    when: >-
      count(payload.items, {let x = #; count(payload.items, lower(x) == #) >= 1}) == len(payload.items)
    steps: [{record: {what: "{{ payload.k }}"}}]
  - name: fast
    on: small
    key: payload.k
    steps: [{record: {what: "{{ payload.k }}"}}]
`

// TestExpensiveConditionDoesNotHoldUpOthers: an expensive when on a 400 KB
// payload is evaluated in the worker pool, under its rule's key: the
// delivery of the events behind it goes on, and an event of another key
// runs before the expensive condition is decided. Events of the same key
// still run in arrival order.
func TestExpensiveConditionDoesNotHoldUpOthers(t *testing.T) {
	r, rc := newRecordingRunner(t, expensiveRules, nil)
	sa, sb := newSettler(), newSettler()
	r.Deliver(context.Background(), &Message{Source: "t", Type: "big", Body: bigPayload("A"), Settler: sa})
	// Deliver(A) returned with A's condition still to be evaluated; B,
	// behind it, is delivered and runs.
	r.Deliver(context.Background(), &Message{Source: "t", Type: "small", Body: []byte(`{"k": "B"}`), Settler: sb})
	if first := (<-rc.got).Params["what"]; first != "B" {
		t.Fatalf("%v ran first: the event behind the expensive condition waited for it", first)
	}
	if f := <-sb.done; f != "ack" {
		t.Fatalf("B: %s", f)
	}
	if second := (<-rc.got).Params["what"]; second != "A" {
		t.Fatalf("then %v ran, want A", second)
	}
	if f := <-sa.done; f != "ack" {
		t.Fatalf("A: %s", f)
	}
}

func TestSameKeyKeepsArrivalOrderAcrossConditions(t *testing.T) {
	r, rc := newRecordingRunner(t, expensiveRules, nil)
	sa, sb := newSettler(), newSettler()
	r.Deliver(context.Background(), &Message{Source: "t", Type: "big", Body: bigPayload("K"), Settler: sa})
	r.Deliver(context.Background(), &Message{Source: "t", Type: "small", Body: []byte(`{"k": "K", "second": true}`), Settler: sb})
	<-sa.done
	<-sb.done
	if len(rc.reqs) != 2 || rc.reqs[0].Type != "big" || rc.reqs[1].Type != "small" {
		t.Fatalf("same key ran as %+v, want big then small", rc.reqs)
	}
}

// TestDispatcherNestedJobsNeedNoRoom: jobs that submit jobs while every
// unit of room is taken (by themselves and by the jobs queued behind them)
// would wait for good with Submit; SubmitNested never waits, its jobs run,
// and a nested job of a busy key runs after that key's running job, in
// order, while room-holding and nested jobs under one key keep their
// order too.
func TestDispatcherNestedJobsNeedNoRoom(t *testing.T) {
	d := NewDispatcher(2, 2)
	var mu sync.Mutex
	var order []string
	note := func(s string) {
		mu.Lock()
		order = append(order, s)
		mu.Unlock()
	}
	for i := range 2 {
		key := fmt.Sprint("k", i)
		if err := d.Submit(context.Background(), key, func() {
			note(key + "/parent")
			// The room is full: both units are the two parents'.
			d.SubmitNested(key, func() { note(key + "/child1") })
			d.SubmitNested(key, func() { note(key + "/child2") })
			d.SubmitNested("", func() { note(key + "/unkeyed") })
		}); err != nil {
			t.Fatal(err)
		}
	}
	finished := make(chan struct{})
	go func() { d.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(30 * time.Second):
		t.Fatal("nested jobs did not run: they waited for room")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(order) != 8 {
		t.Fatalf("ran %v, want 8 jobs", order)
	}
	for _, k := range []string{"k0", "k1"} {
		var seq []string
		for _, s := range order {
			if strings.HasPrefix(s, k+"/") && !strings.HasSuffix(s, "unkeyed") {
				seq = append(seq, s)
			}
		}
		if want := []string{k + "/parent", k + "/child1", k + "/child2"}; fmt.Sprint(seq) != fmt.Sprint(want) {
			t.Errorf("key %s ran %v, want %v", k, seq, want)
		}
	}
	// The room is free again: Submit does not wait.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 2 {
		if err := d.Submit(ctx, "", func() {}); err != nil {
			t.Fatalf("room not released after nested jobs: %v", err)
		}
	}
	d.Wait()
}
