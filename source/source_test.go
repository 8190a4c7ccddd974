package source

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/eventfn/eventfn/runner"
)

type fakeSettings struct {
	Queue string `yaml:"queue"`
}

type fakeSource struct{ name string }

func (f fakeSource) Name() string                              { return f.name }
func (f fakeSource) Run(context.Context, runner.Deliver) error { return nil }

func fakeKind(name string, schemes ...string) *Plugin[fakeSettings] {
	return &Plugin[fakeSettings]{
		KindName: name, URLSchemes: schemes,
		Defaults: func() fakeSettings { return fakeSettings{Queue: "default"} },
		CheckSpec: func(s *Spec[fakeSettings]) []error {
			if s.Settings.Queue == "" {
				return []error{AtKey("queue", "queue: empty")}
			}
			return nil
		},
		TypesOf: func(s *Spec[fakeSettings]) ([]string, bool) { return []string{s.Settings.Queue}, false },
		BuildSpec: func(s *Spec[fakeSettings], _ Deps) (runner.Source, error) {
			return fakeSource{name: s.Name}, nil
		},
	}
}

func TestRegistry(t *testing.T) {
	a, b := fakeKind("a", "a", "a+tls"), fakeKind("b", "b")
	b.Implied = "bsection"
	r, err := NewRegistry(a, b)
	if err != nil {
		t.Fatal(err)
	}
	for url, want := range map[string]string{"a://h": "a", "A+TLS://h": "a", "b:path": "b", "b": "b"} {
		if k, err := r.ForURL(url); err != nil || k.Name() != want {
			t.Errorf("ForURL(%q) = %v, %v; want %s", url, k, err, want)
		}
	}
	if _, err := r.ForURL("ftp://x"); err == nil || err.Error() != "unknown scheme ftp (known: a, a+tls, b)" {
		t.Errorf("unknown scheme: %v", err)
	}
	if k := r.Implied([]string{"x", "bsection"}); k == nil || k.Name() != "b" {
		t.Errorf("Implied = %v", k)
	}
	if k := r.Implied([]string{"x"}); k != nil {
		t.Errorf("Implied with no key = %v", k)
	}
	if _, err := NewRegistry(a, fakeKind("c", "a")); err == nil || !strings.Contains(err.Error(), "scheme a is taken by both a and c") {
		t.Errorf("a scheme taken twice: %v", err)
	}
}

func TestPluginBuildRunsCheck(t *testing.T) {
	k := fakeKind("a", "a")
	e := &Entry{Name: "n", URL: "a://h", Kind: k, Settings: k.NewSettings()}
	if got := e.Settings.(*fakeSettings).Queue; got != "default" {
		t.Errorf("defaults: %q", got)
	}
	if src, err := k.Build(e, Deps{}); err != nil || src.Name() != "n" {
		t.Fatalf("Build = %v, %v", src, err)
	}
	e.Settings.(*fakeSettings).Queue = ""
	_, err := k.Build(e, Deps{})
	var ke *KeyError
	if !errors.As(err, &ke) || ke.Key != "queue" {
		t.Errorf("Build of what Check refuses: %v", err)
	}
	types, open := DeliverableTypes([]*Entry{
		{Kind: k, Settings: &fakeSettings{Queue: "order"}},
		{Kind: k, Settings: &fakeSettings{Queue: "order"}},
		{Kind: &Plugin[fakeSettings]{KindName: "open"}, Settings: &fakeSettings{}},
	})
	if strings.Join(types, ",") != "order" || !open {
		t.Errorf("DeliverableTypes = %v, %v", types, open)
	}
}
