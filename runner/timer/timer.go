// Package timer is a source of "timer" events: one per tick of a fixed
// period (every: 1h) or of a cron schedule (cron: "*/15 * * * *"), and,
// with at_start, one as soon as the source starts. Rules use them for
// periodic work such as reconciliation, usually with emit steps that feed
// derived events back into the runner.
//
// Each tick is the event
//
//	{"type": "timer", "payload": {"name": NAME, "time": RFC 3339 UTC}}
//
// (the at_start tick's payload also has "start": true) with the id
// "timer:NAME:TIME" (unique per tick). A tick that comes while
// the previous one is still being delivered (the runner is full) is not
// queued: the next tick is computed from the time delivery returned, so a
// slow runner sees fewer ticks, never a backlog.
package timer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/eventfn/eventfn/event"
	"github.com/eventfn/eventfn/runner"
	"github.com/eventfn/eventfn/source"
)

// EventType is the type of the events a timer emits.
const EventType = "timer"

// Config is a timer source's settings: the `timer:` key of a source.
type Config struct {
	// Every is a fixed period (at least 1s). Exclusive with Cron.
	Every time.Duration `yaml:"every"`
	// Cron is a five-field cron expression (minute hour day-of-month month
	// day-of-week) or a descriptor (@hourly, @daily, @every 90m),
	// evaluated in UTC. Exclusive with Every.
	Cron string `yaml:"cron"`
	// AtStart emits one tick as soon as the source starts.
	AtStart bool `yaml:"at_start"`
}

// Clock is the time the source reads and waits on; tests pass a fake.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed, and a stop
	// function releasing it.
	After(d time.Duration) (<-chan time.Time, func())
}

// Deps are what the source needs besides its settings.
type Deps struct {
	// Clock is the clock (nil: the real one).
	Clock Clock
	// Logger receives the source's logs (nil: slog.Default()).
	Logger *slog.Logger
}

// Source emits timer events. It implements runner.Source.
type Source struct {
	name  string
	cfg   Config
	sched cron.Schedule
	clock Clock
	log   *slog.Logger
}

// New returns a timer source named name (the payload's name).
func New(name string, cfg Config, d Deps) (*Source, error) {
	if name == "" {
		return nil, errors.New("timer: a timer needs a name")
	}
	var sched cron.Schedule
	switch {
	case cfg.Every != 0 && cfg.Cron != "":
		return nil, errors.New("timer: set one of every and cron, not both")
	case cfg.Every != 0:
		if cfg.Every < time.Second {
			return nil, fmt.Errorf("timer: every %s: want at least 1s", cfg.Every)
		}
		sched = cron.ConstantDelaySchedule{Delay: cfg.Every}
	case cfg.Cron != "":
		s, err := cron.ParseStandard(cfg.Cron)
		if err != nil {
			return nil, fmt.Errorf("timer: cron %q: %w", cfg.Cron, err)
		}
		sched = s
	default:
		return nil, errors.New("timer: set every (e.g. every: 1h) or cron (e.g. cron: \"0 * * * *\")")
	}
	if d.Clock == nil {
		d.Clock = realClock{}
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	return &Source{name: name, cfg: cfg, sched: sched, clock: d.Clock, log: d.Logger}, nil
}

// Settings are a timer source's settings: a source with a timer: key and
// no url.
type Settings struct {
	Timer Config `yaml:"timer"`
}

// Kind is the source plug-in of timers (a source with a timer: key).
func Kind() source.Kind {
	return &source.Plugin[Settings]{
		KindName: "timer",
		Implied:  "timer",
		CheckSpec: func(s *source.Spec[Settings]) []error {
			if s.URL != "" {
				return []error{source.AtKey("url", "a timer source has no url (write timer: {every: 1h})")}
			}
			if _, err := New(s.Name, s.Settings.Timer, Deps{}); err != nil {
				return []error{source.AtKey("timer", "%v", err)}
			}
			return nil
		},
		TypesOf: func(*source.Spec[Settings]) ([]string, bool) { return []string{EventType}, false },
		BuildSpec: func(s *source.Spec[Settings], d source.Deps) (runner.Source, error) {
			return New(s.Name, s.Settings.Timer, Deps{Logger: d.Logger})
		},
	}
}

// Name implements runner.Source.
func (s *Source) Name() string { return s.name }

// Run emits ticks until ctx ends.
func (s *Source) Run(ctx context.Context, deliver runner.Deliver) error {
	if s.cfg.AtStart {
		if err := s.tick(ctx, deliver, s.clock.Now(), true); err != nil {
			return nil // ctx ended
		}
	}
	for {
		now := s.clock.Now()
		next := s.sched.Next(now.UTC())
		c, stop := s.clock.After(next.Sub(now))
		select {
		case <-ctx.Done():
			stop()
			return nil
		case at := <-c:
			if err := s.tick(ctx, deliver, at, false); err != nil {
				return nil
			}
		}
	}
}

func (s *Source) tick(ctx context.Context, deliver runner.Deliver, at time.Time, start bool) error {
	ts := at.UTC().Format(time.RFC3339Nano)
	id := "timer:" + s.name + ":" + ts
	ev := &event.Event{Type: EventType, ID: id,
		Payload: map[string]any{"name": s.name, "time": at.UTC().Format(time.RFC3339)}}
	if start {
		ev.Payload["start"] = true
	}
	m := &runner.Message{Source: s.name, Destination: "timer:" + s.name, ID: id, Type: EventType,
		Event: ev, Received: at, Settler: settler{}}
	s.log.Debug("timer tick", "source", s.name, "id", id)
	return deliver(ctx, m)
}

// settler settles ticks: there is no broker; a failed or interrupted tick
// is not repeated (the next tick does the work again).
type settler struct{}

func (settler) Ack(context.Context) error                { return nil }
func (settler) Requeue(context.Context) error            { return nil }
func (settler) DeadLetter(context.Context, string) error { return nil }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) After(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTimer(d)
	return t.C, func() { t.Stop() }
}
