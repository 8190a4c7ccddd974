package runner

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
)

// BenchmarkDispatch measures Submit plus running a job that does nothing,
// with the runner's sizing (concurrency 8, room for 32 jobs).
//
//   - unkeyed: a goroutine per job, bounded by the semaphore.
//   - keyed-distinct: every job its own key (Waldur orders keyed by
//     order_uuid): the keys map is touched twice per job.
//   - keyed-same: one key for all (one resource's events): jobs queue
//     behind each other and run one at a time on one goroutine.
//
// Allocation budget: the job closure is the caller's (one allocation in
// the runner, counted here too: it captures the counter). Unkeyed jobs
// add no allocation of their own (the goroutine comes from the runtime's
// free list); keyed jobs may allocate when the per-key slice grows
// (keyed-same) or when the keys map grows. Nothing else allocates per job.
func BenchmarkDispatch(b *testing.B) {
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "resource-" + strconv.Itoa(i)
	}
	for _, c := range []struct {
		name string
		key  func(i int) string
	}{
		{"unkeyed", func(int) string { return "" }},
		{"keyed-distinct", func(i int) string { return keys[i%len(keys)] }},
		{"keyed-same", func(int) string { return "one" }},
	} {
		b.Run(c.name, func(b *testing.B) {
			d := NewDispatcher(8, 32)
			ctx := context.Background()
			var ran atomic.Int64
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := d.Submit(ctx, c.key(i), func() { ran.Add(1) }); err != nil {
					b.Fatal(err)
				}
				i++
			}
			d.Wait()
			if int(ran.Load()) != i {
				b.Fatalf("ran %d of %d jobs", ran.Load(), i)
			}
		})
	}
}
