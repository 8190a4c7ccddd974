// Package publish sends Waldur-shaped events to a broker: the body is the
// event's payload JSON and the headers are the ones Waldur's server sets
// (persistent, durable, auto-delete, content-type and x-message-id), plus
// x-eventfn-published-at for latency measurements. It is shared by
// `eventfn publish`, the integration tests and the benchmarks.
//
// Transports are chosen by URL scheme through Dialers; STOMP (TCP, TLS,
// WebSocket) is built in. Another transport (MQTT) plugs in by adding its
// schemes there.
package publish

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/eventfn/eventfn/event"
	"github.com/eventfn/eventfn/runner/sources"
	"github.com/eventfn/eventfn/waldur"
)

// Message is one message to publish.
type Message struct {
	// Destination is a STOMP destination (/amq/queue/<name>) or, for
	// topic-based transports, a topic.
	Destination string
	Body        []byte
	// Headers are sent as they are (STOMP headers; MQTT user properties).
	Headers map[string]string
}

// Publisher sends messages over one connection.
type Publisher interface {
	// Publish sends one message. It returns once the broker has accepted
	// the message when the transport and options ask for confirmations.
	Publish(ctx context.Context, m Message) error
	// Close waits for messages not yet confirmed, then disconnects.
	Close() error
}

// Options say where to publish and how to log in.
type Options struct {
	// URL selects the transport by scheme (see Dialers).
	URL string
	// VHost is RabbitMQ's virtual host ("" = "/").
	VHost string
	// Login and Passcode authenticate.
	Login, Passcode string
	// TLS settings for TLS schemes.
	CAFile, CertFile, KeyFile, ServerName string
	InsecureSkipVerify                    bool
	// ConfirmEvery asks the broker to confirm every Nth message (STOMP
	// receipts; 1 or less: every message). Close confirms the rest.
	ConfirmEvery int
	Logger       *slog.Logger
}

// DialFunc opens a publisher for the URL in o.
type DialFunc func(ctx context.Context, o Options) (Publisher, error)

// family returns the publisher of a source kind, by the kind's name in the
// source registry, or nil when the kind has none.
func family(kind string) DialFunc {
	switch kind {
	case "stomp":
		return DialSTOMP
	case "mqtt":
		return DialMQTT
	}
	return nil
}

// Dialers maps URL schemes to the transports that publish to them: the
// schemes of every source kind with a publisher, as the source registry
// (runner/sources) assigns them.
func Dialers() map[string]DialFunc {
	d := map[string]DialFunc{}
	for _, k := range sources.Standard().Kinds() {
		if dial := family(k.Name()); dial != nil {
			for _, s := range k.Schemes() {
				d[s] = dial
			}
		}
	}
	return d
}

// Dial opens a publisher for o.URL with the transport its scheme names.
func Dial(ctx context.Context, o Options) (Publisher, error) {
	scheme, _, ok := strings.Cut(o.URL, "://")
	if !ok {
		return nil, fmt.Errorf("publish: %q is not a URL (want e.g. stomp+ws://host:15674/ws)", o.URL)
	}
	dialers := Dialers()
	dial, ok := dialers[strings.ToLower(scheme)]
	if !ok {
		known := make([]string, 0, len(dialers))
		for k := range dialers {
			known = append(known, k)
		}
		slices.Sort(known)
		return nil, fmt.Errorf("publish: unsupported scheme %q (known: %s)", scheme, strings.Join(known, ", "))
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return dial(ctx, o)
}

// Event is an event read from a file: an envelope {type, payload, headers}.
type Event struct {
	Type    string            `json:"type"`
	Payload json.RawMessage   `json:"payload"`
	Headers map[string]string `json:"headers,omitempty"`
}

// ReadEvents reads events from r: one JSON value, a JSON array, or JSON
// Lines. Each value is an envelope {"type", "payload", "headers"}; a value
// without "payload" is taken as a bare payload whose type is defaultType.
// A non-empty defaultType also overrides the envelopes' types.
func ReadEvents(r io.Reader, defaultType string) ([]Event, error) {
	var raws []json.RawMessage
	err := event.ScanRaw(r, func(raw []byte, err error) error {
		if err != nil {
			return fmt.Errorf("event %d: malformed JSON: %w", len(raws)+1, err)
		}
		raws = append(raws, raw)
		return nil
	})
	if err != nil {
		return nil, err
	}
	events := make([]Event, 0, len(raws))
	for i, raw := range raws {
		var probe map[string]json.RawMessage
		if err := json.Unmarshal(raw, &probe); err != nil {
			return nil, fmt.Errorf("event %d: not a JSON object", i+1)
		}
		var ev Event
		if _, isEnvelope := probe["payload"]; isEnvelope {
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&ev); err != nil {
				return nil, fmt.Errorf("event %d: envelope: %w (want type, payload, headers)", i+1, err)
			}
		} else {
			ev.Payload = raw
		}
		if defaultType != "" {
			ev.Type = defaultType
		}
		if ev.Type == "" {
			return nil, fmt.Errorf("event %d: no type (give the envelope a type, or use --type)", i+1)
		}
		var obj map[string]any
		if err := json.Unmarshal(ev.Payload, &obj); err != nil || obj == nil {
			return nil, fmt.Errorf("event %d: payload must be a JSON object", i+1)
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, ev.Payload); err != nil {
			return nil, fmt.Errorf("event %d: %w", i+1, err)
		}
		ev.Payload = buf.Bytes()
		events = append(events, ev)
	}
	return events, nil
}

