package rules

import "github.com/eventfn/eventfn/actions"

// testOptions loads rules with the built-in action kinds and the custom
// event types the tests use.
func testOptions() Options {
	return Options{Actions: actions.Builtin(), Types: []string{"x", "other", "ev", "order", "resource", "timer"}}
}
