package rules

import (
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eventfn/eventfn/event"
)

// FuzzContextualEscaping: whatever value an event carries, each context's
// promise holds: a webhook URL keeps its scheme, host and port and the value
// stays one path segment or query value; a script path stays under its
// directory; an argv word from the event never starts with "-"; a raw slurm
// argument is one safe name. The value either renders within the promise
// or is refused; never a panic.
func FuzzContextualEscaping(f *testing.F) {
	for _, s := range []string{"ok", "@127.0.0.3:18082/x", "../../admin", "..", "/usr/bin/id", "--output=x", "-",
		"where", "a,b", "a=b", "x y", "WithAssoc", "%2e%2e", "a/../../b", "?x=1#f", "\\..\\..", "é", "\x00", ""} {
		f.Add(s)
	}
	rs := mustParseF(f, `
version: 1
vars: {hooks: /srv/hooks}
rules:
  - name: r
    on: x
    steps:
      - webhook: "https://api.example.org:8443/v1/{{ payload.v }}/x?q={{ payload.v }}"
      - script: "{{ vars.hooks }}/{{ payload.v }}.sh"
      - exec: [sort, "{{ payload.v }}"]
      - slurm: [add, user, "{{ payload.v }}", "account=a{{ payload.v }}"]
`)
	f.Fuzz(func(t *testing.T, v string) {
		env := rs.Environment(&event.Event{Type: "x", Payload: map[string]any{"v": v}}, nil)
		steps := rs.Rules[0].Steps
		if p, _, err := RenderStep(steps[0], env, false); err == nil {
			u, err := url.Parse(p["url"].(string))
			if err != nil {
				t.Fatalf("rendered URL %q does not parse: %v", p["url"], err)
			}
			if u.Scheme != "https" || u.Host != "api.example.org:8443" || u.User != nil {
				t.Fatalf("value %q changed the URL's authority: %q", v, p["url"])
			}
			segs := strings.Split(u.EscapedPath(), "/")
			if len(segs) != 4 || segs[1] != "v1" || segs[3] != "x" {
				t.Fatalf("value %q changed the URL's path shape: %q", v, u.EscapedPath())
			}
			if q := u.Query(); len(q) != 1 || q.Get("q") != v {
				t.Fatalf("value %q changed the query: %q", v, u.RawQuery)
			}
		}
		if p, _, err := RenderStep(steps[1], env, false); err == nil {
			clean := filepath.Clean(p["path"].(string))
			if !strings.HasPrefix(clean, "/srv/hooks/") {
				t.Fatalf("value %q made the script path %q", v, clean)
			}
		}
		if p, _, err := RenderStep(steps[2], env, false); err == nil {
			if w := p["argv"].([]any)[1].(string); strings.HasPrefix(w, "-") {
				t.Fatalf("value %q became option %q", v, w)
			}
		}
		if p, _, err := RenderStep(steps[3], env, false); err == nil {
			args := p["args"].([]any)
			if len(args) != 4 || safeSlurmName(args[2].(string)) != nil {
				t.Fatalf("value %q made slurm arguments %q", v, args)
			}
			if strings.ContainsAny(args[3].(string)[len("account="):], "=, \t\n") {
				t.Fatalf("value %q added a setting: %q", v, args[3])
			}
		}
	})
}

func mustParseF(f *testing.F, src string) *Ruleset {
	rs, err := Parse("fuzz.yaml", []byte(src), testOptions())
	if err != nil {
		f.Fatal(err)
	}
	return rs
}
