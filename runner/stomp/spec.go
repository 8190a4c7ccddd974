package stomp

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/eventfn/eventfn/internal/creds"
	"github.com/eventfn/eventfn/runner"
	"github.com/eventfn/eventfn/source"
	"github.com/eventfn/eventfn/waldur"
)

// Deps are what building a source from its settings needs besides them.
type Deps struct {
	Logger  *slog.Logger
	Metrics *runner.Metrics
	// DrainTimeout: see Config.DrainTimeout (the runner's shutdown_timeout
	// is a good value).
	DrainTimeout time.Duration
	// Version is reported to Waldur in the agent identity.
	Version string
	// LookupEnv reads environment variables (default os.LookupEnv).
	LookupEnv func(string) (string, bool)
	// Backoff overrides the reconnection backoff (tests).
	Backoff Backoff
	// Dir is the rules file's directory: relative file names (passcode,
	// token, TLS files) start there.
	Dir string
}

func (d Deps) withDefaults() Deps {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.LookupEnv == nil {
		d.LookupEnv = os.LookupEnv
	}
	return d
}

// path resolves a file name of the configuration against Dir.
func (d Deps) path(name string) string {
	if name == "" || filepath.IsAbs(name) || d.Dir == "" {
		return name
	}
	return filepath.Join(d.Dir, name)
}

// Settings are a STOMP source's settings (url stomp://, stomp+ssl://,
// stomp+ws://, stomp+wss://), as written in the sources: section.
type Settings struct {
	// VHost is the RabbitMQ virtual host (or ?vhost= in the URL).
	VHost string `yaml:"vhost"`
	// Login is the broker user (or user@ in the URL).
	Login string `yaml:"login"`
	// PasscodeFile or PasscodeEnv holds the login's passcode.
	PasscodeFile string `yaml:"passcode_file"`
	PasscodeEnv  string `yaml:"passcode_env"`
	// Subscribe lists the destinations consumed (required).
	Subscribe []string `yaml:"subscribe"`
	// Prefetch bounds unacknowledged messages per subscription.
	Prefetch int `yaml:"prefetch"`
	// Type fixes the event type; else it is derived from the destination.
	Type string `yaml:"type"`
	// TypeField names a payload field holding the type.
	TypeField string `yaml:"type_field"`
	// OnFailure is ack (default) or dead-letter.
	OnFailure string `yaml:"on_failure"`
	// DeadLetter is where dead-lettered messages go (default: the broker's
	// dead-letter exchange, by NACK).
	DeadLetter string `yaml:"dead_letter"`
	// Heartbeat is the STOMP heart-beat interval.
	Heartbeat time.Duration `yaml:"heartbeat"`
	// TLS configures stomp+ssl:// and stomp+wss://.
	TLS creds.TLSSpec `yaml:"tls"`
	// Format must be payload (a broker message's body is the payload).
	Format string `yaml:"format"`
}

// WaldurSection is the waldur: section of a Waldur source.
type WaldurSection struct {
	APIURL      string   `yaml:"api_url"`
	TokenFile   string   `yaml:"token_file"`
	TokenEnv    string   `yaml:"token_env"`
	Offerings   []string `yaml:"offerings"`
	ObjectTypes []string `yaml:"object_types"`
	Mode        string   `yaml:"mode"`
	BrokerURL   string   `yaml:"broker_url"`
	AgentName   string   `yaml:"agent_name"`
	// InsecureHTTP allows an http:// api_url (the token in clear).
	InsecureHTTP bool `yaml:"insecure_http"`
}

// CredentialRefs implements source.Credentials: the passcode.
func (s Settings) CredentialRefs() []source.CredentialRef {
	return []source.CredentialRef{{File: s.PasscodeFile, Env: s.PasscodeEnv}}
}

// CredentialRefs implements source.Credentials: the Waldur token (also the
// broker passcode).
func (s WaldurSettings) CredentialRefs() []source.CredentialRef {
	if s.Waldur == nil {
		return nil
	}
	return []source.CredentialRef{{File: s.Waldur.TokenFile, Env: s.Waldur.TokenEnv}}
}

// WaldurSettings are a Waldur source's settings (url waldur, or none with
// a waldur: section): it registers with Waldur, which names the queues.
type WaldurSettings struct {
	Waldur     *WaldurSection `yaml:"waldur"`
	Prefetch   int            `yaml:"prefetch"`
	TypeField  string         `yaml:"type_field"`
	OnFailure  string         `yaml:"on_failure"`
	DeadLetter string         `yaml:"dead_letter"`
	Heartbeat  time.Duration  `yaml:"heartbeat"`
	TLS        creds.TLSSpec  `yaml:"tls"`
	Format     string         `yaml:"format"`
}

