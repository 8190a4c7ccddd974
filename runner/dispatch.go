package runner

import (
	"context"
	"sync"
	"time"
)

// Dispatcher runs jobs on at most Concurrency goroutines at once. Jobs with
// the same non-empty key run one at a time, in the order they were
// submitted; jobs with different keys (or no key) run in parallel.
//
// Its goroutines are workers: each takes job after job while there is
// work, and waits workerIdle for more before it exits. A worker keeps the
// stack its earlier jobs grew; a new goroutine per job had to grow its
// stack, by copying it, for nearly every job (a plan's call depth through
// the executor, the retry wrapper and an action's parameter decoding is
// beyond a new goroutine's stack), which cost about a tenth of the CPU of
// a busy runner.
type Dispatcher struct {
	max  int
	room chan struct{} // submitted but unfinished jobs: bounds memory
	work chan task     // runnable jobs waiting for a worker
	mu   sync.Mutex
	// workers counts the worker goroutines, busy or waiting for work.
	workers int
	keys    map[string][]func() // pending jobs of keys that have one running
	wg      sync.WaitGroup
	// idle is how long a worker without work waits before it exits.
	idle time.Duration
}

// workerIdle is how long a worker without work waits for more before it
// exits.
const workerIdle = 10 * time.Second

// task is a runnable job; a keyed task also runs the jobs queued behind it
// under its key.
type task struct {
	key string
	job func()
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
		max:  concurrency,
		room: make(chan struct{}, queue),
		// Never full: it holds at most the jobs room admits.
		work: make(chan task, queue),
		keys: map[string][]func(){},
		idle: workerIdle,
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
	d.mu.Lock()
	defer d.mu.Unlock()
	if key != "" {
		if pending, busy := d.keys[key]; busy {
			d.keys[key] = append(pending, job)
			return nil
		}
		d.keys[key] = nil
	}
	d.work <- task{key: key, job: job}
	if d.workers < d.max {
		d.workers++
		go d.worker()
	}
	return nil
}

// worker runs tasks until there has been none for d.idle.
func (d *Dispatcher) worker() {
	idle := time.NewTimer(d.idle)
	defer idle.Stop()
	for {
		var t task
		select {
		case t = <-d.work:
		default:
			idle.Reset(d.idle)
			select {
			case t = <-d.work:
			case <-idle.C:
				// Exit, unless a task came in meanwhile: Submit starts a
				// worker only while there are fewer than max.
				d.mu.Lock()
				if len(d.work) > 0 {
					d.mu.Unlock()
					continue
				}
				d.workers--
				d.mu.Unlock()
				return
			}
		}
		d.run(t)
	}
}

// run runs t's job, then, for a keyed task, the jobs queued behind it under
// the same key.
func (d *Dispatcher) run(t task) {
	for job := t.job; job != nil; {
		job()
		<-d.room
		d.wg.Done()
		if t.key == "" {
			return
		}
		d.mu.Lock()
		if pending := d.keys[t.key]; len(pending) > 0 {
			job = pending[0]
			d.keys[t.key] = pending[1:]
		} else {
			delete(d.keys, t.key)
			job = nil
		}
		d.mu.Unlock()
	}
}

// Wait blocks until every submitted job has finished.
func (d *Dispatcher) Wait() { d.wg.Wait() }
