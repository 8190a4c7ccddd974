package runner

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/event"
	"github.com/eventfn/eventfn/rules"
)

// The bad-input catalogue: every kind of bad input eventfn must survive,
// each with its defined outcome, and each followed by a good message that
// must still be handled (nothing crashes the runner or loses another
// message). Outcomes are those of README.md's "Delivery" table: a message
// that cannot be decoded or whose plan fails is dead-lettered here (the
// source policy on_failure: dead-letter; with ack it would be acked), and
// its reason is counted.
//
// Elsewhere, at other levels:
//   - the action-level halves of three rows: actions.TestExecOutputIsCapped,
//     actions.TestTimeoutKillsProcessGroupAndRetries and
//     actions.TestWebhookRefusesRedirectToAnotherHost;
//   - a TLS certificate that does not match: runner/stomp
//     TestTLSCertificateMismatchIsAClearError (it needs a source);
//   - decoding limits one by one: event's tests and FuzzDecode; bodies and
//     headers of any shape through the STOMP and MQTT sources:
//     FuzzMessageToEvent in runner/stomp and runner/mqtt.
//   - issue 14 (event data is untrusted), besides the rows below: every
//     context of the renderer, rules.TestContextualEscaping and
//     rules.FuzzContextualEscaping; the HTTP source (token, HMAC, TLS,
//     cross-origin, content type, 429 when full, slow and idle connections,
//     after_plan, the spool across a restart): runner/local TestHTTP*;
//     secrets in every sink and form: TestSecretsNeverLeave; loaders (alias
//     bombs, sizes, include count and directory, one-line quotes):
//     rules.TestAliasBomb*, TestFileSizeIsBounded, TestIncludes*,
//     TestErrorsQuoteAtMostALine, and cmd/eventfn TestValidateStopsOnSIGTERM;
//     commands (exit 0 with a background child, EMFILE retried, CRLF
//     headers, unencodable stdin): actions TestExitZero*, TestStartWithout*,
//     TestHeaderWithCRLF*, TestScriptWithout*; the Waldur client (http://,
//     redirects): waldur TestHTTPAPIURLNeedsInsecureHTTP,
//     TestRedirectNeverCarriesTokenToAnotherSchemeOrHost.

// catalogueGood is the rule that handles the good message of every row.
const catalogueGood = `
version: 1
rules:
  - name: good
    on: good
    steps:
      - exec: [sh, -c, 'echo "$1" >> "$0"', "%[1]s/good.log", "{{ id }}"]
`

// onFailure records a bad rule's error.
const onFailure = `
    on_failure:
      - exec: [sh, -c, 'printf "%%s\n" "$1" >> "$0"', "%[1]s/on_failure.log", "{{ error }}"]
`

type badInput struct {
	name string
	// rules are added to catalogueGood (%[1]s is the row's directory).
	rules  string
	limits event.Limits
	typ    string // the message's type ("" with TypeField object_type)
	body   []byte
	// fate is the settlement wanted: "ack" or a prefix of "dead-letter: <reason>".
	fate string
	// check asserts more of the outcome.
	check func(t *testing.T, c *catalogueRun)
}

type catalogueRun struct {
	dir string
	r   *Runner
	m   *Metrics
	// took is how long the bad message took to settle.
	took time.Duration
}

func (c *catalogueRun) file(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.dir, name))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

func rejected(reason string) func(t *testing.T, c *catalogueRun) {
	return func(t *testing.T, c *catalogueRun) {
		if n := testCounter(c.m.Rejected.WithLabelValues("catalogue", reason)); n != 1 {
			t.Errorf("eventfn_messages_rejected_total{reason=%q} = %v, want 1", reason, n)
		}
	}
}

func ruleError(rule string) func(t *testing.T, c *catalogueRun) {
	return func(t *testing.T, c *catalogueRun) {
		if n := testCounter(c.m.RuleErrors.WithLabelValues(rule)); n != 1 {
			t.Errorf("eventfn_rule_errors_total{rule=%q} = %v, want 1", rule, n)
		}
	}
}

