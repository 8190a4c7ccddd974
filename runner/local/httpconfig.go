package local

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// HTTPConfig holds every setting of the HTTP source: the `http:` section of
// a source whose url is http://ADDR/PATH. The zero value is usable: see the
// Default* constants for what each unset setting means.
type HTTPConfig struct {
	// TokenFile or TokenEnv hold a bearer token: requests must carry
	// "Authorization: Bearer <token>".
	TokenFile string `yaml:"token_file"`
	TokenEnv  string `yaml:"token_env"`
	// HMACSecretFile or HMACSecretEnv hold the secret of webhook signatures:
	// requests must carry HMACHeader: sha256=<hex of HMAC-SHA256(body)>
	// (GitHub's X-Hub-Signature-256 style).
	HMACSecretFile string `yaml:"hmac_secret_file"`
	HMACSecretEnv  string `yaml:"hmac_secret_env"`
	// HMACHeader names the signature header (default X-Hub-Signature-256).
	HMACHeader string `yaml:"hmac_header"`
	// TLS serves HTTPS with this certificate and key (PEM files).
	TLS HTTPTLS `yaml:"tls"`
	// AllowedOrigins are the Origin values accepted from browsers (exact,
	// e.g. https://waldur.example.org). A request with another Origin, or
	// with Sec-Fetch-Site other than same-origin or none, is refused.
	AllowedOrigins []string `yaml:"allowed_origins"`
	// Timeouts of the server (defaults: DefaultReadHeaderTimeout, …).
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	ReadTimeout       time.Duration `yaml:"read_timeout"`
	WriteTimeout      time.Duration `yaml:"write_timeout"`
	IdleTimeout       time.Duration `yaml:"idle_timeout"`
	// MaxConnections bounds open connections (default 256); more wait to be
	// accepted.
	MaxConnections int `yaml:"max_connections"`
	// MaxConcurrent bounds requests being handled at once (default 64);
	// beyond it a request is answered 429 with Retry-After.
	MaxConcurrent int `yaml:"max_concurrent"`
	// MaxBytesInFlight bounds the bytes of the events held at once, from
	// the request until their plans are settled (default 32 MiB); beyond
	// it a request is answered 429.
	MaxBytesInFlight int64 `yaml:"max_bytes_in_flight"`
	// Respond is when the source answers: "accepted" (default: 202 once the
	// event is kept, durably when runner.state_dir is set) or "after_plan"
	// (200 or 500 with the outcome once its plans finished).
	Respond string `yaml:"respond"`
}

// HTTPTLS are the certificate and key of an HTTPS source.
type HTTPTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Defaults of HTTPConfig.
const (
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	// DefaultAfterPlanWriteTimeout is the write timeout with respond:
	// after_plan: how long a client may wait for the outcome (the plans go
	// on if it is cut).
	DefaultAfterPlanWriteTimeout = 5 * time.Minute
	DefaultIdleTimeout           = 60 * time.Second
	DefaultMaxConnections        = 256
	DefaultMaxConcurrent         = 64
	DefaultMaxBytesInFlight      = 32 << 20
	DefaultHMACHeader            = "X-Hub-Signature-256"

	RespondAccepted  = "accepted"
	RespondAfterPlan = "after_plan"
)

// DecodeHTTPConfig decodes an http: section given as the generic map the
// rules loader keeps, refusing unknown keys.
func DecodeHTTPConfig(m map[string]any) (HTTPConfig, error) {
	var c HTTPConfig
	if len(m) == 0 {
		return c, nil
	}
	if err := knownKeys("http", m, reflect.TypeOf(c)); err != nil {
		return c, err
	}
	b, err := yaml.Marshal(m)
	if err != nil {
		return c, fmt.Errorf("http: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		msg := strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n  ")
		if _, rest, ok := strings.Cut(msg, ": "); ok && strings.HasPrefix(msg, "line ") {
			msg = rest // the line of a re-encoded copy, not of the rules file
		}
		return c, fmt.Errorf("http: %s", msg)
	}
	return c, c.Check()
}

