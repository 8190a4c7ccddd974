package runner

import (
	"context"
	"sync"
	"sync/atomic"
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
//
// Jobs submitted from a running job (SubmitNested: the events an emit step
// derives) take no room: the job submitting them holds a worker, and a
// worker waiting for room that only queued jobs could free (they need a
// worker to run) would wait for good once every worker did.
type Dispatcher struct {
	max  int
	room chan struct{} // submitted but unfinished jobs: bounds memory
	work chan task     // runnable jobs waiting for a worker
	mu   sync.Mutex
	// workers counts the worker goroutines, busy or waiting for work.
	workers int
	keys    map[string][]task // pending jobs of keys that have one running
	// nested holds runnable nested jobs (they bypass work, which room
	// bounds); nestedReady tells a waiting worker of one.
	nested      []task
	nestedN     atomic.Int32 // len(nested), read without the lock
	nestedReady chan struct{}
	wg          sync.WaitGroup
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
	// roomed: the job holds a unit of room (Submit), released when it ends.
	roomed bool
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
		work:        make(chan task, queue),
		keys:        map[string][]task{},
		nestedReady: make(chan struct{}, 1),
		idle:        workerIdle,
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
	if d.queueBehindKey(key, job, true) {
		return nil
	}
	d.work <- task{key: key, job: job, roomed: true}
	d.startWorker()
	return nil
}

// SubmitNested schedules job under key, like Submit, from a running job:
// it never blocks, and the job takes no room (see Dispatcher).
func (d *Dispatcher) SubmitNested(key string, job func()) {
	d.wg.Add(1)
	d.mu.Lock()
	if d.queueBehindKey(key, job, false) {
		d.mu.Unlock()
		return
	}
	d.nested = append(d.nested, task{key: key, job: job})
	d.nestedN.Add(1)
	d.startWorker()
	d.mu.Unlock()
	select {
	case d.nestedReady <- struct{}{}:
	default:
	}
}

// queueBehindKey queues job behind the running job of key, if there is
// one, and reports whether it did; else it marks key running. d.mu is held.
func (d *Dispatcher) queueBehindKey(key string, job func(), roomed bool) bool {
	if key == "" {
		return false
	}
	if queued, busy := d.keys[key]; busy {
		d.keys[key] = append(queued, task{key: key, job: job, roomed: roomed})
		return true
	}
	d.keys[key] = nil
	return false
}

// startWorker starts a worker while there are fewer than max. d.mu is held.
func (d *Dispatcher) startWorker() {
	if d.workers < d.max {
		d.workers++
		go d.worker()
	}
}

// takeNested returns a runnable nested job, if any.
func (d *Dispatcher) takeNested() (task, bool) {
	if d.nestedN.Load() == 0 { // the common case, without the lock
		return task{}, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.nested) == 0 {
		return task{}, false
	}
	t := d.nested[0]
	d.nested[0] = task{}
	d.nested = d.nested[1:]
	d.nestedN.Add(-1)
	if len(d.nested) > 0 { // another worker may take the next
		select {
		case d.nestedReady <- struct{}{}:
		default:
		}
	}
	return t, true
}

// worker runs tasks until there has been none for d.idle.
func (d *Dispatcher) worker() {
	idle := time.NewTimer(d.idle)
	defer idle.Stop()
	for {
		t, ok := d.takeNested()
		if !ok {
			select {
			case t = <-d.work:
			default:
				idle.Reset(d.idle)
				select {
				case t = <-d.work:
				case <-d.nestedReady:
					continue
				case <-idle.C:
					// Exit, unless a task came in meanwhile: Submit starts a
					// worker only while there are fewer than max.
					d.mu.Lock()
					if len(d.work) > 0 || len(d.nested) > 0 {
						d.mu.Unlock()
						continue
					}
					d.workers--
					d.mu.Unlock()
					return
				}
			}
		}
		d.run(t)
	}
}

// run runs t's job, then, for a keyed task, the jobs queued behind it under
// the same key.
func (d *Dispatcher) run(t task) {
	for job, roomed := t.job, t.roomed; job != nil; {
		job()
		if roomed {
			<-d.room
		}
		d.wg.Done()
		if t.key == "" {
			return
		}
		d.mu.Lock()
		if queued := d.keys[t.key]; len(queued) > 0 {
			job, roomed = queued[0].job, queued[0].roomed
			d.keys[t.key] = queued[1:]
		} else {
			delete(d.keys, t.key)
			job = nil
		}
		d.mu.Unlock()
	}
}

// Wait blocks until every submitted job has finished.
func (d *Dispatcher) Wait() { d.wg.Wait() }