// onFailureSaw asserts that the rule's on_failure ran once with an error
// containing want.
func onFailureSaw(want string) func(t *testing.T, c *catalogueRun) {
	return func(t *testing.T, c *catalogueRun) {
		got := c.file(t, "on_failure.log")
		if strings.Count(got, "\n") != 1 || !strings.Contains(got, want) {
			t.Errorf("on_failure saw %q, want one error containing %q", got, want)
		}
	}
}

func nested(depth int) []byte {
	return []byte(`{"a":` + strings.Repeat("[", depth-1) + strings.Repeat("]", depth-1) + "}")
}

// peakRSS is the process's peak resident set (VmHWM), in bytes.
func peakRSS(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc:", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/self/status")
	return 0
}

func TestBadInputCatalogue(t *testing.T) {
	big := func(n int) []byte { return []byte(`{"pad":"` + strings.Repeat("a", n-10) + `"}`) }
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("the webhook followed a redirect to another host")
	}))
	defer elsewhere.Close()
	// Same server, another host name: a redirect to another host.
	redirect := httptest.NewServer(http.RedirectHandler(strings.Replace(elsewhere.URL, "127.0.0.1", "localhost", 1), http.StatusFound))
	defer redirect.Close()

	var hwm int64
	rows := []badInput{
		{name: "malformed JSON", typ: "bad", body: []byte(`{"type": "order", "payload": {`),
			fate: "dead-letter: rejected: malformed JSON", check: rejected("malformed_json")},
		{name: "trailing garbage", typ: "bad", body: []byte(`{"a":1} {"b":2}`),
			fate: "dead-letter: rejected: malformed JSON", check: rejected("malformed_json")},
		{name: "JSON array, not an object", typ: "bad", body: []byte(`[{"a": 1}]`),
			fate: "dead-letter: rejected: JSON is not an object", check: rejected("not_object")},
		{name: "JSON null, not an object", typ: "bad", body: []byte(`null`),
			fate: "dead-letter: rejected: JSON is not an object", check: rejected("not_object")},
		{name: "missing type", typ: "", body: []byte(`{"order_uuid": "abc"}`),
			fate: "dead-letter: rejected: missing event type", check: rejected("missing_type")},
		{name: "type field not a string", typ: "", body: []byte(`{"object_type": 7}`),
			fate: "dead-letter: rejected: missing event type", check: rejected("missing_type")},
		{name: "unknown type: no rule matches, acked and counted under type other", typ: "no_such_type", body: []byte(`{}`),
			fate: "ack", check: func(t *testing.T, c *catalogueRun) {
				if n := testCounter(c.m.Unmatched.WithLabelValues("catalogue", OtherLabel)); n != 1 {
					t.Errorf("eventfn_messages_unmatched_total{type=other} = %v, want 1", n)
				}
				for i := range 1000 { // a flood of invented types adds no series
					catalogueDeliver(t, c.r, &Message{Source: "catalogue", Body: []byte(`{}`), Type: fmt.Sprintf("t%d", i), ID: fmt.Sprintf("flood-%d", i)})
				}
				if n := testutil.CollectAndCount(c.m.Received); n != 1 {
					t.Errorf("eventfn_messages_received_total has %d series after 1,000 invented types, want 1 (type other)", n)
				}
				if n := testCounter(c.m.Received.WithLabelValues("catalogue", OtherLabel)); n != 1001 {
					t.Errorf("eventfn_messages_received_total{type=other} = %v, want 1001", n)
				}
			}},
		{name: "10 MiB body over the default 1 MiB limit", typ: "bad", body: big(10 << 20),
			fate: "dead-letter: rejected: body too large", check: rejected("too_large")},
		{name: "10 MiB body under a raised limit (runner.max_body)", limits: event.Limits{MaxBytes: 16 << 20},
			rules: `
  - name: sized
    on: bad
    steps:
      - exec: [sh, -c, 'echo "$1" > "$0"', "%[1]s/len", "{{ len(payload.pad) }}"]
`, typ: "bad", body: big(10 << 20), fate: "ack", check: func(t *testing.T, c *catalogueRun) {
				if got := strings.TrimSpace(c.file(t, "len")); got != strconv.Itoa(10<<20-10) {
					t.Errorf("the rule saw a pad of %s bytes", got)
				}
			}},
		{name: "invalid UTF-8", typ: "bad", body: []byte("{\"name\": \"caf\xe9\"}"),
			fate: "dead-letter: rejected: body is not valid UTF-8", check: rejected("invalid_utf8")},
		// A type from a topic's segment is the transport's: it labels
		// metrics, and used to panic the runner (FuzzMessageToEvent).
		{name: "invalid UTF-8 in the type", typ: "order\xd3", body: []byte(`{}`),
			fate: "dead-letter: rejected: body is not valid UTF-8", check: rejected("invalid_utf8")},
		{name: "nested 65 deep (limit 64)", typ: "bad", body: nested(65),
			fate: "dead-letter: rejected: JSON nested too deeply", check: rejected("too_deep")},
		{name: "nested 100,000 deep", typ: "bad", body: nested(100_000),
			fate: "dead-letter: rejected: JSON nested too deeply", check: rejected("too_deep")},
		{name: "payload field of the wrong type for the rule's expression", rules: `
  - {name: typed, on: bad, when: payload.count > 5, steps: [{log: never}]}
`, typ: "bad", body: []byte(`{"count": "many"}`),
			fate: "dead-letter: rule typed: when", check: ruleError("typed")},
		{name: "modulo by zero in a when", rules: `
  - {name: modulo, on: bad, when: payload.a %% payload.b == 0, steps: [{log: never}]}
`, typ: "bad", body: []byte(`{"a": 1, "b": 0}`),
			fate: "dead-letter: rule modulo: when", check: ruleError("modulo")},
		// "/" is floating-point division in expr: x/0 is ±Inf (NaN for
		// 0/0), not an error. Defined, and documented in the README.
		{name: "division by zero in a step", rules: `
  - name: divide
    on: bad
    steps:
      - exec: [sh, -c, 'echo "$1" > "$0"', "%[1]s/quotient", "{{ payload.a / payload.b }}"]
`, typ: "bad", body: []byte(`{"a": 1, "b": 0}`), fate: "ack", check: func(t *testing.T, c *catalogueRun) {
			if got := strings.TrimSpace(c.file(t, "quotient")); got != "+Inf" {
				t.Errorf("1/0 rendered as %q, want +Inf", got)
			}
		}},
		{name: "missing key in a when", rules: `
  - {name: strict, on: bad, when: payload.missing.x == 1, steps: [{log: never}]}
`, typ: "bad", body: []byte(`{"present": 1}`),
			fate: "dead-letter: rule strict: when", check: ruleError("strict")},
		{name: "index out of range in a step", rules: `
  - name: indexed
    on: bad
    steps:
      - {id: pick, log: "{{ payload.list[5] }}"}` + onFailure, typ: "bad", body: []byte(`{"list": [1, 2]}`),
			fate: "dead-letter: step pick", check: onFailureSaw("index out of range")},
		{name: "a step that hangs past its timeout: killed, retried, on_failure", rules: `
  - name: hang
    on: bad
    steps:
      - id: sleepy
        exec: [sh, -c, 'echo $$ >> "$0"; sleep 60 & wait', "%[1]s/pids"]
        timeout: 200ms
        retry: {attempts: 2, backoff: constant, initial: 10ms}` + onFailure, typ: "bad", body: []byte(`{}`),
			fate: "dead-letter: step sleepy", check: func(t *testing.T, c *catalogueRun) {
				onFailureSaw("timed out")(t, c)
				if n := testCounter(c.m.StepAttempts.WithLabelValues("exec", "error")); n != 2 {
					t.Errorf("%v attempts, want 2 (a timeout is retried)", n)
				}
				if c.took > 20*time.Second {
					t.Errorf("took %s: the hung commands were not killed", c.took)
				}
				for _, pid := range strings.Fields(c.file(t, "pids")) {
					p, _ := strconv.Atoi(pid)
					if err := syscall.Kill(p, 0); err == nil {
						t.Errorf("attempt's shell %d still alive after its timeout", p)
					}
				}
			}},
		{name: "a script that prints 1 GiB: output capped, no OOM", rules: `
  - name: loud
    on: bad
    steps:
      - {id: big, script: "%[1]s/loud.sh", timeout: 2m}
      - exec: [sh, -c, 'echo "$1 $2" > "$0"', "%[1]s/kept", "{{ len(steps.big.stdout) }}", "{{ steps.big.truncated }}"]
`, typ: "bad", body: []byte(`{}`), fate: "ack", check: func(t *testing.T, c *catalogueRun) {
			if got := strings.TrimSpace(c.file(t, "kept")); got != fmt.Sprintf("%d true", actions.DefaultMaxOutput) {
				t.Errorf("kept %q of the output, want %d bytes and truncated", got, actions.DefaultMaxOutput)
			}
			if grew := peakRSS(t) - hwm; grew > 256<<20 {
				t.Errorf("peak RSS grew by %d MiB while the script printed 1 GiB", grew>>20)
			}
		}},
		{name: "a webhook that redirects to another host: refused, permanent", rules: `
  - name: redirected
    on: bad
    steps:
      - id: hook
        webhook: {url: "` + redirect.URL + `"}
        retry: {attempts: 3, backoff: constant, initial: 10ms}` + onFailure, typ: "bad", body: []byte(`{}`),
			fate: "dead-letter: step hook", check: func(t *testing.T, c *catalogueRun) {
				onFailureSaw("refusing redirect")(t, c)
				if n := testCounter(c.m.StepAttempts.WithLabelValues("webhook", "error")); n != 1 {
					t.Errorf("%v attempts, want 1 (a refused redirect is not retried)", n)
				}
			}},
		// Issue 14: event data is untrusted everywhere.
		{name: "an argv word from the event that is an option: refused, permanent", rules: `
  - name: sorter
    on: bad
    steps:
      - id: sort
        exec: [sort, "{{ payload.file }}"]
        retry: {attempts: 3, backoff: constant, initial: 10ms}` + onFailure, typ: "bad", body: []byte(`{"file": "--output=/tmp/eventfn-catalogue-pwned"}`),
			fate: "dead-letter: step sort", check: func(t *testing.T, c *catalogueRun) {
				onFailureSaw(`starts with "-"`)(t, c)
				if n := testCounter(c.m.StepAttempts.WithLabelValues("exec", "error")); n != 0 {
					t.Errorf("%v attempts, want none (refused while rendering, not retried)", n)
				}
			}},
		{name: "a script path from the event that leaves its directory: refused", rules: `
  - name: hooks
    on: bad
    steps:
      - {id: hook, script: "%[1]s/hooks/{{ payload.action }}"}` + onFailure, typ: "bad", body: []byte(`{"action": "../../../../usr/bin/id"}`),
			fate: "dead-letter: step hook", check: onFailureSaw(`".."`)},
		{name: "a raw slurm argument from the event that is a keyword: refused before sacctmgr", rules: `
  - name: remover
    on: bad
    steps:
      - {id: rm, slurm: [remove, user, "{{ payload.username }}", "account=a1"]}` + onFailure, typ: "bad", body: []byte(`{"username": "where"}`),
			fate: "dead-letter: step rm", check: onFailureSaw("keyword")},
		{name: "a webhook host from the event: refused", rules: `
  - name: hooked
    on: bad
    steps:
      - {id: hook, webhook: "http://127.0.0.1{{ payload.path }}"}` + onFailure, typ: "bad", body: []byte(`{"path": "@127.0.0.3:18082/x"}`),
			fate: "dead-letter: step hook", check: onFailureSaw("host")},
		{name: "a command that exits 0 leaving a child holding its output: success", rules: `
  - name: background
    on: bad
    steps:
      - exec: [sh, -c, 'sleep 300 & echo started']
`, typ: "bad", body: []byte(`{}`), fate: "ack"},
		{name: "a header with CRLF from the event: permanent", rules: `
  - name: crlf
    on: bad
    steps:
      - id: hook
        webhook: {url: "` + elsewhere.URL + `", headers: {X-Name: "{{ payload.name }}"}}
        retry: {attempts: 3, backoff: constant, initial: 10ms}` + onFailure, typ: "bad", body: []byte(`{"name": "a\r\nX-Injected: 1"}`),
			fate: "dead-letter: step hook", check: func(t *testing.T, c *catalogueRun) {
				onFailureSaw("control character")(t, c)
				if n := testCounter(c.m.StepAttempts.WithLabelValues("webhook", "error")); n != 1 {
					t.Errorf("%v attempts, want 1 (a bad header is not retried)", n)
				}
			}},
		{name: "a payload that cannot be encoded for a script's stdin (1e400): the step fails", rules: `
  - name: huge
    on: bad
    steps:
      - {id: run, script: /bin/cat}` + onFailure, typ: "bad", body: []byte(`{"n": 1e400}`),
			fate: "dead-letter: step run", check: onFailureSaw("cannot be encoded")},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "loud.sh"), []byte("#!/bin/sh\nhead -c 1073741824 /dev/zero\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			src := fmt.Sprintf(catalogueGood+row.rules, dir)
			rs, err := rules.Parse("catalogue.yaml", []byte(src), rules.Options{Actions: actions.Builtin(), Types: []string{"good", "bad"}})
			if err != nil {
				t.Fatalf("rules: %v\n%s", err, src)
			}
			logger := slog.New(slog.NewTextHandler(io.Discard, nil))
			c := &catalogueRun{dir: dir, m: NewMetrics()}
			c.r = New(Config{Rules: rs, Actions: actions.Standard(actions.Options{Logger: logger}), Logger: logger,
				Metrics: c.m, Limits: row.limits})
			hwm = peakRSS(t)
			start := time.Now()
			fate := catalogueDeliver(t, c.r, &Message{Source: "catalogue", Body: row.body, Type: row.typ,
				TypeField: "object_type", ID: "bad-1", DeadLetterOnFailure: true})
			c.took = time.Since(start)
			if fate != row.fate && !(strings.HasPrefix(row.fate, "dead-letter: ") && strings.HasPrefix(fate, row.fate)) {
				t.Errorf("fate = %.200q, want %q", fate, row.fate)
			}
			if row.check != nil {
				row.check(t, c)
			}
			// The next message is handled as if nothing happened.
			if fate := catalogueDeliver(t, c.r, &Message{Source: "catalogue", Body: []byte(`{"n": 1}`), Type: "good",
				ID: "good-1", DeadLetterOnFailure: true}); fate != "ack" {
				t.Errorf("the good message after it: fate %q, want ack", fate)
			}
			if got := c.file(t, "good.log"); got != "good-1\n" {
				t.Errorf("the good message's effect: %q", got)
			}
		})
	}
}

func catalogueDeliver(t *testing.T, r *Runner, m *Message) string {
	t.Helper()
	s := newSettler()
	m.Settler = s
	if err := r.Deliver(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	select {
	case f := <-s.done:
		return f
	case <-time.After(2 * time.Minute):
		t.Fatal("message never settled")
	}
	return ""
}