// knownKeys refuses keys of m that no yaml tag of struct t names, with the
// known ones, one level of nested structs deep (tls).
func knownKeys(what string, m map[string]any, t reflect.Type) error {
	fields := map[string]reflect.Type{}
	var names []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			fields[name] = t.Field(i).Type
			names = append(names, name)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v := m[k]
		ft, ok := fields[k]
		if !ok {
			return fmt.Errorf("unknown key %q in %s (known: %s)", k, what, strings.Join(names, ", "))
		}
		if sub, ok := v.(map[string]any); ok && ft.Kind() == reflect.Struct {
			if err := knownKeys(what+"."+k, sub, ft); err != nil {
				return err
			}
		}
	}
	return nil
}

// Check reports settings that cannot work together.
func (c *HTTPConfig) Check() error {
	var errs []error
	if c.TokenFile != "" && c.TokenEnv != "" {
		errs = append(errs, errors.New("http: set one of token_file and token_env"))
	}
	if c.HMACSecretFile != "" && c.HMACSecretEnv != "" {
		errs = append(errs, errors.New("http: set one of hmac_secret_file and hmac_secret_env"))
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		errs = append(errs, errors.New("http: tls needs both cert_file and key_file"))
	}
	switch c.Respond {
	case "", RespondAccepted, RespondAfterPlan:
	default:
		errs = append(errs, fmt.Errorf("http: respond %q: want accepted or after_plan", c.Respond))
	}
	for _, d := range []time.Duration{c.ReadHeaderTimeout, c.ReadTimeout, c.WriteTimeout, c.IdleTimeout} {
		if d < 0 {
			errs = append(errs, errors.New("http: timeouts may not be negative"))
			break
		}
	}
	if c.MaxConnections < 0 || c.MaxConcurrent < 0 || c.MaxBytesInFlight < 0 {
		errs = append(errs, errors.New("http: limits may not be negative"))
	}
	return errors.Join(errs...)
}

// withDefaults fills every unset setting.
func (c HTTPConfig) withDefaults() HTTPConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&c.ReadTimeout, DefaultReadTimeout)
	if c.Respond == RespondAfterPlan {
		def(&c.WriteTimeout, DefaultAfterPlanWriteTimeout) // the answer waits for the plans
	}
	def(&c.WriteTimeout, DefaultWriteTimeout)
	def(&c.IdleTimeout, DefaultIdleTimeout)
	if c.MaxConnections == 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = DefaultMaxConcurrent
	}
	if c.MaxBytesInFlight == 0 {
		c.MaxBytesInFlight = DefaultMaxBytesInFlight
	}
	if c.HMACHeader == "" {
		c.HMACHeader = DefaultHMACHeader
	}
	if c.Respond == "" {
		c.Respond = RespondAccepted
	}
	return c
}

// secrets reads the token and HMAC secret (empty when not configured).
// Relative files are taken from dir.
func (c *HTTPConfig) secrets(dir string, lookup func(string) (string, bool)) (token, hmacSecret []byte, err error) {
	read := func(what, file, env string) ([]byte, error) {
		switch {
		case file != "":
			if !strings.HasPrefix(file, "/") && dir != "" {
				file = dir + "/" + file
			}
			b, err := os.ReadFile(file)
			if err != nil {
				return nil, fmt.Errorf("http: %s: %w", what, err)
			}
			b = bytes.TrimRight(b, "\r\n")
			if len(b) == 0 {
				return nil, fmt.Errorf("http: %s: %s is empty", what, file)
			}
			return b, nil
		case env != "":
			if lookup == nil {
				lookup = os.LookupEnv
			}
			v, ok := lookup(env)
			if !ok || v == "" {
				return nil, fmt.Errorf("http: %s: environment variable %s is not set", what, env)
			}
			return []byte(v), nil
		}
		return nil, nil
	}
	if token, err = read("token", c.TokenFile, c.TokenEnv); err != nil {
		return nil, nil, err
	}
	if hmacSecret, err = read("hmac secret", c.HMACSecretFile, c.HMACSecretEnv); err != nil {
		return nil, nil, err
	}
	return token, hmacSecret, nil
}
