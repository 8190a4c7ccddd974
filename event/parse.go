package event

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// parser decodes one JSON value in a single pass over the body: syntax,
// nesting depth, UTF-8 of strings and the conversion of numbers (int when
// integral and in range, else float64) happen together, where encoding/json
// needed a validity scan, a decode into json.Number and a walk to convert
// the numbers, after a separate depth pre-scan of ours. The result is the
// same tree encoding/json builds into `any` with UseNumber followed by that
// conversion; FuzzParseMatchesEncodingJSON holds the two to it.
//
// Recursion is bounded by maxDepth, so a hostile body cannot exhaust the
// stack; every allocation is proportional to the body's size.
type parser struct {
	b        []byte
	i        int
	depth    int
	maxDepth int
}

// errTooDeep and errUTF8 are wrapped into the package's reasons by parse.
var (
	errTooDeep = errors.New("too deep")
	errUTF8    = errors.New("invalid UTF-8 in a string")
)

// parse decodes b, which must hold exactly one JSON value (surrounding
// white space allowed).
func parse(b []byte, maxDepth int) (any, error) {
	p := &parser{b: b, maxDepth: maxDepth}
	p.skipSpace()
	v, err := p.value()
	if err == nil {
		p.skipSpace()
		if p.i < len(p.b) {
			err = p.errorf("trailing data after the JSON value")
		}
	}
	switch {
	case err == nil:
		return v, nil
	case errors.Is(err, errTooDeep):
		return nil, fmt.Errorf("%w: limit %d", ErrTooDeep, maxDepth)
	case errors.Is(err, errUTF8) || !utf8.Valid(b):
		// A syntax error caused by a byte that is not UTF-8 is reported as
		// what it is, as the separate validity check used to.
		return nil, ErrInvalidUTF8
	}
	return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("offset %d: %s", p.i, fmt.Sprintf(format, args...))
}

func (p *parser) skipSpace() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) value() (any, error) {
	if p.i >= len(p.b) {
		return nil, p.errorf("unexpected end of input")
	}
	switch c := p.b[p.i]; {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		return p.str()
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	case c == 't':
		return p.literal("true", true)
	case c == 'f':
		return p.literal("false", false)
	case c == 'n':
		return p.literal("null", nil)
	default:
		return nil, p.errorf("invalid character %q looking for a value", c)
	}
}

func (p *parser) literal(word string, v any) (any, error) {
	if len(p.b)-p.i < len(word) || string(p.b[p.i:p.i+len(word)]) != word {
		return nil, p.errorf("invalid literal, want %s", word)
	}
	p.i += len(word)
	return v, nil
}

func (p *parser) enter() error {
	p.depth++
	if p.depth > p.maxDepth {
		return errTooDeep
	}
	return nil
}

func (p *parser) object() (any, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	p.i++ // '{'
	obj := map[string]any{}
	p.skipSpace()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		p.depth--
		return obj, nil
	}
	for {
		p.skipSpace()
		if p.i >= len(p.b) || p.b[p.i] != '"' {
			return nil, p.errorf("want a string for an object key")
		}
		k, err := p.str()
		if err != nil {
			return nil, err
		}
		p.skipSpace()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return nil, p.errorf("want ':' after an object key")
		}
		p.i++
		p.skipSpace()
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		obj[k] = v // the last of duplicate keys wins, as in encoding/json
		p.skipSpace()
		if p.i >= len(p.b) {
			return nil, p.errorf("unexpected end of input in an object")
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			p.depth--
			return obj, nil
		default:
			return nil, p.errorf("want ',' or '}' in an object")
		}
	}
}

func (p *parser) array() (any, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	p.i++ // '['
	arr := []any{}
	p.skipSpace()
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
		p.depth--
		return arr, nil
	}
	for {
		p.skipSpace()
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		arr = append(arr, v)
		p.skipSpace()
		if p.i >= len(p.b) {
			return nil, p.errorf("unexpected end of input in an array")
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case ']':
			p.i++
			p.depth--
			return arr, nil
		default:
			return nil, p.errorf("want ',' or ']' in an array")
		}
	}
}

