package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	gostomp "github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"

	"github.com/eventfn/eventfn/runner/stomp"
	"github.com/eventfn/eventfn/waldur"
)

const replayUsage = `usage: eventfn replay --from URL [--vhost V] [--login L --passcode-file F | --passcode-env E]
                      [--dlq QUEUE] [--type T] [--id ID] [--limit N] [--dry-run] [--wait D]

Moves dead-lettered messages from the dead-letter queue (default
waldur.dlq.messages) back to the queue they came from, so that they run again
through the rules in force. Run it with --dry-run first: it lists what would
move, and moves nothing.

The queue a message came from is its x-eventfn-original-destination header
(eventfn's dead_letter: destination), else RabbitMQ's x-first-death-queue
(dead-lettered by NACK through the queue's dead-letter exchange). Only
/amq/queue/NAME and /queue/NAME destinations are used; a message without one
stays where it is. The copy keeps the message's body and headers, without the
dead-lettering ones (x-death, x-first-death-*, x-last-death-*,
x-eventfn-error, …), with
  x-message-id: <original id>:replay:<n>   (a new id: the journal lets it run)
  x-eventfn-replay-of: <original id>
It is sent with a receipt, and only then is the dead-lettered message
acknowledged: a failure between the two leaves a copy in both places, never
none. Messages not selected (--type: the event type of the original queue;
--id: the original x-message-id) are left in the dead-letter queue, in their
order (they are redelivered to nobody until this command disconnects).

replay looks at up to --scan messages, and stops at --limit moved messages
or when none has come for --wait.

examples:
  export RMQ_PASS=…
  eventfn replay --from stomp+wss://waldur.example.org/rmqws-stomp --vhost $VHOST \
      --login $LOGIN --passcode-env RMQ_PASS --dry-run
  eventfn replay --from stomp://127.0.0.1:61613 --login guest --passcode-env RMQ_PASS \
      --type order --limit 10
`

// brokerFlags are the connection flags of replay and record.
type brokerFlags struct {
	url, vhost, login, passFile, passEnv  *string
	caFile, certFile, keyFile, serverName *string
	insecure                              *bool
	wait                                  *time.Duration
	scan                                  *int
}

func addBrokerFlags(fs *flag.FlagSet) *brokerFlags {
	return &brokerFlags{
		url:        fs.String("from", "", "broker URL (stomp://, stomp+ssl://, stomp+ws://, stomp+wss://)"),
		vhost:      fs.String("vhost", "", "RabbitMQ virtual host (default /)"),
		login:      fs.String("login", "", "broker login"),
		passFile:   fs.String("passcode-file", "", "file holding the passcode"),
		passEnv:    fs.String("passcode-env", "", "environment variable holding the passcode"),
		caFile:     fs.String("ca-file", "", "TLS: CA bundle to trust"),
		certFile:   fs.String("cert-file", "", "TLS: client certificate"),
		keyFile:    fs.String("key-file", "", "TLS: client key"),
		serverName: fs.String("server-name", "", "TLS: name to verify in the server certificate"),
		insecure:   fs.Bool("insecure-skip-verify", false, "TLS: do not verify the server certificate (tests only)"),
		wait:       fs.Duration("wait", 2*time.Second, "stop when no message has come for this long"),
		scan:       fs.Int("scan", 10000, "look at no more than this many messages"),
	}
}

// check returns the usage problem of the flags, if any.
func (b *brokerFlags) check() error {
	switch {
	case *b.url == "":
		return errors.New("--from URL is required (e.g. stomp://127.0.0.1:61613)")
	case *b.login != "" && *b.passFile == "" && *b.passEnv == "":
		return errors.New("--login needs --passcode-file or --passcode-env")
	case *b.wait <= 0 || *b.scan <= 0:
		return errors.New("--wait and --scan must be positive")
	}
	return nil
}

// dial connects to the broker. Heart-beats are off: the session is short.
func (b *brokerFlags) dial(ctx context.Context, logger *slog.Logger) (*stomp.Conn, error) {
	e, err := stomp.ParseURL(*b.url)
	if err != nil {
		return nil, err
	}
	passcode := ""
	if *b.passFile != "" || *b.passEnv != "" {
		if passcode, err = stomp.ReadSecret(*b.passFile, *b.passEnv, os.LookupEnv); err != nil {
			return nil, fmt.Errorf("passcode: %w", err)
		}
	}
	vhost, login := *b.vhost, *b.login
	if vhost == "" {
		vhost = e.VHost
	}
	if login == "" {
		login = e.Login
	}
	d := stomp.DialOptions{Endpoint: e, VHost: vhost, Login: login, Passcode: passcode, Heartbeat: -1, Logger: logger}
	if e.Secure() {
		conf, err := stomp.TLSOptions{CAFile: *b.caFile, CertFile: *b.certFile, KeyFile: *b.keyFile,
			ServerName: *b.serverName, InsecureSkipVerify: *b.insecure}.Config(e.Host())
		if err != nil {
			return nil, err
		}
		d.TLS = conf
	}
	return stomp.Dial(ctx, d)
}

