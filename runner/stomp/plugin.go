package stomp

import (
	"github.com/eventfn/eventfn/runner"
	"github.com/eventfn/eventfn/source"
)

func deps(d source.Deps) Deps {
	return Deps{Logger: d.Logger, Metrics: d.Metrics, DrainTimeout: d.DrainTimeout,
		Version: d.Version, LookupEnv: d.LookupEnv, Dir: d.Dir}
}

// Kind is the source plug-in of the STOMP family: stomp://, stomp+ssl://,
// stomp+ws://, stomp+wss://.
func Kind() source.Kind {
	return &source.Plugin[Settings]{
		KindName:   "stomp",
		URLSchemes: Schemes,
		CheckSpec:  func(s *source.Spec[Settings]) []error { return s.Settings.Check(s.URL) },
		TypesOf:    func(s *source.Spec[Settings]) ([]string, bool) { return s.Settings.Types() },
		BuildSpec: func(s *source.Spec[Settings], d source.Deps) (runner.Source, error) {
			return FromSettings(s.Name, s.URL, s.Settings, deps(d))
		},
	}
}

// WaldurKind is the source plug-in of Waldur sources: url waldur, or no
// url and a waldur: section.
func WaldurKind() source.Kind {
	return &source.Plugin[WaldurSettings]{
		KindName:   "waldur",
		URLSchemes: []string{"waldur"},
		Implied:    "waldur",
		CheckSpec:  func(s *source.Spec[WaldurSettings]) []error { return s.Settings.Check(s.URL) },
		TypesOf:    func(s *source.Spec[WaldurSettings]) ([]string, bool) { return s.Settings.Types() },
		BuildSpec: func(s *source.Spec[WaldurSettings], d source.Deps) (runner.Source, error) {
			return WaldurFromSettings(s.Name, s.URL, s.Settings, deps(d))
		},
	}
}