// common holds what STOMP and Waldur sources share.
type common struct {
	prefetch              int
	onFailure, deadLetter string
	format                string
}

func (c common) check() []error {
	var errs []error
	if c.prefetch < 0 {
		errs = append(errs, source.AtKey("prefetch", "prefetch %d: want a positive number (default %d)", c.prefetch, DefaultPrefetch))
	}
	switch c.onFailure {
	case "", "ack", "dead-letter":
	default:
		errs = append(errs, source.AtKey("on_failure", "on_failure %q: want ack or dead-letter", c.onFailure))
	}
	if c.deadLetter != "" && !strings.HasPrefix(c.deadLetter, "/") {
		errs = append(errs, source.AtKey("dead_letter", "dead_letter %q: a STOMP destination starts with / (e.g. /queue/eventfn.dlq)", c.deadLetter))
	}
	if c.format != "" && c.format != "payload" {
		errs = append(errs, source.AtKey("format", "format %q: a broker message's body is the payload itself (format: payload)", c.format))
	}
	return errs
}

func (c common) config(name string, d Deps) Config {
	return Config{
		Name:                name,
		Prefetch:            c.prefetch,
		DeadLetterOnFailure: c.onFailure == "dead-letter",
		DeadLetter:          c.deadLetter,
		DrainTimeout:        d.DrainTimeout,
		Backoff:             d.Backoff,
		Logger:              d.Logger,
		Metrics:             d.Metrics,
	}
}

func (s Settings) common() common {
	return common{prefetch: s.Prefetch, onFailure: s.OnFailure, deadLetter: s.DeadLetter, format: s.Format}
}

func (s WaldurSettings) common() common {
	return common{prefetch: s.Prefetch, onFailure: s.OnFailure, deadLetter: s.DeadLetter, format: s.Format}
}

// Check reports everything FromSettings would refuse for a source at url,
// without reading secrets or files.
func (s Settings) Check(url string) []error {
	errs := s.common().check()
	e, err := ParseURL(url)
	if err != nil {
		return append(errs, source.AtKey("url", "%v", err))
	}
	if s.VHost != "" && e.VHost != "" && s.VHost != e.VHost {
		errs = append(errs, source.AtKey("vhost", "vhost %q and the URL's ?vhost=%s disagree", s.VHost, e.VHost))
	}
	if s.Login != "" && e.Login != "" && s.Login != e.Login {
		errs = append(errs, source.AtKey("login", "login %q and the URL's user %q disagree", s.Login, e.Login))
	}
	login := cmp(s.Login, e.Login)
	switch {
	case s.PasscodeFile != "" && s.PasscodeEnv != "":
		errs = append(errs, source.AtKey("passcode_file", "give passcode_file or passcode_env, not both"))
	case s.PasscodeFile == "" && s.PasscodeEnv == "" && login != "":
		errs = append(errs, fmt.Errorf("login %q needs a passcode: set passcode_file or passcode_env", login))
	}
	if len(s.Subscribe) == 0 {
		errs = append(errs, errors.New("subscribe: list the destinations to consume, e.g. /amq/queue/<queue name>"))
	}
	for _, dest := range s.Subscribe {
		if !strings.HasPrefix(dest, "/") {
			errs = append(errs, source.AtKey("subscribe", "subscribe %q: a STOMP destination starts with / (e.g. /amq/queue/%s)", dest, dest))
		}
	}
	if !s.TLS.IsZero() && !e.Secure() {
		errs = append(errs, source.AtKey("tls", "tls settings need a TLS URL (stomp+ssl:// or stomp+wss://), not %s://", e.Scheme))
	}
	return errs
}

// Types returns the event types the source names: its type, else those
// of Waldur per-type queue names; open when the type comes from messages.
func (s Settings) Types() ([]string, bool) {
	if s.Type != "" {
		return []string{s.Type}, false
	}
	var out []string
	open := s.TypeField != ""
	for _, dest := range s.Subscribe {
		if t := TypeOf(dest); t != "" {
			out = append(out, t)
		} else {
			open = true
		}
	}
	return out, open
}

