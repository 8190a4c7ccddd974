package telemetry_test

import (
	"errors"
	"testing"

	"github.com/eventfn/eventfn/telemetry"
)

func TestRedactor(t *testing.T) {
	r := telemetry.NewRedactor(telemetry.Values(map[string]any{
		"token": "abcd-1234-token", "inner": "1234", "short": "ab", "num": 987654, "none": nil,
	})...)
	for _, c := range []struct{ in, want string }{
		{"Authorization: Token abcd-1234-token", "Authorization: Token ***"},
		{"pin 1234 and abcd-1234-token", "pin *** and ***"}, // the longer secret masked whole
		{"ab is too short to mask", "ab is too short to mask"},
		{"id 987654", "id ***"},
		{"", ""},
	} {
		if got := r.String(c.in); got != c.want {
			t.Errorf("String(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	if got := r.Error(errors.New("bad abcd-1234-token")); got != "bad ***" {
		t.Errorf("Error = %q", got)
	}
	if got := r.Error(nil); got != "" {
		t.Errorf("Error(nil) = %q", got)
	}
	for _, c := range []struct{ in, want string }{
		{"https://user:pw@example.com/x?order=1&api_key=k1&access_token=t2", "https://user:***@example.com/x?access_token=***&api_key=***&order=1"},
		{"https://example.com/hook/abcd-1234-token/x", "https://example.com/hook/***/x"},
		{"https://example.com/a?b=c", "https://example.com/a?b=c"},
		{"marketplace-orders/1234/", "marketplace-orders/***/"}, // not a URL: secrets only
	} {
		if got := r.URL(c.in); got != c.want {
			t.Errorf("URL(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	var none *telemetry.Redactor
	if got := none.String("abcd-1234-token"); got != "abcd-1234-token" {
		t.Errorf("nil redactor changed text: %q", got)
	}
	if got := none.URL("http://u:p@h/"); got != "http://u:***@h/" {
		t.Errorf("nil redactor kept a password: %q", got)
	}
}
