package spec

import (
	"testing"
	"time"
)

func TestSuggest(t *testing.T) {
	known := []string{"order", "user_role", "resource", "offering_user", "ok_exit_codes", "POST", "GET"}
	for word, want := range map[string]string{
		"user-role":    "user_role",
		"ordr":         "order",
		"ok_exit_code": "ok_exit_codes",
		"PSOT":         "POST",
		"y":            "",
		"frobnicate":   "",
		"resources":    "resource",
	} {
		if got := Suggest(word, known); got != want {
			t.Errorf("Suggest(%q) = %q, want %q", word, got, want)
		}
	}
	if got := DidYouMean("zzz", []string{"b", "a"}); got != " (known: a, b)" {
		t.Errorf("DidYouMean = %q", got)
	}
}

func TestRetryMerge(t *testing.T) {
	def := Retry{Attempts: 3, Backoff: "exponential", Initial: time.Second, Max: time.Minute, Jitter: 0.2}
	got := Retry{Attempts: 5}.Merge(def)
	if want := (Retry{Attempts: 5, Backoff: "exponential", Initial: time.Second, Max: time.Minute, Jitter: 0.2}); got != want {
		t.Errorf("Merge = %+v, want %+v", got, want)
	}
}

func TestErrorNamesItsPath(t *testing.T) {
	if got := Errorf("batch[0].path", "refused").Error(); got != "batch[0].path: refused" {
		t.Error(got)
	}
	if !IsTemplate("a {{ b }}") || IsTemplate("plain") || IsTemplate(3) {
		t.Error("IsTemplate")
	}
}
