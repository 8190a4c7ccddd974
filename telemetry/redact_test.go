package telemetry_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
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

func TestRedactorMasksEveryForm(t *testing.T) {
	const secret = `s3cr3t/+=?&"<é>\`
	r := telemetry.NewRedactor(secret)
	forms := telemetry.Forms(secret)
	for _, want := range []string{secret, url.QueryEscape(secret), url.PathEscape(secret),
		base64.StdEncoding.EncodeToString([]byte(secret)), base64.RawURLEncoding.EncodeToString([]byte(secret))} {
		if !slices.Contains(forms, want) {
			t.Errorf("Forms misses %q", want)
		}
	}
	j, _ := json.Marshal(map[string]string{"a": secret})
	for name, text := range map[string]string{
		"raw":        "x " + secret + " y",
		"query":      "https://h/p?token=" + url.QueryEscape(secret),
		"path":       "https://h/" + url.PathEscape(secret) + "/x",
		"json":       string(j),
		"go quoted":  fmt.Sprintf("error: %q", secret),
		"base64":     "Basic " + base64.StdEncoding.EncodeToString([]byte(secret)),
		"base64 url": base64.URLEncoding.EncodeToString([]byte(secret)),
	} {
		got := r.String(text)
		for _, f := range forms {
			if strings.Contains(got, f) {
				t.Errorf("%s: %q still holds %q", name, got, f)
			}
		}
		if !strings.Contains(got, telemetry.Masked) {
			t.Errorf("%s: %q masked nothing", name, got)
		}
	}
	v := r.Value(map[string]any{"stdout": secret, "list": []any{"a " + secret}, "n": 1})
	if b, _ := json.Marshal(v); strings.Contains(string(b), "s3cr3t") {
		t.Errorf("Value kept the secret: %s", b)
	}
}

// TestRedactorMasksSecretsInsideBase64: a secret encoded as part of a longer
// value (a Basic authorization header of "user:" + the password, a token
// inside a base64 JSON document) is masked wherever it starts, in both
// alphabets, padded or not.
func TestRedactorMasksSecretsInsideBase64(t *testing.T) {
	const secret = "pa55-w0rd-of-the-site"
	r := telemetry.NewRedactor(secret)
	basic := "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("svc-user:"+secret))
	if got := r.String(basic); !strings.Contains(got, telemetry.Masked) || strings.Contains(got, base64.StdEncoding.EncodeToString([]byte("svc-user:" + secret))[12:24]) {
		t.Errorf("Basic header: %q", got)
	}
	for _, prefix := range []string{"", "a", "ab", "abc", "abcd", "abcde", `{"token":"`} {
		for _, suffix := range []string{"", "z", "zy", `"}`} {
			value := []byte(prefix + secret + suffix)
			for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
				text := "x " + enc.EncodeToString(value) + " y"
				got := r.String(text)
				if !strings.Contains(got, telemetry.Masked) {
					t.Errorf("prefix %q suffix %q: %q masked nothing", prefix, suffix, got)
					continue
				}
				// What is left of the encoding decodes to at most the
				// prefix, the suffix and a byte on each side of the secret.
				for _, part := range strings.Split(strings.Fields(got)[1], telemetry.Masked) {
					if len(part) > (len(prefix)+1)*4/3+4 && len(part) > (len(suffix)+1)*4/3+4 {
						t.Errorf("prefix %q suffix %q: %q keeps %q, more than the bytes around the secret", prefix, suffix, got, part)
					}
				}
			}
		}
	}
	if got := r.String("c29tZSBvdGhlciB0ZXh0"); got != "c29tZSBvdGhlciB0ZXh0" {
		t.Errorf("base64 without the secret changed: %q", got)
	}
}
