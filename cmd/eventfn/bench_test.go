package main

import (
	"strings"
	"testing"
)

// TestBenchFlags checks the bench command's help and its refusals; the
// benchmark itself is tested in package bench.
func TestBenchFlags(t *testing.T) {
	if code, _, errs := cli(t, "bench", "--help"); code != 0 || !strings.Contains(errs, "examples:") {
		t.Errorf("--help: code %d:\n%s", code, errs)
	}
	for _, args := range [][]string{
		{"bench", "--count", "10", "--rate", "5"},
		{"bench", "--output", "yaml"},
		{"bench", "--role", "parent"},
	} {
		if code, _, _ := cli(t, args...); code != 2 {
			t.Errorf("%v: code %d, want 2", args, code)
		}
	}
}
