package telemetry

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
)

// Masked is what a redacted value is replaced with (the same mask dry-run
// shows for secrets).
const Masked = "***"

// MinSecretLen is the shortest value a Redactor masks: masking every "a" or
// "1" in a text would make it unreadable, and such values are no secrets.
const MinSecretLen = 4

// Redactor masks known secret values in text before it leaves the process:
// span attributes, error messages, log lines and error reports. The zero
// value and a nil *Redactor mask nothing (URL still drops credentials).
type Redactor struct {
	rep *strings.Replacer
}

// NewRedactor returns a redactor masking every given value of at least
// MinSecretLen bytes. Longer values are masked first, so a secret that
// contains another is masked whole.
func NewRedactor(values ...string) *Redactor {
	seen := map[string]bool{}
	var vs []string
	for _, v := range values {
		if len(v) >= MinSecretLen && !seen[v] {
			seen[v] = true
			vs = append(vs, v)
		}
	}
	if len(vs) == 0 {
		return &Redactor{}
	}
	sort.Slice(vs, func(i, j int) bool { return len(vs[i]) > len(vs[j]) })
	pairs := make([]string, 0, 2*len(vs))
	for _, v := range vs {
		pairs = append(pairs, v, Masked)
	}
	return &Redactor{rep: strings.NewReplacer(pairs...)}
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
