// Package event defines the Event that flows from sources through rules to
// actions, and decodes events from the JSON forms eventfn accepts.
package event

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"
)

// Event is one decoded message: its type, its JSON payload and its headers.
type Event struct {
	// Type selects the rules that see the event (order, user_role, ...).
	Type string `json:"type"`
	// Payload is the decoded JSON object of the message body.
	Payload map[string]any `json:"payload"`
	// Headers are the transport headers (STOMP headers, MQTT user properties,
	// HTTP headers of a push) or the headers given in an envelope.
	Headers map[string]string `json:"headers,omitempty"`
	// Source is the name of the source that delivered the event.
	Source string `json:"source,omitempty"`
	// ID identifies the message for de-duplication (x-message-id), if known.
	ID string `json:"id,omitempty"`
	// Received is when the source received the message.
	Received time.Time `json:"-"`
}

// Limits bound what the decoder accepts. The zero value means the defaults.
type Limits struct {
	// MaxBytes is the largest body accepted (default 1 MiB).
	MaxBytes int
	// MaxDepth is the deepest nesting of arrays and objects (default 64).
	MaxDepth int
}

// DefaultMaxBytes is the body size limit when none is configured.
const DefaultMaxBytes = 1 << 20

// DefaultMaxDepth is the nesting limit when none is configured.
const DefaultMaxDepth = 64

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	return l
}

// Reasons for rejecting input; every decode error wraps exactly one of them,
// so callers can count rejections by reason.
var (
	ErrTooLarge    = errors.New("body too large")
	ErrInvalidUTF8 = errors.New("body is not valid UTF-8")
	ErrMalformed   = errors.New("malformed JSON")
	ErrNotObject   = errors.New("JSON is not an object")
	ErrTooDeep     = errors.New("JSON nested too deeply")
	ErrMissingType = errors.New("missing event type")
)

// Reason returns a short label for a decode error, for metrics.
func Reason(err error) string {
	for _, r := range []struct {
		err   error
		label string
	}{
		{ErrTooLarge, "too_large"}, {ErrInvalidUTF8, "invalid_utf8"}, {ErrMalformed, "malformed_json"},
		{ErrNotObject, "not_object"}, {ErrTooDeep, "too_deep"}, {ErrMissingType, "missing_type"},
	} {
		if errors.Is(err, r.err) {
			return r.label
		}
	}
	return "other"
}

// DecodePayload decodes a message body that is the payload itself, as Waldur
// sends it over the broker. The type comes from the transport (typ), or, when
// typ is empty, from the payload's typeField (e.g. "object_type").
func DecodePayload(body []byte, typ, typeField string, lim Limits) (*Event, error) {
	obj, err := decodeObject(body, lim)
	if err != nil {
		return nil, err
	}
	if typ == "" && typeField != "" {
		typ, _ = obj[typeField].(string)
	}
	if typ == "" {
		return nil, fmt.Errorf("%w: no type from the source and no %q field", ErrMissingType, typeField)
	}
	if !utf8.ValidString(typ) { // a topic segment: it labels metrics, which must be UTF-8
		return nil, fmt.Errorf("%w: event type %q from the source", ErrInvalidUTF8, typ)
	}
	return &Event{Type: typ, Payload: obj}, nil
}

// DecodeEnvelope decodes one envelope {"type": ..., "payload": {...},
// "headers": {...}}, the form used by dry-run, rule tests and local sources.
func DecodeEnvelope(body []byte, lim Limits) (*Event, error) {
	obj, err := decodeObject(body, lim)
	if err != nil {
		return nil, err
	}
	return envelope(obj)
}

func envelope(obj map[string]any) (*Event, error) {
	ev := &Event{}
	for k, v := range obj {
		switch k {
		case "type":
			s, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("%w: \"type\" must be a string", ErrMissingType)
			}
			ev.Type = s
		case "payload":
			p, ok := v.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%w: \"payload\" must be an object", ErrNotObject)
			}
			ev.Payload = p
		case "headers":
			h, ok := v.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%w: \"headers\" must be an object", ErrNotObject)
			}
			ev.Headers = make(map[string]string, len(h))
			for hk, hv := range h {
				if s, ok := hv.(string); ok {
					ev.Headers[hk] = s
				} else {
					b, _ := json.Marshal(hv)
					ev.Headers[hk] = string(b)
				}
			}
		case "id":
			ev.ID, _ = v.(string)
		case "source":
			ev.Source, _ = v.(string)
		default:
			return nil, fmt.Errorf("%w: unknown envelope key %q (want type, payload, headers, id)", ErrMalformed, k)
		}
	}
	if ev.Type == "" {
		return nil, ErrMissingType
	}
	if ev.Payload == nil {
		ev.Payload = map[string]any{}
	}
	return ev, nil
}

func decodeObject(body []byte, lim Limits) (map[string]any, error) {
	lim = lim.withDefaults()
	if len(body) > lim.MaxBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(body), lim.MaxBytes)
	}
	v, err := parse(body, lim.MaxDepth)
	if err != nil {
		return nil, err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: got %s", ErrNotObject, kind(v))
	}
	return obj, nil
}

func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "an array"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	default:
		return "a number"
	}
}

// ReadAll reads envelopes from r: one JSON object, a JSON array of objects, or
// JSON Lines. Each element is decoded with DecodeEnvelope; the first error
// stops reading and names the element's position.
func ReadAll(r io.Reader, lim Limits) ([]*Event, error) {
	var out []*Event
	err := Scan(r, lim, func(ev *Event, err error) error {
		if err != nil {
			return err
		}
		out = append(out, ev)
		return nil
	})
	return out, err
}

// Scan reads envelopes from r like ReadAll but hands each one (or its decode
// error) to fn as it is read, so a file source can stream a large file. A
// non-nil error from fn stops the scan and is returned.
func Scan(r io.Reader, lim Limits, fn func(*Event, error) error) error {
	n := 0
	return ScanRaw(r, func(raw []byte, err error) error {
		n++
		if err != nil {
			return fn(nil, fmt.Errorf("event %d: %w: %v", n, ErrMalformed, err))
		}
		ev, err := DecodeEnvelope(raw, lim)
		if err != nil {
			err = fmt.Errorf("event %d: %w", n, err)
		}
		return fn(ev, err)
	})
}

// ScanRaw splits r into raw JSON values, streaming: the elements of a
// top-level array, or a sequence of values (one object, or JSON Lines).
// fn gets each value, or the error that stops the stream (after which
// nothing more can be read). A non-nil error from fn stops the scan and is
// returned.
func ScanRaw(r io.Reader, fn func(raw []byte, err error) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	first, err := peekNonSpace(br)
	if err == io.EOF {
		return nil
	}
	if err != nil {
		return err
	}
	dec := json.NewDecoder(br)
	inArray := first == '['
	if inArray {
		if _, err := dec.Token(); err != nil {
			return fn(nil, err)
		}
	}
	for {
		if inArray && !dec.More() {
			if _, err := dec.Token(); err != nil {
				return fn(nil, err)
			}
			return nil
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err == io.EOF && !inArray {
			return nil
		} else if err != nil {
			return fn(nil, err)
		}
		if err := fn(raw, nil); err != nil {
			return err
		}
	}
}

func peekNonSpace(br *bufio.Reader) (byte, error) {
	for {
		b, err := br.Peek(1)
		if err != nil {
			return 0, err
		}
		switch b[0] {
		case ' ', '\t', '\r', '\n':
			_, _ = br.ReadByte()
		default:
			return b[0], nil
		}
	}
}
