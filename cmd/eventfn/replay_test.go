package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/internal/brokertest"
	"github.com/eventfn/eventfn/rules"
	"github.com/eventfn/eventfn/runner"
	"github.com/eventfn/eventfn/runner/stomp"
	"github.com/eventfn/eventfn/waldur"
	"github.com/eventfn/eventfn/waldur/waldurtest"
)

const brokenRules = `
version: 1
rules:
  - name: provision
    on: order
    steps:
      - exec: [sh, -c, 'echo "quota service down" >&2; exit 3']
        retry: {attempts: 1}
`

const fixedRules = `
version: 1
vars: {marker: %q}
rules:
  - name: provision
    on: order
    steps:
      - exec: [sh, -c, 'printf "%%s %%s\n" "$0" "$1" >> "$2"', "{{ id }}", "{{ payload.order_uuid }}", "{{ vars.marker }}"]
`

// TestDeadLetterFixReplay, as an operator: a message fails for good and is
// dead-lettered with its reason; record copies it from the dead-letter
// queue without consuming it; the rule is fixed (reloaded); replay
// --dry-run moves nothing; replay moves it back to its queue, and it runs
// under a new id. Both ways of dead-lettering: to a named queue (the
// reason in x-eventfn-error) and by NACK through the Waldur queue's
// dead-letter exchange (x-first-death-queue).
func TestDeadLetterFixReplay(t *testing.T) {
	for _, named := range []bool{true, false} {
		t.Run(fmt.Sprintf("dead_letter_destination=%v", named), func(t *testing.T) { deadLetterFixReplay(t, named) })
	}
}

