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
// write waits for its batch's fdatasync (NoSync: without it).
func BenchmarkPlan(b *testing.B) {
	for _, c := range []struct {
		name           string
		folded, nosync bool
	}{{"folded", true, false}, {"unfolded", false, false}, {"folded-nosync", true, true}} {
		b.Run(c.name, func(b *testing.B) {
			j, err := Open(b.TempDir(), Options{NoSync: c.nosync, Logger: slog.New(slog.DiscardHandler)})
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
		})
	}
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
