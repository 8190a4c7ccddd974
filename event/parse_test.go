package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// reference decodes b as the decoder did before parse existed: encoding/json
// with UseNumber, then json.Number turned into int (integral and in range)
// or float64. ok is false when encoding/json refuses b.
func reference(b []byte) (v any, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false
	}
	var conv func(any) any
	conv = func(v any) any {
		switch t := v.(type) {
		case map[string]any:
			for k, e := range t {
				t[k] = conv(e)
			}
		case []any:
			for i, e := range t {
				t[i] = conv(e)
			}
		case json.Number:
			if i, err := t.Int64(); err == nil {
				return int(i)
			}
			f, _ := t.Float64()
			return f
		}
		return v
	}
	return conv(v), true
}

func sameTree(a, b any) bool {
	if fa, ok := a.(float64); ok {
		fb, ok := b.(float64)
		return ok && (fa == fb || (math.IsNaN(fa) && math.IsNaN(fb)))
	}
	return reflect.DeepEqual(a, b)
}

func TestParseMatchesEncodingJSON(t *testing.T) {
	for _, in := range []string{
		`{}`, `[]`, ` {"a" : [1, -2, 3.5, 1e3, -0, 0.0, 12345678901234567890, -9223372036854775808, 1e400]} `,
		`{"s":"plain","e":"tab\tq\"b\\s\/ \u00e9 \ud83d\ude00 \ud800 \udc00x \ud800\u0041"}`,
		`{"nested":{"x":[{"y":null},true,false]}}`, `{"a":1,"a":2}`, `"x"`, `3`, `null`,
		`{"a":1,}`, `{"a"}`, `[1 2]`, `{"a":01}`, `{"a":.5}`, `{"a":1.}`, `{"a":1e}`, `{"a":tru}`,
		`{"a":"\x01"}`, `{"a":"\q"}`, `{"a":"\u12"}`, `{"a":1} x`, `{"a":"unterminated`, ``, `   `,
		"{\"a\":\"\xff\"}", "{\"\xc3\xa9\":1}",
	} {
		want, wantOK := reference([]byte(in))
		got, err := parse([]byte(in), DefaultMaxDepth)
		if !utf8.ValidString(in) {
			if !errors.Is(err, ErrInvalidUTF8) {
				t.Errorf("%q: invalid UTF-8 not refused as such: %v", in, err)
			}
			continue
		}
		if wantOK != (err == nil) {
			t.Errorf("%q: encoding/json ok=%v, parse err=%v", in, wantOK, err)
			continue
		}
		if wantOK && !sameTree(want, got) {
			t.Errorf("%q: got %#v, want %#v", in, got, want)
		}
	}
}

func TestParseReasons(t *testing.T) {
	deep := strings.Repeat("[", 65) + strings.Repeat("]", 65)
	for _, c := range []struct {
		in   string
		want error
	}{
		{deep, ErrTooDeep},
		{"{\"a\":\"\xff\"}", ErrInvalidUTF8},
		{"{\"a\":1,\xff}", ErrInvalidUTF8},
		{`{"a":}`, ErrMalformed},
	} {
		_, err := parse([]byte(c.in), DefaultMaxDepth)
		if !errors.Is(err, c.want) {
			t.Errorf("%q: got %v, want %v", c.in, err, c.want)
		}
	}
	// Exactly at the limit is accepted.
	ok := strings.Repeat("[", 64) + strings.Repeat("]", 64)
	if _, err := parse([]byte(ok), DefaultMaxDepth); err != nil {
		t.Errorf("depth 64: %v", err)
	}
}

// FuzzParseMatchesEncodingJSON holds parse to encoding/json: the same
// inputs accepted (bar the depth limit), the same trees built.
func FuzzParseMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{`{"a":[1,2.5,"x\u00e9"],"b":{"c":null}}`, `[1e400,-0]`, `"\ud83d\ude00"`, string(orderBody), string(largeBody)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want, wantOK := reference(b)
		got, err := parse(b, 10000)
		if errors.Is(err, ErrTooDeep) {
			return
		}
		if wantOK && !utf8.Valid(b) {
			// encoding/json replaces invalid UTF-8 by U+FFFD; eventfn refuses it.
			if !errors.Is(err, ErrInvalidUTF8) {
				t.Fatalf("%q: invalid UTF-8 accepted: %v", b, err)
			}
			return
		}
		if wantOK != (err == nil) {
			t.Fatalf("%q: encoding/json ok=%v, parse err=%v", b, wantOK, err)
		}
		if wantOK && !sameTree(want, got) {
			t.Fatalf("%q: got %#v, want %#v", b, got, want)
		}
	})
}