func deadLetterFixReplay(t *testing.T, named bool) {
	b := brokertest.New(t)
	vhost := b.VHost(brokertest.Unique("eventfn-replay-"))
	login, pass := waldurtest.NewUUID(), brokertest.Unique("pw-")
	b.User(vhost, login, pass)
	queue := waldur.QueueName(login, waldurtest.NewUUID(), "order")
	b.WaldurQueue(vhost, queue)
	b.Queue(vhost, waldurDLQ, nil)
	t.Setenv("EVENTFN_TEST_PASS", pass)
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")

	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := actions.Standard(actions.Options{Logger: logger})
	parse := func(src string) *rules.Ruleset {
		rs, err := rules.Parse(filepath.Join(dir, "eventfn.yaml"), []byte(src), rules.Options{Actions: reg})
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	spec := stomp.Settings{VHost: vhost, Login: login,
		PasscodeEnv: "EVENTFN_TEST_PASS", Subscribe: []string{waldur.Destination(queue)}, OnFailure: "dead-letter"}
	if named {
		spec.DeadLetter = waldur.Destination(waldurDLQ)
	}
	m := runner.NewMetrics()
	src, err := stomp.FromSettings("broker", "stomp://"+brokertest.STOMPAddr, spec, stomp.Deps{Logger: logger, Metrics: m, DrainTimeout: 5 * time.Second,
		Backoff: stomp.Backoff{Initial: 100 * time.Millisecond, Max: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	r := runner.New(runner.Config{Rules: parse(brokenRules), Actions: reg, Sources: []runner.Source{src}, Logger: logger, Metrics: m})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- r.Run(ctx) }()
	defer func() { cancel(); <-stopped }()
	brokertest.WaitFor(t, 15*time.Second, "the runner subscribed", r.Ready)

	// --- it fails, and is dead-lettered with its reason
	id := b.Publish(vhost, queue, []byte(`{"order_uuid": "o-1", "order_state": "executing"}`))
	brokertest.WaitFor(t, 15*time.Second, "the message dead-lettered", func() bool {
		var d dto.Metric
		_ = m.Settled.WithLabelValues("broker", "order", "dead_lettered").Write(&d)
		return d.GetCounter().GetValue() == 1
	})
	var dl []brokertest.Message
	brokertest.WaitFor(t, 10*time.Second, "the message in "+waldurDLQ, func() bool {
		dl = b.Peek(vhost, waldurDLQ, 10)
		return len(dl) > 0
	})
	if len(dl) != 1 || dl[0].Headers["x-message-id"] != id {
		t.Fatalf("dead-letter queue holds %+v, want the message %s", dl, id)
	}
	if named {
		if reason, _ := dl[0].Headers["x-eventfn-error"].(string); !strings.Contains(reason, "exited with code 3") {
			t.Errorf("x-eventfn-error = %q, want the failure", reason)
		}
	}

	// --- record copies it, and leaves it there
	brokerArgs := []string{"--from", "stomp://" + brokertest.STOMPAddr, "--vhost", vhost, "--login", login, "--passcode-env", "EVENTFN_TEST_PASS"}
	recorded := filepath.Join(dir, "dlq.jsonl")
	if code, out, errs := cli(t, append([]string{"record", "--dlq", "--limit", "1", "-o", recorded}, brokerArgs...)...); code != 0 {
		t.Fatalf("record: %d %s %s", code, out, errs)
	}
	raw, _ := os.ReadFile(recorded)
	var ev struct {
		Type    string            `json:"type"`
		Payload map[string]any    `json:"payload"`
		Headers map[string]string `json:"headers"`
	}
	if err := json.Unmarshal(raw, &ev); err != nil || ev.Type != "order" || ev.Payload["order_uuid"] != "o-1" || ev.Headers["x-message-id"] != id {
		t.Fatalf("recorded %s (%v): want the order event with its headers", raw, err)
	}
	if n := len(b.Peek(vhost, waldurDLQ, 10)); n != 1 {
		t.Fatalf("after record the dead-letter queue holds %d messages, want 1 (browsed, not consumed)", n)
	}

	// --- the rule is fixed; the recorded traffic dry-runs against it
	fixed := fmt.Sprintf(fixedRules, marker)
	rulesFile := filepath.Join(dir, "eventfn.yaml")
	if err := os.WriteFile(rulesFile, []byte(fixed), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := cli(t, "dry-run", "-c", rulesFile, recorded); code != 0 || !strings.Contains(out, "provision") {
		t.Fatalf("dry-run of the recorded message: %d %s %s", code, out, errs)
	}
	r.SetRules(parse(fixed))

	// --- replay --dry-run moves nothing
	code, out, errs := cli(t, append([]string{"replay", "--dry-run", "--type", "order"}, brokerArgs...)...)
	want := "would replay " + id + " (order) to " + waldur.Destination(queue) + " as " + id + ":replay:1"
	if code != 0 || !strings.Contains(out, want) || !strings.Contains(out, "nothing moved") {
		t.Fatalf("replay --dry-run: %d\n%s%s\nwant %q", code, out, errs, want)
	}
	if n := len(b.Peek(vhost, waldurDLQ, 10)); n != 1 {
		t.Fatalf("after replay --dry-run the dead-letter queue holds %d messages, want 1", n)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the message ran after a dry-run")
	}
	// a filter that selects nothing moves nothing
	if code, out, _ := cli(t, append([]string{"replay", "--id", "nope", "--wait", "500ms"}, brokerArgs...)...); code != 0 || !strings.Contains(out, "replayed 0 messages") {
		t.Fatalf("replay --id nope: %d %s", code, out)
	}

	// --- replay: back in its queue, it runs through the fixed rule
	code, out, errs = cli(t, append([]string{"replay", "--id", id, "--limit", "1"}, brokerArgs...)...)
	if code != 0 || !strings.Contains(out, "replayed "+id+" (order)") {
		t.Fatalf("replay: %d %s %s", code, out, errs)
	}
	brokertest.WaitFor(t, 15*time.Second, "the replayed message ran", func() bool {
		b, _ := os.ReadFile(marker)
		return len(b) > 0
	})
	ran, _ := os.ReadFile(marker)
	if string(ran) != id+":replay:1 o-1\n" {
		t.Errorf("ran %q, want the replay of %s once", ran, id)
	}
	if n := len(b.Peek(vhost, waldurDLQ, 10)); n != 0 {
		t.Errorf("after replay the dead-letter queue holds %d messages, want 0", n)
	}
}

func TestReplayIDs(t *testing.T) {
	for _, c := range []struct {
		h    map[string]string
		orig string
		n    int
	}{
		{map[string]string{"x-message-id": "abc"}, "abc", 1},
		{map[string]string{"x-message-id": "abc:replay:1", "x-eventfn-replay-of": "abc"}, "abc", 2},
		{map[string]string{"x-message-id": "abc:replay:4"}, "abc", 5}, // dead-lettered again: replay-of dropped
		{map[string]string{"x-message-id": "abc:replay:x"}, "abc:replay:x", 1},
		{map[string]string{}, "2c26b46b68ffc68ff99b453c1d304134", 1}, // sha256("foo")
	} {
		if orig, n := originalID(c.h, []byte("foo")); orig != c.orig || n != c.n {
			t.Errorf("%v: %s, %d; want %s, %d", c.h, orig, n, c.orig, c.n)
		}
	}
}

// TestReplayDestinationsAreQueuesOnly: the headers naming the original
// queue come with the message and are not trusted.
func TestReplayDestinationsAreQueuesOnly(t *testing.T) {
	for h, want := range map[[2]string]string{
		{"x-eventfn-original-destination", "/amq/queue/subscription_a_offering_b_order"}: "/amq/queue/subscription_a_offering_b_order",
		{"x-eventfn-original-destination", "/queue/eventfn.orders"}:                      "/queue/eventfn.orders",
		{"x-first-death-queue", "subscription_a_offering_b_order"}:                       "/amq/queue/subscription_a_offering_b_order",
		{"x-eventfn-original-destination", "/exchange/amq.topic/x"}:                      "",
		{"x-eventfn-original-destination", "/amq/queue/../x"}:                            "",
		{"x-first-death-queue", "a/b"}:                                                   "",
		{"x-eventfn-original-destination", "/amq/queue/q\nx-evil: 1"}:                    "",
	} {
		if got := originalDestination(map[string]string{h[0]: h[1]}); got != want {
			t.Errorf("%s: %q → %q, want %q", h[0], h[1], got, want)
		}
	}
}
