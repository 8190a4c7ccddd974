package config

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const rulesPart = `
rules:
  - name: r
    on: order
    steps: [{log: hi}]
`

func parse(t *testing.T, src string, env map[string]string) (*Config, error) {
	t.Helper()
	return Parse("eventfn.yaml", []byte("version: 1\n"+src+rulesPart), Options{
		Lookup: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
	})
}

// Each mistake is found at load, at its position, in words.
func TestLoadRefusesWithPositions(t *testing.T) {
	for _, tc := range []struct {
		name, src, want string
	}{
		{"mqtt with prefetch", `sources:
  - name: m
    url: mqtt://h
    subscribe: [a/b]
    prefetch: 5
`, `eventfn.yaml:6:5: unknown key "prefetch" in source "m" (mqtt) (known: vhost, login`},
		{"stomp with qos", `sources:
  - name: s
    url: stomp://h
    subscribe: [/amq/queue/q]
    qos: 1
`, `eventfn.yaml:6:5: unknown key "qos" in source "s" (stomp)`},
		{"stomp without subscribe", `sources:
  - name: s
    url: stomp://h
`, `eventfn.yaml:3:5: source "s": subscribe: list the destinations`},
		{"unknown scheme", `sources:
  - {name: f, url: "ftp://x"}
`, `eventfn.yaml:3:20: source "f": url "ftp://x": unknown scheme ftp (known: file, http, mqtt, mqtt+ws, mqtt+wss, mqtts, stomp, stomp+ssl, stomp+ws, stomp+wss, waldur)`},
		{"missing url", `sources:
  - {name: f}
`, `eventfn.yaml:3:5: source "f": missing url`},
		{"bad on_failure at its key", `sources:
  - name: f
    url: file:x.jsonl
    on_failure: drop
`, `eventfn.yaml:5:5: source "f": on_failure "drop": want ack or dead-letter`},
		{"file with payload format", `sources:
  - {name: f, url: "file:x", format: payload}
`, `format "payload": this source reads envelopes`},
		{"waldur with login", `sources:
  - name: w
    url: waldur
    login: u
    waldur: {api_url: "https://w/api/", token_env: T, offerings: [0123456789abcdef0123456789abcdef]}
`, `eventfn.yaml:5:5: unknown key "login" in source "w" (waldur)`},
		{"duration", `runner: {shutdown_timeout: soon}
`, `eventfn.yaml:2:28: runner.shutdown_timeout: "soon" is not a duration (write e.g. 30s, 5m or 1h)`},
		{"number", `runner: {concurrency: many}
`, `eventfn.yaml:2:23: runner.concurrency: "many" is not a whole number`},
		{"slurm key", `slurm: {clustr: x}
`, `eventfn.yaml:2:9: unknown key "clustr" in slurm (known: bin_dir`},
		{"top-level key", `sourcs: []
`, `eventfn.yaml:2:1: unknown key "sourcs" (did you mean "sources"?)`},
		{"duplicate source", `sources:
  - {name: a, url: "file:x"}
  - {name: a, url: "file:y"}
`, `eventfn.yaml:4:5: source "a": duplicate source name (first defined at eventfn.yaml:3:5)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(t, tc.src, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v\nwant one containing %s", err, tc.want)
			}
			if strings.Contains(err.Error(), "time.Duration") || strings.Contains(err.Error(), "!!str") {
				t.Errorf("error shows Go or YAML types: %v", err)
			}
		})
	}
}

func TestEnvExpansion(t *testing.T) {
	src := `runner:
  state_dir: ${DIR}/journal
  listen: ${LISTEN:-127.0.0.1:9090}
  concurrency: ${N}
`
	c, err := parse(t, src, map[string]string{"DIR": "/srv", "N": "4"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Runner.StateDir != "/srv/journal" || c.Runner.Listen != "127.0.0.1:9090" || c.Runner.Concurrency != 4 {
		t.Errorf("runner = %+v", c.Runner)
	}
	// Unset: once per variable, with how to set it.
	_, err = parse(t, "runner: {state_dir: \"${NOPE}\", listen: \"${NOPE}\", sentry_dsn: \"${ALSO}\"}\n", nil)
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	if strings.Count(msg, "NOPE is not set") != 1 || strings.Count(msg, "ALSO is not set") != 1 {
		t.Errorf("want each unset variable once:\n%s", msg)
	}
	if !strings.Contains(msg, "--env-file FILE") || !strings.Contains(msg, "${NOPE:-default}") {
		t.Errorf("want how to set it: %s", msg)
	}
}

// One error per cause: a value using an unset variable, or a refused key,
// adds no knock-on error; separate causes in one source are all reported.
func TestOneErrorPerCause(t *testing.T) {
	_, err := parse(t, `sources:
  - name: s
    url: stomp://h
    qos: 1
  - name: u
    url: "${BROKER}"
    subscribe: [/q]
  - name: m
    url: mqtt://h
    subscribe: [a/b]
    qos: ${QOS}
runner: {shutdown_timeout: "${T}"}
`, nil)
	if err == nil {
		t.Fatal("no error")
	}
	got := err.Error()
	for _, want := range []string{
		`eventfn.yaml:5:5: unknown key "qos" in source "s" (stomp)`,
		`eventfn.yaml:3:5: source "s": subscribe: list the destinations`,
		`eventfn.yaml:7:10: environment variable BROKER is not set`,
		`eventfn.yaml:12:10: environment variable QOS is not set`,
		`eventfn.yaml:13:28: environment variable T is not set`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %s", want)
		}
	}
	if n := strings.Count(got, "\n") + 1; n != 5 {
		t.Errorf("%d errors, want 5:\n%s", n, got)
	}
}

func TestReadEnvFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(p, []byte("# comment\nA=1\nexport B=\"two words\"\n\nC='x=y'\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ReadEnvFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if got["A"] != "1" || got["B"] != "two words" || got["C"] != "x=y" || len(got) != 3 {
		t.Errorf("got %v", got)
	}
	if err := os.WriteFile(p, []byte("no equals\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadEnvFile(p); err == nil || !strings.Contains(err.Error(), ":1: want NAME=value") {
		t.Errorf("err = %v", err)
	}
}

func TestDeliverableTypes(t *testing.T) {
	c, err := parse(t, `sources:
  - {name: f, url: "file:x"}
  - {name: s, url: "stomp://h", subscribe: [/amq/queue/custom], type: my_type}
  - {name: q, url: "stomp://h", subscribe: ["/amq/queue/subscription_0123456789abcdef0123456789abcdef_offering_0123456789abcdef0123456789abcdef_order"]}
  - {name: m, url: "mqtt://h", subscribe: ["subscription/+/offering/+/user_role"]}
  - name: w
    waldur: {api_url: "https://w/api/", token_env: T, offerings: [0123456789abcdef0123456789abcdef], object_types: [resource]}
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	types, open := c.DeliverableTypes()
	if !slices.Equal(types, []string{"my_type", "order", "resource", "user_role"}) || !open {
		t.Errorf("types %v open %v", types, open)
	}
	if c.Sources[4].Kind.Name() != "waldur" {
		t.Errorf("a waldur: section without url is a %s source", c.Sources[4].Kind.Name())
	}
}

// YAML anchors share settings between sources.
func TestAliases(t *testing.T) {
	c, err := parse(t, `sources:
  - name: a
    url: stomp+ssl://h
    subscribe: [/amq/queue/a]
    tls: &tls {ca_file: ca.pem}
  - name: b
    url: stomp+ssl://h
    subscribe: [/amq/queue/b]
    tls: *tls
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(c.Sources[1].Settings); !strings.Contains(got, "ca.pem") {
		t.Errorf("the aliased tls: %s", got)
	}
}

func TestStaticChanges(t *testing.T) {
	a, err := parse(t, "runner: {concurrency: 2}\nsources: [{name: f, url: \"file:x\"}]\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := parse(t, "\n\nrunner: {concurrency: 3}\nsources: [{name: f, url: \"file:x\"}]\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.StaticChanges(a); !slices.Equal(got, []string{"runner"}) {
		t.Errorf("changes = %v (a source moved, not changed)", got)
	}
}

// A waldur step in a file without a waldur: section would fail on every
// event under run: validate says so at the step.
func TestWaldurStepNeedsTheSection(t *testing.T) {
	const steps = `rules:
  - name: w
    on: order
    steps: [{log: hi}]
    on_failure:
      - waldur: {path: "marketplace-orders/x/set_state_erred/", body: {}}
`
	_, err := Parse("eventfn.yaml", []byte("version: 1\n"+steps), Options{})
	if err == nil || !strings.Contains(err.Error(), `eventfn.yaml:7:9: rule "w": a waldur step needs the waldur: section`) {
		t.Fatalf("error = %v", err)
	}
	if _, err := Parse("eventfn.yaml", []byte("version: 1\nwaldur: {api_url: \"https://w.example/api/\", token_env: T}\n"+steps), Options{}); err != nil {
		t.Fatalf("with the section: %v", err)
	}
}
