package journal

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/rules"
	"github.com/eventfn/eventfn/runner"
)

// restarts opens a journal for each run of a message across restarts: the
// same in-memory journal each time (kind "memory"), or the durable journal
// of one directory, replayed at each open (kind "durable"; close closes it
// between runs).
type restarts struct {
	t    *testing.T
	kind string
	dir  string
	mem  *runner.MemoryJournal
}

func newRestarts(t *testing.T, kind string) *restarts {
	return &restarts{t: t, kind: kind, dir: t.TempDir(), mem: runner.NewMemoryJournal(0, 0)}
}

func (rs *restarts) open() runner.Journal {
	if rs.kind == "memory" {
		return rs.mem
	}
	j, err := Open(rs.dir, Options{})
	if err != nil {
		rs.t.Fatal(err)
	}
	return j
}

func (rs *restarts) close(j runner.Journal) {
	if rs.kind == "durable" {
		if err := j.Close(); err != nil {
			rs.t.Fatal(err)
		}
	}
}

// runOnce starts a runner of set over j, delivers one order (id m1, body),
// waits for its fate, stops the runner and returns the fate. ctx ending
// first stops the runner meanwhile (its plans get 50 ms).
func runOnce(ctx context.Context, t *testing.T, set *rules.Ruleset, reg *actions.Registry, j runner.Journal, body string) string {
	t.Helper()
	src := &chanSource{msgs: make(chan *runner.Message, 1)}
	s := make(fateSettler, 1)
	r := runner.New(runner.Config{Rules: set, Actions: reg, Logger: slog.New(slog.DiscardHandler), Journal: j,
		ShutdownTimeout: 50 * time.Millisecond, Sources: []runner.Source{src}})
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	src.msgs <- &runner.Message{Source: "t", Type: "order", ID: "m1", Body: []byte(body), Settler: s}
	fate := <-s
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
	return fate
}
