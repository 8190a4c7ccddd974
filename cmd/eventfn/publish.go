package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/eventfn/eventfn/publish"
	"github.com/eventfn/eventfn/runner/stomp"
	"github.com/eventfn/eventfn/waldur"
)

const publishUsage = `usage: eventfn publish --to URL [--vhost V] [--login L --passcode-file F | --passcode-env E]
                       [--destination D | --queue Q] [--type T] [--count N] [--rate R] EVENT_FILE... | -

Sends events to a broker the way Waldur does: the body is the event's payload
JSON; the headers are persistent:true, durable:true, auto-delete:false,
content-type:application/json and x-message-id (the first 32 hex digits of
sha256("<vhost>:<destination>:<body>"), Waldur's de-duplication id), plus
x-eventfn-published-at (unix nanoseconds, for latency measurements). An
envelope's own headers are added and win.

Event files hold envelopes {"type", "payload", "headers"}: one JSON value, a
JSON array, or JSON Lines; "-" reads standard input. A value without
"payload" is a bare payload whose type is --type. --type also overrides the
envelopes' types. "{type}" in --destination or --queue is replaced by each
event's type, so one command can feed Waldur's per-type queues.

--queue Q means --destination /amq/queue/Q (an existing queue, as Waldur
publishes; /queue/Q would re-declare it). Without either, each event goes to
the "destination" in its envelope's headers. --count N sends N messages, cycling
through the events; copies get a sequence number in --seq-field so that each
is distinct. --rate R paces them at R messages per second.

URL schemes: stomp://, stomp+ssl://, stomp+ws://, stomp+wss:// (default
path /ws); mqtt://, mqtts://, mqtt+ws://, mqtt+wss:// (default path /ws),
where --destination is an MQTT topic, messages go with QoS 1 and, MQTT 3.1.1
having no headers, only topic and payload travel (with --vhost the login is
sent as vhost:login, RabbitMQ's form). The passcode comes from a file or an
environment variable, never from the command line.

example:
  export RMQ_PASS=guest
  eventfn publish --to stomp+ws://127.0.0.1:15674/ws --vhost / --login guest \
      --passcode-env RMQ_PASS \
      --queue 'subscription_0123456789abcdef0123456789abcdef_offering_fedcba9876543210fedcba9876543210_{type}' \
      examples/slurm-site/events/*.json
  # load: 10,000 distinct orders at 1,000 msg/s
  eventfn publish --to stomp://127.0.0.1:61613 --login guest --passcode-env RMQ_PASS \
      --queue my-queue --type order --count 10000 --rate 1000 order.json
  # MQTT, to the topic Waldur uses for each type
  eventfn publish --to mqtt://127.0.0.1:1883 \
      --destination 'subscription/0123456789abcdef0123456789abcdef/offering/fedcba9876543210fedcba9876543210/{type}' \
      examples/slurm-site/events/*.json
`