func cmp(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// FromSettings builds a STOMP source from its settings.
func FromSettings(name, url string, s Settings, d Deps) (*Source, error) {
	if errs := s.Check(url); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	d = d.withDefaults()
	e, err := ParseURL(url)
	if err != nil {
		return nil, err
	}
	dial, err := dialFromSettings(name, s, e, d)
	if err != nil {
		return nil, err
	}
	conn := ConnConfig{DialOptions: dial}
	for _, dest := range s.Subscribe {
		conn.Subscriptions = append(conn.Subscriptions, Subscription{Destination: dest, Type: s.Type, TypeField: s.TypeField})
	}
	cfg := s.common().config(name, d)
	cfg.Connections = []ConnConfig{conn}
	return New(cfg)
}

// dialFromSettings reads the connection settings: vhost, login, passcode,
// heart-beat and TLS.
func dialFromSettings(name string, s Settings, e Endpoint, d Deps) (DialOptions, error) {
	o := DialOptions{Endpoint: e, Heartbeat: s.Heartbeat, Logger: d.Logger,
		VHost: cmp(s.VHost, e.VHost), Login: cmp(s.Login, e.Login)}
	if s.PasscodeFile != "" || s.PasscodeEnv != "" {
		pass, err := ReadSecret(d.path(s.PasscodeFile), s.PasscodeEnv, d.LookupEnv)
		if err != nil {
			return o, fmt.Errorf("passcode: %w", err)
		}
		o.Passcode = pass
	}
	if e.Secure() {
		if s.TLS.InsecureSkipVerify {
			d.Logger.Warn("TLS certificate verification is OFF for this source (tls.insecure_skip_verify): use only for tests", "source", name)
		}
		conf, err := d.tlsOptions(s.TLS).Config(e.Host())
		if err != nil {
			return o, err
		}
		o.TLS = conf
	}
	return o, nil
}

// Check reports everything WaldurFromSettings would refuse for a source
// at url ("waldur" or ""), without reading secrets or calling Waldur.
func (s WaldurSettings) Check(url string) []error {
	errs := s.common().check()
	if url != "" && url != "waldur" && !strings.HasPrefix(url, "waldur:") {
		errs = append(errs, source.AtKey("url", "a source with a waldur: section has url waldur (or none), not %q; set waldur.broker_url to choose the broker", url))
	}
	ws := s.Waldur
	if ws == nil {
		return append(errs, errors.New(`url "waldur" needs a waldur: section (api_url, token_file or token_env, offerings)`))
	}
	if ws.APIURL == "" {
		errs = append(errs, source.AtKey("waldur", "waldur.api_url is required"))
	} else if _, err := BrokerFromAPI(ws.APIURL); err != nil && ws.BrokerURL == "" {
		errs = append(errs, source.AtKey("waldur", "waldur.api_url: %v", err))
	}
	if (ws.TokenFile == "") == (ws.TokenEnv == "") {
		errs = append(errs, source.AtKey("waldur", "waldur: set one of token_file or token_env"))
	}
	if len(ws.Offerings) == 0 {
		errs = append(errs, source.AtKey("waldur", "waldur.offerings: list the offerings served"))
	}
	for _, o := range ws.Offerings {
		if !waldur.ValidUUID(o) {
			errs = append(errs, source.AtKey("waldur", "waldur.offering %q is not a UUID", o))
		}
	}
	switch ws.Mode {
	case "", ModePerType, ModeConsumerQueue:
	default:
		errs = append(errs, source.AtKey("waldur", "waldur.mode %q: want %s or %s", ws.Mode, ModePerType, ModeConsumerQueue))
	}
	secure := false
	if ws.BrokerURL != "" {
		broker, err := ParseURL(ws.BrokerURL)
		switch {
		case err != nil:
			errs = append(errs, source.AtKey("waldur", "waldur.broker_url: %v", err))
		case broker.Login != "" || broker.VHost != "":
			errs = append(errs, source.AtKey("waldur", "waldur.broker_url: login and vhost come from the registration; remove them from the URL"))
		}
		secure = err == nil && broker.Secure()
	} else if broker, err := BrokerFromAPI(ws.APIURL); err == nil {
		secure = broker.Secure()
	}
	if !s.TLS.IsZero() && !secure {
		errs = append(errs, source.AtKey("tls", "tls settings need a TLS broker (stomp+wss:// or stomp+ssl://)"))
	}
	return errs
}

// Types returns the event types a Waldur source delivers: its
// object_types, else every type Waldur knows.
func (s WaldurSettings) Types() ([]string, bool) {
	open := s.TypeField != ""
	if s.Waldur != nil && len(s.Waldur.ObjectTypes) > 0 {
		return slices.Clone(s.Waldur.ObjectTypes), open
	}
	return waldur.ObjectTypes(), open
}

// ReadSecret reads a secret from a file or an environment variable; see
// creds.Secret.
func ReadSecret(file, env string, lookup func(string) (string, bool)) (string, error) {
	return creds.Secret(file, env, lookup)
}

func (d Deps) tlsOptions(t creds.TLSSpec) TLSOptions {
	return TLSOptions{CAFile: d.path(t.CAFile), CertFile: d.path(t.CertFile), KeyFile: d.path(t.KeyFile),
		ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
}