// browse subscribes to queue (an existing one) and hands each message to
// fn, until fn says stop, --scan messages were seen, or none came for
// --wait. The subscription acknowledges nothing by itself: what fn does
// not acknowledge returns to the queue, in its place, when the connection
// closes.
func (b *brokerFlags) browse(ctx context.Context, c *stomp.Conn, queue string, fn func(*gostomp.Message) (stop bool, err error)) error {
	sub, err := c.Subscribe(waldur.Destination(queue), gostomp.AckClientIndividual,
		gostomp.SubscribeOpt.Header("prefetch-count", strconv.Itoa(*b.scan)))
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", queue, stomp.AsBrokerError(err))
	}
	idle := time.NewTimer(*b.wait)
	defer idle.Stop()
	for seen := 0; seen < *b.scan; seen++ {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-idle.C:
			return nil
		case msg, ok := <-sub.C:
			if !ok {
				return fmt.Errorf("%s: subscription closed", queue)
			}
			if msg.Err != nil {
				return fmt.Errorf("%s: %w", queue, stomp.AsBrokerError(msg.Err))
			}
			stop, err := fn(msg)
			if err != nil || stop {
				return err
			}
			idle.Reset(*b.wait)
		}
	}
	return nil
}

// headersOf returns a message's headers (the first value of each name).
func headersOf(msg *gostomp.Message) map[string]string {
	out := make(map[string]string, msg.Header.Len())
	for i := range msg.Header.Len() {
		k, v := msg.Header.GetAt(i)
		if _, seen := out[k]; !seen {
			out[k] = v
		}
	}
	return out
}

// deliveryHeaders describe one delivery, not the message.
var deliveryHeaders = map[string]bool{
	frame.MessageId: true, frame.Subscription: true, frame.Ack: true, frame.Destination: true,
	frame.ContentLength: true, frame.ContentType: true, frame.Receipt: true, "redelivered": true,
}

// deadLetterHeader reports headers that dead-lettering added.
func deadLetterHeader(k string) bool {
	return k == "x-death" || strings.HasPrefix(k, "x-first-death-") || strings.HasPrefix(k, "x-last-death-") ||
		k == "x-eventfn-error" || k == "x-eventfn-source" || k == "x-eventfn-original-destination"
}

// queueDest is a destination replay sends to: an existing or a named
// queue, nothing else (the headers naming it are not trusted).
var queueDest = regexp.MustCompile(`^/(amq/queue|queue)/[A-Za-z0-9_.:-]{1,255}$`)

// originalDestination is where a dead-lettered message came from, or "".
func originalDestination(h map[string]string) string {
	d := h["x-eventfn-original-destination"]
	if d == "" && h["x-first-death-queue"] != "" {
		d = waldur.Destination(h["x-first-death-queue"])
	}
	if !queueDest.MatchString(d) {
		return ""
	}
	return d
}

// originalID is the id a message had before any replay, and the number of
// its next replay. A replay's id is "<original>:replay:<n>"; its
// x-eventfn-replay-of names the original (a replay dead-lettered again to
// a named queue loses that header, and the id still says it).
func originalID(h map[string]string, body []byte) (string, int) {
	id, of := h["x-message-id"], h["x-eventfn-replay-of"]
	n := 0
	if i := strings.LastIndex(id, ":replay:"); i >= 0 {
		if k, err := strconv.Atoi(id[i+len(":replay:"):]); err == nil && k > 0 {
			n = k
			if of == "" {
				of = id[:i]
			}
		}
	}
	if of != "" {
		return of, n + 1
	}
	if id == "" { // Waldur-style: a hash of the content
		sum := sha256.Sum256(body)
		id = hex.EncodeToString(sum[:16])
	}
	return id, 1
}

