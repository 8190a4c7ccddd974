package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	gostomp "github.com/go-stomp/stomp/v3"

	"github.com/eventfn/eventfn/event"
	"github.com/eventfn/eventfn/runner/stomp"
	"github.com/eventfn/eventfn/waldur"
)

const recordUsage = `usage: eventfn record --from URL [--vhost V] [--login L --passcode-file F | --passcode-env E]
                      (--queue QUEUE | --dlq) [--type T] [--limit N] [--wait D] [-o FILE]

Copies the messages of a queue, or of the dead-letter queue (--dlq:
waldur.dlq.messages), into an event file (JSON Lines of {"type", "payload",
"headers"}) without consuming them: it subscribes without acknowledging, and
every message returns to the queue, in its place, when record disconnects
(RabbitMQ then marks them redelivered). The file feeds dry-run, rule tests
(event_file:) and the file: source, so they can use real traffic.

The type is --type, else the one the queue's name gives (a Waldur queue
…_offering_<uuid>_<type>; for a dead-lettered message, its original queue's).
Headers are the message's, without those of the delivery (message-id,
subscription, ack, destination, content-length, content-type, redelivered).
A body that is not a JSON object is left out, with a line on stderr.

example:
  eventfn record --from stomp://127.0.0.1:61613 --login guest --passcode-env RMQ_PASS \
      --dlq -o failed.jsonl && eventfn dry-run -c eventfn.yaml failed.jsonl
`

func cmdRecord(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("record", recordUsage, stderr)
	bf := addBrokerFlags(fs)
	queue := fs.String("queue", "", "the queue to copy")
	dlq := fs.Bool("dlq", false, "copy the dead-letter queue, "+waldurDLQ)
	typ := fs.String("type", "", "event type of every message (default: from the queue's name)")
	limit := fs.Int("limit", 0, "copy at most this many messages (0: all)")
	out := fs.String("o", "-", "output file (- for standard output)")
	if rest, code := parseFlags(fs, args); code >= 0 {
		return code
	} else if len(rest) > 0 {
		fmt.Fprintf(stderr, "eventfn record: unexpected argument %q\n", rest[0])
		return 2
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "eventfn record: "+format+"\n", a...)
		return code
	}
	if err := bf.check(); err != nil {
		return fail(2, "%v", err)
	}
	switch {
	case (*queue == "") == !*dlq:
		return fail(2, "give --queue QUEUE or --dlq")
	case *limit < 0:
		return fail(2, "--limit must not be negative")
	}
	if *dlq {
		*queue = waldurDLQ
	}
	w := stdout
	if *out != "-" {
		f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return fail(1, "%v", err)
		}
		defer f.Close()
		w = f
	}
	bw := bufio.NewWriter(w)
	logger, _ := newLogger(stderr, "text", "warn")
	c, err := bf.dial(ctx, logger)
	if err != nil {
		return fail(1, "%v", err)
	}
	n, skipped := 0, 0
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	browseErr := bf.browse(ctx, c, *queue, func(msg *gostomp.Message) (bool, error) {
		h := headersOf(msg)
		ev := event.Event{Type: *typ, Headers: map[string]string{}}
		if ev.Type == "" {
			if d := originalDestination(h); d != "" {
				ev.Type = stomp.TypeOf(d)
			} else {
				ev.Type = stomp.TypeOf(waldur.Destination(*queue))
			}
		}
		if err := json.Unmarshal(msg.Body, &ev.Payload); err != nil || ev.Payload == nil {
			skipped++
			fmt.Fprintf(stderr, "eventfn record: message %s: body is not a JSON object; left out\n", orDash(h["x-message-id"]))
			return false, nil
		}
		for k, v := range h {
			if !deliveryHeaders[k] {
				ev.Headers[k] = v
			}
		}
		if err := enc.Encode(ev); err != nil {
			return true, err
		}
		n++
		return *limit > 0 && n >= *limit, nil
	})
	_ = c.Disconnect(10 * time.Second) // nothing was acknowledged: everything returns to the queue
	if err := bw.Flush(); err != nil && browseErr == nil {
		browseErr = err
	}
	if browseErr != nil {
		return fail(1, "%v (%d recorded before)", browseErr, n)
	}
	fmt.Fprintf(stderr, "recorded %d messages of %s (%d left out); none consumed\n", n, *queue, skipped)
	return 0
}
