package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/rules"
)

func ruleFile(name string) string {
	return fmt.Sprintf(`version: 1
rules:
  - name: %s
    on: order
    steps:
      - log: %s ran
`, name, name)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ruleNames(rs *rules.Ruleset) []string {
	var out []string
	for _, r := range rs.Rules {
		out = append(out, r.Name)
	}
	return out
}

// writeAtomically replaces path the way editors do: a new file renamed over it.
func writeAtomically(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestReloadOnFileChange(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "eventfn.yaml")
	inc := filepath.Join(dir, "rules.d", "more.yaml")
	if err := os.MkdirAll(filepath.Dir(inc), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(main, []byte(ruleFile("first")+"include: [rules.d/*.yaml]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inc, []byte(ruleFile("included")), 0o600); err != nil {
		t.Fatal(err)
	}
	load := func() (*rules.Ruleset, error) { return rules.Load(main, rules.Options{Actions: actions.Builtin()}) }
	rs, err := load()
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	r := New(Config{Rules: rs, Actions: actions.Standard(actions.Options{Logger: logger}), Logger: logger})
	m := r.Metrics()
	rl := &Reloader{Runner: r, Load: load, Debounce: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := rl.Start(ctx, nil)
	defer stop()

	deliverOrder := func(id string) {
		t.Helper()
		s := newOpsSettler()
		if err := r.Deliver(ctx, &Message{Source: "t", Type: "order", ID: id, Body: []byte(`{}`), Settler: s}); err != nil {
			t.Fatal(err)
		}
		if f := s.wait(t); f != "ack" {
			t.Fatalf("fate %q", f)
		}
	}
	deliverOrder("m1")
	if n := testCounterOps(m.RuleMatches.WithLabelValues("first")); n != 1 {
		t.Fatalf("first matched %v times", n)
	}

	// A good change, written the way editors do: it takes effect.
	writeAtomically(t, main, ruleFile("second")+"include: [rules.d/*.yaml]\n")
	waitFor(t, "the new rules", func() bool { return r.Rules().Rules[0].Name == "second" })
	if n := testCounterOps(m.Reloads.WithLabelValues("ok")); n < 1 {
		t.Errorf("reloads{ok} = %v", n)
	}
	deliverOrder("m2")
	if n := testCounterOps(m.RuleMatches.WithLabelValues("second")); n != 1 {
		t.Errorf("second matched %v times, want 1", n)
	}
	if n := testCounterOps(m.RuleMatches.WithLabelValues("first")); n != 1 {
		t.Errorf("first matched again after the reload: %v", n)
	}

	// A change of an included file is seen too.
	writeAtomically(t, inc, ruleFile("included_v2"))
	waitFor(t, "the included change", func() bool { return len(r.Rules().Rules) == 2 && r.Rules().Rules[1].Name == "included_v2" })

	// A broken change, written in place: rejected, the rules in force stay.
	okBefore := testCounterOps(m.Reloads.WithLabelValues("ok"))
	if err := os.WriteFile(main, []byte("version: 1\nrules:\n  - name: broken\n    on: order\n    steps:\n      - nope: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the failed reload to be counted", func() bool { return testCounterOps(m.Reloads.WithLabelValues("error")) >= 1 })
	if got := ruleNames(r.Rules()); len(got) != 2 || got[0] != "second" || got[1] != "included_v2" {
		t.Errorf("rules after a broken change = %v, want the old ones", got)
	}
	if n := testCounterOps(m.Reloads.WithLabelValues("ok")); n != okBefore {
		t.Errorf("reloads{ok} went from %v to %v on a broken file", okBefore, n)
	}
	deliverOrder("m3")
	if n := testCounterOps(m.RuleMatches.WithLabelValues("second")); n != 2 {
		t.Errorf("second matched %v times after the broken change, want 2", n)
	}

	// Fixed again: taken.
	writeAtomically(t, main, ruleFile("third"))
	waitFor(t, "the fixed rules", func() bool { return r.Rules().Rules[0].Name == "third" })
}

func TestReloadOnSignal(t *testing.T) {
	var calls atomic.Int32
	var fail atomic.Bool
	load := func() (*rules.Ruleset, error) {
		n := calls.Add(1)
		if fail.Load() {
			return nil, errors.New("bad rules")
		}
		return rules.Parse("sig.yaml", []byte(ruleFile(fmt.Sprintf("gen%d", n))), rules.Options{Actions: actions.Builtin()})
	}
	rs, err := rules.Parse("sig.yaml", []byte(ruleFile("gen0")), rules.Options{Actions: actions.Builtin()})
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	r := New(Config{Rules: rs, Logger: logger})
	rl := &Reloader{Runner: r, Load: load}
	hup := make(chan os.Signal)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rl.Run(ctx, hup) }()

	hup <- syscall.SIGHUP
	waitFor(t, "the reload on SIGHUP", func() bool { return r.Rules().Rules[0].Name == "gen1" })
	fail.Store(true)
	hup <- syscall.SIGHUP
	waitFor(t, "the failed reload", func() bool { return testCounterOps(r.Metrics().Reloads.WithLabelValues("error")) == 1 })
	if name := r.Rules().Rules[0].Name; name != "gen1" {
		t.Errorf("rules after a failed reload: %s", name)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestInFlightPlanFinishesOnOldRules(t *testing.T) {
	g := newGate()
	g.release = make(chan struct{})
	msg := orderMsg("m", "k")
	r := gateRunner(t, g, time.Minute, &opsSource{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := r.Deliver(ctx, msg); err != nil {
		t.Fatal(err)
	}
	<-g.started
	rl := &Reloader{Runner: r, Load: func() (*rules.Ruleset, error) {
		return rules.Parse("new.yaml", []byte(ruleFile("replacement")), rules.Options{Actions: actions.Builtin()})
	}}
	if err := rl.Reload("test"); err != nil {
		t.Fatal(err)
	}
	close(g.release)
	if f := msg.Settler.(*opsSettler).wait(t); f != "ack" {
		t.Errorf("fate = %q", f)
	}
	if n := testCounterOps(r.Metrics().Plans.WithLabelValues("slow", "success")); n != 1 {
		t.Errorf("the in-flight plan did not finish on the old rule: plans{slow,success} = %v", n)
	}
}
