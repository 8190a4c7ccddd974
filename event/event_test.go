package event

import (
	"errors"
	"strings"
	"testing"
)

func TestDecodeCatalogue(t *testing.T) {
	deep := strings.Repeat(`{"a":`, 100) + "1" + strings.Repeat("}", 100)
	for _, c := range []struct {
		name string
		body string
		want error
	}{
		{"malformed", `{"a":`, ErrMalformed},
		{"not object", `[1]`, ErrNotObject},
		{"string", `"x"`, ErrNotObject},
		{"invalid utf8", "{\"a\": \"\xff\"}", ErrInvalidUTF8},
		{"too deep", deep, ErrTooDeep},
		{"too large", `{"a": "` + strings.Repeat("x", 2000) + `"}`, ErrTooLarge},
		{"trailing", `{} {}`, ErrMalformed},
	} {
		_, err := DecodePayload([]byte(c.body), "t", "", Limits{MaxBytes: 1000})
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
		if Reason(err) == "other" {
			t.Errorf("%s: no metric reason for %v", c.name, err)
		}
	}
}

func TestDecodeTypeSources(t *testing.T) {
	ev, err := DecodePayload([]byte(`{"object_type": "order", "n": 2, "f": 1.5}`), "", "object_type", Limits{})
	if err != nil || ev.Type != "order" {
		t.Fatalf("ev=%v err=%v", ev, err)
	}
	if ev.Payload["n"] != 2 || ev.Payload["f"] != 1.5 {
		t.Errorf("numbers: %#v", ev.Payload)
	}
	if _, err := DecodePayload([]byte(`{}`), "", "object_type", Limits{}); !errors.Is(err, ErrMissingType) {
		t.Errorf("err = %v", err)
	}
	if _, err := DecodeEnvelope([]byte(`{"type": "x", "extra": 1}`), Limits{}); err == nil {
		t.Error("unknown envelope keys must be refused")
	}
}

// TestDecodeRefusesATypeThatIsNotUTF8: a type from the transport (an MQTT
// topic's segment) that is not UTF-8 is refused; it used to reach the
// metrics as a label value and panic the runner (found by the sources'
// FuzzMessageToEvent).
func TestDecodeRefusesATypeThatIsNotUTF8(t *testing.T) {
	_, err := DecodePayload([]byte(`{}`), "order\xd3", "", Limits{})
	if !errors.Is(err, ErrInvalidUTF8) || Reason(err) != "invalid_utf8" {
		t.Errorf("err = %v, want %v", err, ErrInvalidUTF8)
	}
}

func TestReadAllForms(t *testing.T) {
	for in, n := range map[string]int{
		`{"type":"a"}`:                       1,
		`[{"type":"a"},{"type":"b"}]`:        2,
		"{\"type\":\"a\"}\n{\"type\":\"b\"}": 2,
		"":                                   0,
	} {
		evs, err := ReadAll(strings.NewReader(in), Limits{})
		if err != nil || len(evs) != n {
			t.Errorf("%q: %d events, err %v", in, len(evs), err)
		}
	}
	if _, err := ReadAll(strings.NewReader(`{"type":"a"}`+"\n"+`{"payload":{}}`), Limits{}); err == nil || !strings.Contains(err.Error(), "event 2") {
		t.Errorf("error must name the event: %v", err)
	}
}
