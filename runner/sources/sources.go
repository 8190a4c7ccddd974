// Package sources lists the source kinds eventfn runs: one line per kind.
package sources

import (
	"github.com/eventfn/eventfn/runner/local"
	"github.com/eventfn/eventfn/runner/mqtt"
	"github.com/eventfn/eventfn/runner/stomp"
	"github.com/eventfn/eventfn/runner/timer"
	"github.com/eventfn/eventfn/source"
)

// Standard returns the registry of the built-in source kinds.
func Standard() *source.Registry {
	r, err := source.NewRegistry(
		local.FileKind(),
		local.HTTPKind(),
		stomp.Kind(),
		stomp.WaldurKind(),
		mqtt.Kind(),
		timer.Kind(),
	)
	if err != nil {
		panic(err) // two built-in kinds taking one scheme: a programming error
	}
	return r
}
