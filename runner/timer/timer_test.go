package timer

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventfn/eventfn/runner"
)

// fakeClock is a clock the test moves. Each After call is announced on
// waits, so the test knows the source is waiting before it advances time.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	at    time.Time
	c     chan time.Time
	waits chan time.Duration
}

func newFakeClock(now time.Time) *fakeClock {
	return &fakeClock{now: now, waits: make(chan time.Duration, 1)}
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) After(d time.Duration) (<-chan time.Time, func()) {
	f.mu.Lock()
	c := make(chan time.Time, 1)
	f.c, f.at = c, f.now.Add(d)
	f.mu.Unlock()
	f.waits <- d
	return c, func() {}
}

// advance moves time to the pending wait's deadline and fires it.
func (f *fakeClock) fire() {
	f.mu.Lock()
	f.now = f.at
	c, at := f.c, f.at
	f.mu.Unlock()
	c <- at
}

func run(t *testing.T, cfg Config, clock *fakeClock) (chan *runner.Message, context.CancelFunc, chan error) {
	t.Helper()
	s, err := New("reconcile", cfg, Deps{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *runner.Message, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- s.Run(ctx, func(_ context.Context, m *runner.Message) error { got <- m; return nil })
	}()
	return got, cancel, done
}

func TestEveryAtStart(t *testing.T) {
	start := time.Date(2026, 12, 1, 8, 0, 30, 0, time.UTC)
	clock := newFakeClock(start)
	got, cancel, done := run(t, Config{Every: time.Hour, AtStart: true}, clock)
	first := <-got
	if first.Event.Type != "timer" || first.Event.Payload["name"] != "reconcile" || first.Event.Payload["time"] != "2026-12-01T08:00:30Z" || first.Event.Payload["start"] != true {
		t.Fatalf("at_start tick: %+v", first.Event)
	}
	if d := <-clock.waits; d != time.Hour {
		t.Fatalf("waits %s, want 1h", d)
	}
	clock.fire()
	second := <-got
	if second.Event.Payload["time"] != "2026-12-01T09:00:30Z" || second.Event.Payload["start"] != nil {
		t.Fatalf("second tick: %+v", second.Event.Payload)
	}
	if first.ID == second.ID || !strings.HasPrefix(first.ID, "timer:reconcile:") || second.Event.ID != second.ID {
		t.Fatalf("ids %q, %q: want unique timer:reconcile:… ids", first.ID, second.ID)
	}
	<-clock.waits
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestCronWithoutAtStart(t *testing.T) {
	clock := newFakeClock(time.Date(2026, 12, 1, 8, 7, 0, 0, time.UTC))
	got, cancel, done := run(t, Config{Cron: "*/15 * * * *"}, clock)
	if d := <-clock.waits; d != 8*time.Minute {
		t.Fatalf("first wait %s, want 8m (to 08:15)", d)
	}
	select {
	case m := <-got:
		t.Fatalf("tick before its time: %+v", m.Event)
	default:
	}
	clock.fire()
	if m := <-got; m.Event.Payload["time"] != "2026-12-01T08:15:00Z" {
		t.Fatalf("tick %+v", m.Event.Payload)
	}
	if d := <-clock.waits; d != 15*time.Minute {
		t.Fatalf("second wait %s, want 15m", d)
	}
	cancel()
	<-done
}

func TestInvalidConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "set every"},
		{Config{Every: time.Hour, Cron: "@hourly"}, "not both"},
		{Config{Every: time.Millisecond}, "at least 1s"},
		{Config{Cron: "61 * * * *"}, "cron"},
	} {
		if _, err := New("t", c.cfg, Deps{}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.cfg, err, c.want)
		}
	}
}
