package timer_test

import (
	"strings"
	"testing"

	"github.com/eventfn/eventfn/config"
	"github.com/eventfn/eventfn/runner/timer"
	"github.com/eventfn/eventfn/source"
)

// TestKind loads timer sources through the config loader and the plug-in.
func TestKind(t *testing.T) {
	src := "version: 1\nrules: [{name: r, on: timer, steps: [{log: tick}]}]\nsources:\n  - name: hourly\n    timer: {every: 1h, at_start: true}\n"
	reg, err := source.NewRegistry(timer.Kind())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("t.yaml", []byte(src), config.Options{Sources: reg})
	if err != nil {
		t.Fatal(err)
	}
	e := cfg.Sources[0]
	if e.Kind.Name() != "timer" {
		t.Fatalf("timer: key chose kind %s", e.Kind.Name())
	}
	if types, open := e.Kind.Types(e); open || len(types) != 1 || types[0] != timer.EventType {
		t.Fatalf("types %v open %v", types, open)
	}
	s, err := e.Kind.Build(e, source.Deps{})
	if err != nil || s.Name() != "hourly" {
		t.Fatalf("Build: %+v, %v", s, err)
	}
	for _, c := range []struct{ timer, want string }{
		{"{evry: 1h}", `t.yaml:5:13: `},
		{"{every: 1ms}", "at least 1s"},
		{"{every: 1h, cron: '@hourly'}", "not both"},
	} {
		_, err := config.Parse("t.yaml", []byte(strings.Replace(src, "{every: 1h, at_start: true}", c.timer, 1)), config.Options{Sources: reg})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("timer %s: error %v, want %q", c.timer, err, c.want)
		}
	}
}
