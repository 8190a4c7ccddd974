package telemetry

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// Masked is what a redacted value is replaced with (the same mask dry-run
// shows for secrets).
const Masked = "***"

// MinSecretLen is the shortest value a Redactor masks: masking every "a" or
// "1" in a text would make it unreadable, and such values are no secrets.
const MinSecretLen = 4

// Redactor masks known secret values in text before it leaves the process:
// log lines (NewRedactingHandler), span attributes, status and events
// (NewRedactingExporter), error reports, dead-letter reasons and the errors
// and results that later steps read. Each secret is masked in every form it
// is commonly written in: as it is, URL-escaped (query and path), escaped
// inside a JSON or Go string, and base64 (standard and URL alphabets, with
// and without padding). The zero value and a nil *Redactor mask nothing
// (URL still drops credentials).
type Redactor struct {
	rep *strings.Replacer
}

// NewRedactor returns a redactor masking every given value of at least
// MinSecretLen bytes, in each of its forms. Longer forms are masked first,
// so a secret that contains another is masked whole.
func NewRedactor(values ...string) *Redactor {
	seen := map[string]bool{}
	var vs []string
	add := func(v string) {
		if len(v) >= MinSecretLen && !seen[v] {
			seen[v] = true
			vs = append(vs, v)
		}
	}
	for _, v := range values {
		if len(v) < MinSecretLen {
			continue
		}
		for _, f := range Forms(v) {
			add(f)
		}
	}
	if len(vs) == 0 {
		return &Redactor{}
	}
	sort.SliceStable(vs, func(i, j int) bool { return len(vs[i]) > len(vs[j]) })
	pairs := make([]string, 0, 2*len(vs))
	for _, v := range vs {
		pairs = append(pairs, v, Masked)
	}
	return &Redactor{rep: strings.NewReplacer(pairs...)}
}

// Forms returns the forms of secret that a Redactor masks: the value, its
// url.QueryEscape and url.PathEscape, its escaping inside a JSON string
// (with and without HTML escaping) and a Go %q string, its base64 in the
// standard and URL alphabets, padded and raw, and the base64 of the secret
// inside a longer value (see base64Inner).
func Forms(secret string) []string {
	forms := []string{secret, url.QueryEscape(secret), url.PathEscape(secret)}
	for _, html := range []bool{true, false} {
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(html)
		if enc.Encode(secret) == nil {
			j := strings.TrimSuffix(b.String(), "\n")
			forms = append(forms, j[1:len(j)-1])
		}
	}
	q := strconv.Quote(secret)
	forms = append(forms, q[1:len(q)-1])
	b := []byte(secret)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		forms = append(forms, enc.EncodeToString(b))
	}
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		for offset := range 3 {
			if f := base64Inner(enc, b, offset); len(f) >= MinSecretLen {
				forms = append(forms, f)
			}
		}
	}
	out := forms[:0]
	seen := map[string]bool{}
	for _, f := range forms {
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	return out
}

// base64Inner returns the characters of the base64 of a longer value that
// depend on secret alone, when secret starts offset bytes (modulo 3) into
// that value: a rule that writes toBase64("user:" + secrets.password) into
// a Basic authorization header puts the password there at offset 5. A
// character encodes 6 bits, so the one or two characters at each end that
// also encode the bytes around the secret are left out; masking leaves
// them, which tells at most 4 bits of the secret's first and last bytes.
func base64Inner(enc *base64.Encoding, secret []byte, offset int) string {
	padded := make([]byte, offset+len(secret))
	copy(padded[offset:], secret)
	full := enc.EncodeToString(padded)
	first := (8*offset + 5) / 6            // the first character whose bits all fall in secret
	last := (8*(offset+len(secret)))/6 - 1 // the last such
	if last < first {
		return ""
	}
	return full[first : last+1]
}

// Value returns v with every string in it (in maps and lists, at any
// depth) masked: step results before later steps read them. Values that
// hold no secret are returned as they are.
func (r *Redactor) Value(v any) any {
	if r == nil || r.rep == nil {
		return v
	}
	switch t := v.(type) {
	case string:
		return r.String(t)
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			out[k] = r.Value(x)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = r.Value(x)
		}
		return out
	case []string:
		out := make([]string, len(t))
		for i, x := range t {
			out[i] = r.String(x)
		}
		return out
	}
	return v
}

// Values returns the values of a secrets map (as the rules' ReadSecrets
// returns it) as strings, for NewRedactor.
func Values(secrets map[string]any) []string {
	out := make([]string, 0, len(secrets))
	for _, v := range secrets {
		switch t := v.(type) {
		case nil:
		case string:
			out = append(out, t)
		default:
			out = append(out, fmt.Sprint(t))
		}
	}
	return out
}

// String returns s with every secret masked.
func (r *Redactor) String(s string) string {
	if r == nil || r.rep == nil || s == "" {
		return s
	}
	return r.rep.Replace(s)
}

// Error returns err's message with every secret masked ("" for nil).
func (r *Redactor) Error(err error) string {
	if err == nil {
		return ""
	}
	return r.String(err.Error())
}

// URL returns raw fit to record: the password of its user info and the
// values of query parameters whose names suggest a credential (token, key,
// secret, password, signature, auth...) are masked, then every known secret.
// Text that does not parse as a URL is only stripped of known secrets.
func (r *Redactor) URL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return r.String(raw)
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), Masked)
		}
	}
	if u.RawQuery != "" {
		q := u.Query()
		changed := false
		for k, vs := range q {
			if sensitiveName(k) {
				for i := range vs {
					vs[i] = Masked
				}
				changed = true
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
	}
	s := u.String()
	s = strings.ReplaceAll(s, url.QueryEscape(Masked), Masked)
	s = strings.ReplaceAll(s, url.PathEscape(Masked), Masked)
	return r.String(s)
}

var sensitiveParts = []string{"token", "secret", "pass", "pwd", "key", "sig", "auth", "credential", "session", "cookie"}

// sensitiveName reports whether a parameter or header name suggests its
// value is a credential.
func sensitiveName(name string) bool {
	n := strings.ToLower(name)
	for _, p := range sensitiveParts {
		if strings.Contains(n, p) {
			return true
		}
	}
	return false
}
