package journal

import (
	"fmt"
	"log/slog"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/runner"
)

// BenchmarkPlan measures the journal's cost per one-step plan as the
// runner writes it, with 8 plans at once (the default concurrency):
// folded, the last step's record rides on the completion (one write per
// plan); unfolded, the step is recorded, then the completion (two). Each
// write waits for its batch's fdatasync (NoSync: without it). plans/sync
// is the mean batch: the committer yields while its batch grows (gather),
// so that the plans already runnable join it. Without gather: ~3.9 plans
// per sync and 38–46 µs per plan folded; with it ~7.8 (of the 8 at once)
// and 21–24 µs.
func BenchmarkPlan(b *testing.B) {
	for _, c := range []struct {
		name           string
		folded, nosync bool
	}{{"folded", true, false}, {"unfolded", false, false}, {"folded-nosync", true, true}} {
		b.Run(c.name, func(b *testing.B) {
			syncs := &countingSyncer{}
			j, err := Open(b.TempDir(), Options{NoSync: c.nosync, Logger: slog.New(slog.DiscardHandler),
				wrap: func(w writeSyncer) writeSyncer { syncs.writeSyncer = w; return syncs }})
			if err != nil {
				b.Fatal(err)
			}
			defer j.Close()
			var n atomic.Int64
			b.SetParallelism(8 / max(1, runtimeProcs()))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := fmt.Sprint("msg-", n.Add(1))
					if !c.folded {
						if err := j.Progress("bench", id, "r").Record(0, actions.Result{"ok": true}); err != nil {
							b.Error(err)
							return
						}
					}
					if err := j.Complete(runner.Completion{Source: "bench", ID: id, Keys: []string{"entity:order|order_uuid=" + id}, Fate: runner.FateAcked}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			if n := syncs.n.Load(); n > 0 && !c.nosync {
				b.ReportMetric(float64(b.N)/float64(n), "plans/sync")
			}
		})
	}
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }

// countingSyncer counts the log's syncs.
type countingSyncer struct {
	writeSyncer
	n atomic.Int64
}

func (c *countingSyncer) Sync() error {
	c.n.Add(1)
	return c.writeSyncer.Sync()
}
