package actions

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/eventfn/eventfn/spec"
)

// typedDecoder is a settings struct that decodes itself from rendered
// parameters, without reflection. decode uses it when the struct has one.
type typedDecoder interface {
	decodeParams(p params) error
}

// params reads rendered parameters into typed fields with the conversions
// of assign: anything scalar into a string (maps and lists as JSON), a
// whole number or numeric string into an int.
type params map[string]any

func (p params) str(key string, out *string) {
	if v, ok := p[key]; ok && v != nil {
		*out = text(v)
	}
}

func (p params) any(key string, out *any) {
	if v, ok := p[key]; ok {
		*out = v
	}
}

func (p params) num(key string, out *int) error {
	v, ok := p[key]
	if !ok || v == nil {
		return nil
	}
	n, err := toInt(key, v)
	*out = n
	return err
}

func (p params) strs(key string, out *[]string) error {
	list, ok, err := p.list(key)
	if !ok || err != nil {
		return err
	}
	s := make([]string, len(list))
	for i, e := range list {
		if e != nil {
			s[i] = text(e)
		}
	}
	*out = s
	return nil
}

func (p params) nums(key string, out *[]int) error {
	list, ok, err := p.list(key)
	if !ok || err != nil {
		return err
	}
	s := make([]int, len(list))
	for i, e := range list {
		if e == nil {
			continue
		}
		if s[i], err = toInt(fmt.Sprintf("%s[%d]", key, i), e); err != nil {
			return err
		}
	}
	*out = s
	return nil
}

func (p params) list(key string) ([]any, bool, error) {
	v, ok := p[key]
	if !ok || v == nil {
		return nil, false, nil
	}
	switch l := v.(type) {
	case []any:
		return l, true, nil
	case []string:
		out := make([]any, len(l))
		for i, s := range l {
			out[i] = s
		}
		return out, true, nil
	}
	return nil, false, fmt.Errorf("%s: want a list, got %s", key, spec.Describe(v))
}

func (p params) strMap(key string, out *map[string]string) error {
	m, ok, err := p.mapping(key)
	if !ok || err != nil {
		return err
	}
	s := make(map[string]string, len(m))
	for k, e := range m {
		if e != nil {
			s[k] = text(e)
		} else {
			s[k] = ""
		}
	}
	*out = s
	return nil
}

func (p params) mapping(key string) (map[string]any, bool, error) {
	v, ok := p[key]
	if !ok || v == nil {
		return nil, false, nil
	}
	m, isMap := v.(map[string]any)
	if !isMap {
		return nil, false, fmt.Errorf("%s: want a mapping, got %s", key, spec.Describe(v))
	}
	return m, true, nil
}

func toInt(path string, v any) (int, error) {
	switch n := v.(type) {
	case int:
		return n, nil
	case int64:
		return int(n), nil
	case float64:
		if n != float64(int64(n)) {
			return 0, fmt.Errorf("%s: want an integer, got %v", path, n)
		}
		return int(n), nil
	case string:
		i, err := strconv.Atoi(strings.TrimSpace(n))
		if err != nil {
			return 0, fmt.Errorf("%s: want an integer, got %q", path, n)
		}
		return i, nil
	}
	return 0, fmt.Errorf("%s: want an integer, got %s", path, spec.Describe(v))
}

// first returns the first non-nil error.
func first(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (x *ExecParams) decodeParams(p params) error {
	p.str("stdin", &x.Stdin)
	p.str("dir", &x.Dir)
	return first(p.strs("argv", &x.Argv), p.strMap("env", &x.Env),
		p.nums("ok_exit_codes", &x.OKExitCodes), p.nums("fatal_exit_codes", &x.FatalExitCodes), p.num("max_output", &x.MaxOutput))
}

func (x *ScriptParams) decodeParams(p params) error {
	p.str("path", &x.Path)
	p.str("dir", &x.Dir)
	return first(p.strs("args", &x.Args), p.strMap("env", &x.Env),
		p.nums("ok_exit_codes", &x.OKExitCodes), p.nums("fatal_exit_codes", &x.FatalExitCodes), p.num("max_output", &x.MaxOutput))
}

func (x *WebhookParams) decodeParams(p params) error {
	p.str("url", &x.URL)
	p.str("method", &x.Method)
	p.str("hmac_secret_file", &x.HMACSecretFile)
	p.any("body", &x.Body)
	return first(p.strMap("headers", &x.Headers), p.nums("ok_status", &x.OKStatus), p.num("max_response", &x.MaxResponse))
}

func (x *logParams) decodeParams(p params) error {
	p.str("message", &x.Message)
	p.str("level", &x.Level)
	// The fields are only read (logged), so they are not copied: a copy was
	// two allocations on every log step, logged or not.
	m, ok, err := p.mapping("fields")
	if ok && err == nil {
		x.Fields = m
	}
	return err
}