// str reads a string starting at its opening quote. Strings without escapes
// (nearly all of Waldur's) are one slice-to-string copy.
func (p *parser) str() (string, error) {
	p.i++ // opening quote
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			s := p.b[start:p.i]
			p.i++
			return string(s), nil
		case c == '\\':
			return p.strEscaped(start)
		case c < 0x20:
			return "", p.errorf("control character in a string")
		case c < utf8.RuneSelf:
			p.i++
		default:
			r, size := utf8.DecodeRune(p.b[p.i:])
			if r == utf8.RuneError && size == 1 {
				return "", errUTF8
			}
			p.i += size
		}
	}
	return "", p.errorf("unexpected end of input in a string")
}

// strEscaped continues a string from its first backslash, building it in a
// buffer. Invalid or lone surrogates in \u escapes become U+FFFD, as in
// encoding/json.
func (p *parser) strEscaped(start int) (string, error) {
	buf := make([]byte, 0, 2*(p.i-start)+16)
	buf = append(buf, p.b[start:p.i]...)
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return string(buf), nil
		case c == '\\':
			if p.i+1 >= len(p.b) {
				return "", p.errorf("unexpected end of input in a string escape")
			}
			e := p.b[p.i+1]
			p.i += 2
			switch e {
			case '"', '\\', '/':
				buf = append(buf, e)
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'u':
				r, ok := p.hex4()
				if !ok {
					return "", p.errorf("invalid \\u escape")
				}
				if utf16.IsSurrogate(r) {
					// A high surrogate followed by an escaped low one is one
					// rune; anything else is U+FFFD and the next escape is
					// read on its own.
					r2 := utf8.RuneError
					if p.i+1 < len(p.b) && p.b[p.i] == '\\' && p.b[p.i+1] == 'u' {
						save := p.i
						p.i += 2
						if lo, ok := p.hex4(); ok {
							if dec := utf16.DecodeRune(r, lo); dec != utf8.RuneError {
								r2 = dec
							} else {
								p.i = save
							}
						} else {
							return "", p.errorf("invalid \\u escape")
						}
					}
					r = r2
				}
				buf = utf8.AppendRune(buf, r)
			default:
				return "", p.errorf("invalid escape \\%c", e)
			}
		case c < 0x20:
			return "", p.errorf("control character in a string")
		case c < utf8.RuneSelf:
			buf = append(buf, c)
			p.i++
		default:
			r, size := utf8.DecodeRune(p.b[p.i:])
			if r == utf8.RuneError && size == 1 {
				return "", errUTF8
			}
			buf = append(buf, p.b[p.i:p.i+size]...)
			p.i += size
		}
	}
	return "", p.errorf("unexpected end of input in a string")
}

func (p *parser) hex4() (rune, bool) {
	if len(p.b)-p.i < 4 {
		return 0, false
	}
	var r rune
	for _, c := range p.b[p.i : p.i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	p.i += 4
	return r, true
}

// number reads a JSON number: an int when it has no fraction or exponent and
// fits, else a float64 (±Inf beyond the float range, as json.Number's
// Float64 gives, so that such a payload is a decision of the step that
// serialises it, not of the decoder).
func (p *parser) number() (any, error) {
	start := p.i
	if p.b[p.i] == '-' {
		p.i++
	}
	digits := func() int {
		n := 0
		for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	if p.i < len(p.b) && p.b[p.i] == '0' {
		p.i++
	} else if digits() == 0 {
		return nil, p.errorf("invalid number")
	}
	integral := true
	if p.i < len(p.b) && p.b[p.i] == '.' {
		integral = false
		p.i++
		if digits() == 0 {
			return nil, p.errorf("invalid number: no digits after '.'")
		}
	}
	if p.i < len(p.b) && (p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		integral = false
		p.i++
		if p.i < len(p.b) && (p.b[p.i] == '+' || p.b[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return nil, p.errorf("invalid number: no digits in the exponent")
		}
	}
	lit := p.b[start:p.i]
	if integral && len(lit) <= 18 { // at most 18 digits: fits an int64 without overflow
		n, neg := 0, lit[0] == '-'
		for _, c := range lit {
			if c != '-' {
				n = n*10 + int(c-'0')
			}
		}
		if neg {
			n = -n
		}
		return n, nil
	}
	text := string(lit)
	if integral {
		if n, err := strconv.ParseInt(text, 10, 64); err == nil && n >= math.MinInt && n <= math.MaxInt {
			return int(n), nil
		}
	}
	f, _ := strconv.ParseFloat(text, 64) // syntax is checked above; range errors give ±Inf
	return f, nil
}
