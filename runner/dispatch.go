package runner

import (
	"context"
	"sync"
)

// Dispatcher runs jobs on at most Concurrency goroutines at once. Jobs with
// the same non-empty key run one at a time, in the order they were
// submitted; jobs with different keys (or no key) run in parallel.
type Dispatcher struct {
	sem  chan struct{} // running jobs
	room chan struct{} // submitted but unfinished jobs: bounds memory
	mu   sync.Mutex
	keys map[string][]func() // pending jobs of keys that have one running
	wg   sync.WaitGroup
}

// NewDispatcher returns a dispatcher running up to concurrency jobs, with up
// to queue more waiting before Submit blocks.
func NewDispatcher(concurrency, queue int) *Dispatcher {
	if concurrency < 1 {
		concurrency = 1
	}
	if queue < concurrency {
		queue = concurrency
	}
	return &Dispatcher{
		sem:  make(chan struct{}, concurrency),
		room: make(chan struct{}, queue),
		keys: map[string][]func(){},
	}
}

// Submit schedules job under key. It blocks while the dispatcher is full and
// returns ctx's error if ctx ends first (the job is then not scheduled).
func (d *Dispatcher) Submit(ctx context.Context, key string, job func()) error {
	if err := ctx.Err(); err != nil { // select picks at random when both are ready
		return err
	}
	select {
	case d.room <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	d.wg.Add(1)
	if key == "" {
		go d.run(job)
		return nil
	}
	d.mu.Lock()
	if pending, busy := d.keys[key]; busy {
		d.keys[key] = append(pending, job)
		d.mu.Unlock()
		return nil
	}
	d.keys[key] = nil
	d.mu.Unlock()
	go d.runKey(key, job)
	return nil
}

func (d *Dispatcher) run(job func()) {
	d.sem <- struct{}{}
	job()
	<-d.sem
	<-d.room
	d.wg.Done()
}

// runKey runs job, then the jobs queued behind it under the same key.
func (d *Dispatcher) runKey(key string, job func()) {
	for job != nil {
		d.run(job)
		d.mu.Lock()
		if pending := d.keys[key]; len(pending) > 0 {
			job = pending[0]
			d.keys[key] = pending[1:]
		} else {
			delete(d.keys, key)
			job = nil
		}
		d.mu.Unlock()
	}
}

// Wait blocks until every submitted job has finished.
func (d *Dispatcher) Wait() { d.wg.Wait() }
