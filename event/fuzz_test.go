package event

import (
	"bytes"
	"testing"
)

// FuzzDecode: any body decodes to an event with a type and a payload, or to
// an error with a known reason; never a panic.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"type":"order","payload":{"a":1}}`, `[{"type":"a"}]`, `{"a":`, "\xff", `[[[[[[`, `{"type": 5}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := DecodeEnvelope(b, Limits{MaxBytes: 1 << 16})
		if err != nil {
			if Reason(err) == "other" {
				t.Fatalf("error without a reason: %v", err)
			}
		} else if ev.Type == "" || ev.Payload == nil {
			t.Fatalf("event without type or payload: %+v", ev)
		}
		if ev, err := DecodePayload(b, "t", "", Limits{}); err == nil && ev.Payload == nil {
			t.Fatal("nil payload")
		}
		_ = Scan(bytes.NewReader(b), Limits{}, func(*Event, error) error { return nil })
	})
}