// Header names set by WaldurMessage.
const (
	HeaderMessageID   = "x-message-id"
	HeaderPublishedAt = "x-eventfn-published-at" // unix nanoseconds
)

// frameHeaders are STOMP frame headers an envelope may carry (as received)
// but that must not be sent as message headers.
var frameHeaders = map[string]bool{"destination": true, "content-length": true, "receipt": true,
	"transaction": true, "message-id": true, "subscription": true, "ack": true, "redelivered": true}

// WaldurMessage is the message Waldur would send for body: to destination,
// with Waldur's headers and x-message-id = waldur.MessageID(vhost,
// destination, body), plus x-eventfn-published-at. extra headers (an
// envelope's) are added last and override, except STOMP frame headers
// (destination, content-length, …), which are dropped.
func WaldurMessage(vhost, destination string, body []byte, extra map[string]string, now time.Time) Message {
	h := map[string]string{
		"persistent":      "true",
		"durable":         "true",
		"auto-delete":     "false",
		"content-type":    "application/json",
		HeaderMessageID:   waldur.MessageID(vhost, destination, body),
		HeaderPublishedAt: strconv.FormatInt(now.UnixNano(), 10),
	}
	for k, v := range extra {
		if !frameHeaders[strings.ToLower(k)] {
			h[k] = v
		}
	}
	return Message{Destination: destination, Body: body, Headers: h}
}

// Plan is what Run publishes.
type Plan struct {
	Events []Event
	// Destination of each message; "{type}" in it is replaced by the
	// event's type (e.g. "/amq/queue/subscription_…_offering_…_{type}").
	// Empty: each event's "destination" header (as in captured events).
	Destination string
	// VHost enters x-message-id.
	VHost string
	// Count is the number of messages, cycling through Events (default:
	// each event once).
	Count int
	// Rate limits the messages per second (0: as fast as possible).
	Rate float64
	// SeqField, when Count exceeds the number of events, is set in each
	// payload to the message's sequence number, so that every message is
	// distinct (and has its own x-message-id). Empty: copies are
	// identical, and a consumer de-duplicates them.
	SeqField string
	// Now replaces time.Now (tests).
	Now func() time.Time
}

// Stats say what Run did.
type Stats struct {
	Sent    int
	Elapsed time.Duration
}

// Rate returns the achieved messages per second.
func (s Stats) Rate() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Sent) / s.Elapsed.Seconds()
}

// Run publishes plan through p. It stops early, with ctx's error, when ctx
// ends.
func Run(ctx context.Context, p Publisher, plan Plan) (Stats, error) {
	if len(plan.Events) == 0 {
		return Stats{}, errors.New("publish: no events")
	}
	if plan.Destination == "" {
		for i, ev := range plan.Events {
			if ev.Headers["destination"] == "" {
				return Stats{}, fmt.Errorf("publish: event %d has no destination header; give a destination", i+1)
			}
		}
	}
	count := plan.Count
	if count <= 0 {
		count = len(plan.Events)
	}
	now := plan.Now
	if now == nil {
		now = time.Now
	}
	seq := plan.SeqField != "" && count > len(plan.Events)
	start := time.Now()
	var st Stats
	for i := range count {
		if plan.Rate > 0 {
			due := start.Add(time.Duration(float64(i) / plan.Rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					st.Elapsed = time.Since(start)
					return st, ctx.Err()
				}
			}
		}
		if err := ctx.Err(); err != nil {
			st.Elapsed = time.Since(start)
			return st, err
		}
		ev := plan.Events[i%len(plan.Events)]
		body := ev.Payload
		if seq {
			var obj map[string]any
			if err := json.Unmarshal(body, &obj); err != nil {
				return st, fmt.Errorf("publish: event %d: %w", i%len(plan.Events)+1, err)
			}
			obj[plan.SeqField] = i
			var err error
			if body, err = json.Marshal(obj); err != nil {
				return st, err
			}
		}
		dest := plan.Destination
		if dest == "" {
			dest = ev.Headers["destination"]
		}
		dest = strings.ReplaceAll(dest, "{type}", ev.Type)
		extra := ev.Headers
		if seq && extra[HeaderMessageID] != "" { // the body changed: so does its id
			extra = maps.Clone(extra)
			delete(extra, HeaderMessageID)
		}
		m := WaldurMessage(plan.VHost, dest, body, extra, now())
		if err := p.Publish(ctx, m); err != nil {
			st.Elapsed = time.Since(start)
			return st, fmt.Errorf("publish message %d to %s: %w", i+1, dest, err)
		}
		st.Sent++
	}
	st.Elapsed = time.Since(start)
	return st, nil
}
