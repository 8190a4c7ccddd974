package mqtt

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/eventfn/eventfn/internal/creds"
	"github.com/eventfn/eventfn/runner"
	"github.com/eventfn/eventfn/source"
)

// Deps are what building a source from its settings needs besides them.
type Deps struct {
	Logger  *slog.Logger
	Metrics *runner.Metrics
	// DrainTimeout: see Config.DrainTimeout (the runner's shutdown_timeout
	// is a good value).
	DrainTimeout time.Duration
	// Dir is where relative passcode and TLS file paths start (the rules
	// file's directory).
	Dir string
	// LookupEnv reads environment variables (default os.LookupEnv).
	LookupEnv func(string) (string, bool)
}

// Settings are an MQTT source's settings (url mqtt://, mqtts://,
// mqtt+ws://, mqtt+wss://), as written in the sources: section.
type Settings struct {
	// VHost is the RabbitMQ virtual host (sent as "vhost:login").
	VHost string `yaml:"vhost"`
	// Login is the broker user; PasscodeFile or PasscodeEnv its passcode.
	Login        string `yaml:"login"`
	PasscodeFile string `yaml:"passcode_file"`
	PasscodeEnv  string `yaml:"passcode_env"`
	// Subscribe lists the topic filters (required).
	Subscribe []string `yaml:"subscribe"`
	// ClientID names the session (default: derived from name and host).
	ClientID string `yaml:"client_id"`
	// QoS is 1 (default) or 2.
	QoS int `yaml:"qos"`
	// Type fixes the event type; else it is a topic segment.
	Type string `yaml:"type"`
	// TypeField names a payload field holding the type.
	TypeField string `yaml:"type_field"`
	// TypeSegment picks the topic segment holding the event type: 1 is
	// the first, -1 the last (the default, when 0).
	TypeSegment int `yaml:"type_segment"`
	// MessageID is hash (default: sha256 of vhost, topic and payload, as
	// Waldur computes x-message-id) or none.
	MessageID string `yaml:"message_id"`
	// OnFailure is ack (default) or dead-letter (needs DeadLetter, a topic).
	OnFailure  string `yaml:"on_failure"`
	DeadLetter string `yaml:"dead_letter"`
	// Heartbeat is the MQTT keep-alive.
	Heartbeat time.Duration `yaml:"heartbeat"`
	// TLS configures mqtts:// and mqtt+wss://.
	TLS creds.TLSSpec `yaml:"tls"`
	// Format must be payload (MQTT messages are payloads).
	Format string `yaml:"format"`
}

// CredentialRefs implements source.Credentials: the passcode.
func (s Settings) CredentialRefs() []source.CredentialRef {
	return []source.CredentialRef{{File: s.PasscodeFile, Env: s.PasscodeEnv}}
}

// Check reports everything FromSettings would refuse for a source at url,
// without reading secrets or files.
func (s Settings) Check(url string) []error {
	var errs []error
	if _, err := BrokerURL(url); err != nil {
		errs = append(errs, source.AtKey("url", "%v", err))
	} else if !s.TLS.IsZero() && !IsSecure(url) {
		errs = append(errs, source.AtKey("tls", "tls settings need an mqtts:// or mqtt+wss:// url, not %s", schemeOf(url)))
	}
	if len(s.Subscribe) == 0 {
		errs = append(errs, errors.New("subscribe: list the topic filters to consume, e.g. subscription/+/offering/+/order"))
	}
	for _, f := range s.Subscribe {
		if err := checkFilter(f); err != nil {
			errs = append(errs, source.AtKey("subscribe", "subscribe %q: %v", f, err))
		}
	}
	if s.QoS < 0 || s.QoS > 2 {
		errs = append(errs, source.AtKey("qos", "qos %d: want 1 or 2", s.QoS))
	}
	switch s.MessageID {
	case "", MessageIDHash, MessageIDNone:
	default:
		errs = append(errs, source.AtKey("message_id", "message_id %q: want hash or none", s.MessageID))
	}
	switch s.OnFailure {
	case "", "ack":
	case "dead-letter":
		if s.DeadLetter == "" {
			errs = append(errs, source.AtKey("on_failure", "on_failure dead-letter needs dead_letter (a topic)"))
		}
	default:
		errs = append(errs, source.AtKey("on_failure", "on_failure %q: want ack or dead-letter", s.OnFailure))
	}
	if strings.ContainsAny(s.DeadLetter, "+#") {
		errs = append(errs, source.AtKey("dead_letter", "dead_letter %q: a topic to publish to cannot hold + or #", s.DeadLetter))
	}
	if s.Format != "" && s.Format != "payload" {
		errs = append(errs, source.AtKey("format", "format %q: MQTT messages are payloads (format: payload)", s.Format))
	}
	switch {
	case s.PasscodeFile != "" && s.PasscodeEnv != "":
		errs = append(errs, source.AtKey("passcode_file", "give passcode_file or passcode_env, not both"))
	case s.PasscodeFile == "" && s.PasscodeEnv == "" && s.Login != "":
		errs = append(errs, source.AtKey("login", "login needs passcode_file or passcode_env"))
	case (s.PasscodeFile != "" || s.PasscodeEnv != "") && s.Login == "":
		errs = append(errs, source.AtKey("login", "a passcode without a login"))
	}
	if s.Heartbeat < 0 {
		errs = append(errs, source.AtKey("heartbeat", "heartbeat %s: want a positive duration", s.Heartbeat))
	}
	return errs
}