func cmdReplay(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("replay", replayUsage, stderr)
	bf := addBrokerFlags(fs)
	dlq := fs.String("dlq", waldurDLQ, "the dead-letter queue")
	typ := fs.String("type", "", "only messages of this event type (from their original queue)")
	id := fs.String("id", "", "only the message with this original x-message-id")
	limit := fs.Int("limit", 0, "move at most this many messages (0: all)")
	dryRun := fs.Bool("dry-run", false, "list what would move; move nothing")
	if rest, code := parseFlags(fs, args); code >= 0 {
		return code
	} else if len(rest) > 0 {
		fmt.Fprintf(stderr, "eventfn replay: unexpected argument %q\n", rest[0])
		return 2
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "eventfn replay: "+format+"\n", a...)
		return code
	}
	if err := bf.check(); err != nil {
		return fail(2, "%v", err)
	}
	if *limit < 0 {
		return fail(2, "--limit must not be negative")
	}
	logger, _ := newLogger(stderr, "text", "warn")
	c, err := bf.dial(ctx, logger)
	if err != nil {
		return fail(1, "%v", err)
	}
	moved, left := 0, 0
	verb := "replayed"
	if *dryRun {
		verb = "would replay"
	}
	browseErr := bf.browse(ctx, c, *dlq, func(msg *gostomp.Message) (bool, error) {
		h := headersOf(msg)
		orig, n := originalID(h, msg.Body)
		dest := originalDestination(h)
		mtyp := stomp.TypeOf(dest)
		if *typ != "" && mtyp != *typ || *id != "" && orig != *id && h["x-message-id"] != *id {
			left++
			return false, nil
		}
		if dest == "" {
			left++
			fmt.Fprintf(stdout, "left %s: no original queue (neither x-eventfn-original-destination nor x-first-death-queue names one)\n", orig)
			return false, nil
		}
		newID := orig + ":replay:" + strconv.Itoa(n)
		reason := h["x-eventfn-error"]
		if reason == "" {
			reason = h["x-first-death-reason"]
		}
		if !*dryRun {
			if err := resend(ctx, c, msg, h, dest, orig, newID); err != nil {
				return true, err
			}
			if err := c.Ack(msg); err != nil {
				return true, fmt.Errorf("%s sent to %s as %s, but acknowledging it in %s failed (it is in both now): %w", orig, dest, newID, *dlq, err)
			}
		}
		moved++
		fmt.Fprintf(stdout, "%s %s (%s) to %s as %s; it had failed: %s\n", verb, orig, orDash(mtyp), dest, newID, orDash(reason))
		return *limit > 0 && moved >= *limit, nil
	})
	// Acknowledgements are sure once the broker confirms DISCONNECT.
	discErr := c.Disconnect(10 * time.Second)
	if browseErr != nil {
		return fail(1, "%v (%d moved before)", browseErr, moved)
	}
	if discErr != nil && moved > 0 && !*dryRun {
		return fail(1, "disconnect: %v: the last acknowledgements may not have reached the broker; those messages are then in %s and in their queue", discErr, *dlq)
	}
	if *dryRun {
		fmt.Fprintf(stdout, "would replay %d messages from %s (%d others left); nothing moved (--dry-run)\n", moved, *dlq, left)
	} else {
		fmt.Fprintf(stdout, "replayed %d messages from %s (%d others left)\n", moved, *dlq, left)
	}
	return 0
}

// resend sends a copy of msg to dest, as a replay, and waits for the
// broker's receipt.
func resend(ctx context.Context, c *stomp.Conn, msg *gostomp.Message, h map[string]string, dest, orig, newID string) error {
	opts := []func(*frame.Frame) error{gostomp.SendOpt.Receipt}
	for k, v := range h {
		if deliveryHeaders[k] || deadLetterHeader(k) || k == "x-message-id" || k == "x-eventfn-replay-of" {
			continue
		}
		opts = append(opts, gostomp.SendOpt.Header(k, v))
	}
	opts = append(opts, gostomp.SendOpt.Header("x-message-id", newID), gostomp.SendOpt.Header("x-eventfn-replay-of", orig))
	if _, ok := h["persistent"]; !ok {
		opts = append(opts, gostomp.SendOpt.Header("persistent", "true"))
	}
	done := make(chan error, 1)
	go func() { done <- c.Send(dest, msg.ContentType, msg.Body, opts...) }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("send %s to %s: %w", orig, dest, stomp.AsBrokerError(err))
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("send %s to %s: no receipt: %w", orig, dest, ctx.Err())
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// waldurDLQ is the queue Waldur's queues dead-letter to.
const waldurDLQ = "waldur.dlq.messages"