func cmdPublish(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("publish", publishUsage, stderr)
	to := fs.String("to", "", "broker URL (stomp://, stomp+ssl://, stomp+ws://, stomp+wss://, mqtt://, mqtts://, mqtt+ws://, mqtt+wss://)")
	vhost := fs.String("vhost", "", "RabbitMQ virtual host (default /)")
	login := fs.String("login", "", "broker login")
	passFile := fs.String("passcode-file", "", "file holding the passcode")
	passEnv := fs.String("passcode-env", "", "environment variable holding the passcode")
	dest := fs.String("destination", "", "destination, e.g. /amq/queue/NAME ({type} is replaced)")
	queue := fs.String("queue", "", "queue name: same as --destination /amq/queue/NAME ({type} is replaced)")
	typ := fs.String("type", "", "event type of bare payloads (overrides envelopes' types)")
	count := fs.Int("count", 0, "number of messages, cycling through the events (default: each event once)")
	rate := fs.Float64("rate", 0, "messages per second (default: as fast as possible)")
	seqField := fs.String("seq-field", "eventfn_seq", "payload field numbering copies when --count exceeds the events (empty: identical copies)")
	confirmEvery := fs.Int("confirm-every", 1, "ask the broker to confirm every Nth message (STOMP receipt; MQTT: wait for PUBACKs)")
	caFile := fs.String("ca-file", "", "TLS: CA bundle to trust")
	certFile := fs.String("cert-file", "", "TLS: client certificate")
	keyFile := fs.String("key-file", "", "TLS: client key")
	serverName := fs.String("server-name", "", "TLS: name to verify in the server certificate")
	insecure := fs.Bool("insecure-skip-verify", false, "TLS: do not verify the server certificate (tests only)")
	output := fs.String("output", "text", "summary format: text or json")
	files, code := parseFlags(fs, args)
	if code >= 0 {
		return code
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "eventfn publish: "+format+"\n", a...)
		return code
	}
	switch {
	case *to == "":
		return fail(2, "--to URL is required (e.g. stomp+ws://127.0.0.1:15674/ws)")
	case *dest != "" && *queue != "":
		return fail(2, "give --destination or --queue, not both")
	case len(files) == 0:
		return fail(2, "name event files, or - for standard input")
	case *output != "text" && *output != "json":
		return fail(2, "--output %q: want text or json", *output)
	case *count < 0 || *rate < 0:
		return fail(2, "--count and --rate must not be negative")
	}
	destination := *dest
	if *queue != "" {
		destination = waldur.Destination(*queue)
	}
	passcode := ""
	if *passFile != "" || *passEnv != "" {
		var err error
		if passcode, err = stomp.ReadSecret(*passFile, *passEnv, os.LookupEnv); err != nil {
			return fail(2, "passcode: %v", err)
		}
	} else if *login != "" {
		return fail(2, "--login needs --passcode-file or --passcode-env")
	}

	var events []publish.Event
	for _, f := range files {
		evs, err := readEventFile(f, *typ)
		if err != nil {
			return fail(1, "%s: %v", f, err)
		}
		events = append(events, evs...)
	}
	if len(events) == 0 {
		return fail(1, "no events in %s", strings.Join(files, ", "))
	}
	logger, err := newLogger(stderr, "text", "warn")
	if err != nil {
		return fail(2, "%v", err)
	}
	p, err := publish.Dial(ctx, publish.Options{URL: *to, VHost: *vhost, Login: *login, Passcode: passcode,
		CAFile: *caFile, CertFile: *certFile, KeyFile: *keyFile, ServerName: *serverName,
		InsecureSkipVerify: *insecure, ConfirmEvery: *confirmEvery, Logger: logger})
	if err != nil {
		return fail(1, "%v", err)
	}
	vh := *vhost
	if vh == "" {
		if e, perr := stomp.ParseURL(*to); perr == nil && e.VHost != "" {
			vh = e.VHost
		} else {
			vh = "/"
		}
	}
	st, runErr := publish.Run(ctx, p, publish.Plan{Events: events, Destination: destination, VHost: vh,
		Count: *count, Rate: *rate, SeqField: *seqField})
	closeErr := p.Close()
	if *output == "json" {
		_ = json.NewEncoder(stdout).Encode(map[string]any{"sent": st.Sent, "seconds": st.Elapsed.Seconds(), "rate": st.Rate()})
	} else {
		fmt.Fprintf(stdout, "published %d messages in %s (%.0f msg/s)\n", st.Sent, st.Elapsed.Round(time.Millisecond), st.Rate())
	}
	if err := errors.Join(runErr, closeErr); err != nil {
		return fail(1, "%v", err)
	}
	return 0
}

func readEventFile(name, typ string) ([]publish.Event, error) {
	if name == "-" {
		return publish.ReadEvents(os.Stdin, typ)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return publish.ReadEvents(f, typ)
}