// Types returns the event types the source names: its type, else the
// literal topic segment its filters hold at type_segment; open when the
// type comes from messages.
func (s Settings) Types() ([]string, bool) {
	if s.Type != "" {
		return []string{s.Type}, false
	}
	var out []string
	open := s.TypeField != ""
	for _, f := range s.Subscribe {
		t := typeFromTopic(f, s.TypeSegment)
		if t == "" || t == "+" || t == "#" || strings.Contains(f, "#") {
			open = true
			continue
		}
		out = append(out, t)
	}
	return out, open
}

// FromSettings builds a source: it reads the passcode (passcode_file or
// passcode_env) and the TLS files, and derives the client id when none is
// given.
func FromSettings(name, url string, s Settings, d Deps) (*Source, error) {
	if errs := s.Check(url); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	logger := d.Logger
	if logger == nil {
		logger = slog.Default()
	}
	s.PasscodeFile = inDir(d.Dir, s.PasscodeFile)
	s.TLS.CAFile = inDir(d.Dir, s.TLS.CAFile)
	s.TLS.CertFile = inDir(d.Dir, s.TLS.CertFile)
	s.TLS.KeyFile = inDir(d.Dir, s.TLS.KeyFile)
	cfg := Config{
		Name: name, URL: url, VHost: s.VHost, Login: s.Login,
		Subscribe: s.Subscribe, ClientID: s.ClientID, QoS: byte(s.QoS),
		Type: s.Type, TypeField: s.TypeField, TypeSegment: s.TypeSegment,
		DeadLetterOnFailure: s.OnFailure == "dead-letter", DeadLetter: s.DeadLetter,
		MessageID: s.MessageID, KeepAlive: s.Heartbeat, Logger: logger,
		Metrics: d.Metrics, DrainTimeout: d.DrainTimeout,
	}
	if s.PasscodeFile != "" || s.PasscodeEnv != "" {
		p, err := creds.Secret(s.PasscodeFile, s.PasscodeEnv, d.LookupEnv)
		if err != nil {
			return nil, fmt.Errorf("mqtt: passcode: %w", err)
		}
		cfg.Passcode = p
	}
	if cfg.ClientID == "" {
		host, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("mqtt: client id: set client_id (hostname unknown: %w)", err)
		}
		cfg.ClientID = DefaultClientID(name, host)
	}
	if IsSecure(url) {
		t, err := TLSConfig(s.TLS)
		if err != nil {
			return nil, err
		}
		cfg.TLS = t
		if s.TLS.InsecureSkipVerify {
			logger.Warn("mqtt: TLS certificate verification is off", "source", name)
		}
	}
	return New(cfg)
}

// Kind is the source plug-in of the MQTT family: mqtt://, mqtts://,
// mqtt+ws://, mqtt+wss://.
func Kind() source.Kind {
	return &source.Plugin[Settings]{
		KindName:   "mqtt",
		URLSchemes: Schemes(),
		CheckSpec:  func(s *source.Spec[Settings]) []error { return s.Settings.Check(s.URL) },
		TypesOf:    func(s *source.Spec[Settings]) ([]string, bool) { return s.Settings.Types() },
		BuildSpec: func(s *source.Spec[Settings], d source.Deps) (runner.Source, error) {
			return FromSettings(s.Name, s.URL, s.Settings, Deps{Logger: d.Logger, Metrics: d.Metrics,
				DrainTimeout: d.DrainTimeout, Dir: d.Dir, LookupEnv: d.LookupEnv})
		},
	}
}

// inDir anchors a relative path at dir.
func inDir(dir, path string) string {
	if path == "" || dir == "" || filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(dir, path)
}

// DefaultClientID derives a stable client id from the source's name and
// the host's name: "eventfn-{name}-{host}", other characters than letters,
// digits, '-', '_' and '.' replaced by '_'. The session lives as long as
// the id stays the same; in containers, whose host names change, set
// client_id.
func DefaultClientID(name, host string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, "eventfn-"+name+"-"+host)
}

// TLSConfig builds a client TLS configuration: verification on unless
// insecure_skip_verify, the system roots plus ca_file, a client
// certificate when cert_file and key_file are given.
func TLSConfig(spec creds.TLSSpec) (*tls.Config, error) {
	c, err := creds.TLS(spec, "")
	if err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	return c, nil
}
