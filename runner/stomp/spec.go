package stomp

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/eventfn/eventfn/internal/creds"
	"github.com/eventfn/eventfn/rules"
	"github.com/eventfn/eventfn/runner"
)

// Deps are what building a source from its spec needs besides the spec.
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

// path resolves a file name of the configuration against Dir.
func (d Deps) path(name string) string {
	if name == "" || filepath.IsAbs(name) || d.Dir == "" {
		return name
	}
	return filepath.Join(d.Dir, name)
}

// IsSpec reports whether spec is for this package: a STOMP URL, or a
// Waldur source.
func IsSpec(spec rules.SourceSpec) bool {
	if spec.Waldur != nil || spec.URL == "waldur" || strings.HasPrefix(spec.URL, "waldur:") {
		return true
	}
	scheme, _, _ := strings.Cut(spec.URL, "://")
	for _, s := range Schemes {
		if strings.EqualFold(scheme, s) {
			return true
		}
	}
	return false
}

// FromSpec builds a STOMP source, or a Waldur source when spec.Waldur is set
// (or url is "waldur"), from its configuration.
func FromSpec(spec rules.SourceSpec, d Deps) (runner.Source, error) {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.LookupEnv == nil {
		d.LookupEnv = os.LookupEnv
	}
	if spec.Waldur != nil || spec.URL == "waldur" || strings.HasPrefix(spec.URL, "waldur:") {
		return WaldurFromSpec(spec, d)
	}
	if spec.DedupKey != "" {
		return nil, errors.New("dedup_key is not supported by STOMP sources: messages are de-duplicated by their x-message-id header")
	}
	e, err := ParseURL(spec.URL)
	if err != nil {
		return nil, err
	}
	dial, err := dialFromSpec(spec, e, d)
	if err != nil {
		return nil, err
	}
	if len(spec.Subscribe) == 0 {
		return nil, errors.New("subscribe: list the destinations to consume, e.g. /amq/queue/<queue name>")
	}
	conn := ConnConfig{DialOptions: dial}
	for _, dest := range spec.Subscribe {
		if !strings.HasPrefix(dest, "/") {
			return nil, fmt.Errorf("subscribe %q: a STOMP destination starts with / (e.g. /amq/queue/%s)", dest, dest)
		}
		conn.Subscriptions = append(conn.Subscriptions, Subscription{Destination: dest, Type: spec.Type, TypeField: spec.TypeField})
	}
	cfg, err := configFromSpec(spec, d)
	if err != nil {
		return nil, err
	}
	cfg.Connections = []ConnConfig{conn}
	return New(cfg)
}

// configFromSpec reads the settings shared by STOMP and Waldur sources.
func configFromSpec(spec rules.SourceSpec, d Deps) (Config, error) {
	if spec.Prefetch < 0 {
		return Config{}, fmt.Errorf("prefetch %d: want a positive number (default %d)", spec.Prefetch, DefaultPrefetch)
	}
	if spec.DeadLetter != "" && !strings.HasPrefix(spec.DeadLetter, "/") {
		return Config{}, fmt.Errorf("dead_letter %q: a STOMP destination starts with / (e.g. /queue/eventfn.dlq)", spec.DeadLetter)
	}
	if spec.Format != "" && spec.Format != "payload" {
		return Config{}, fmt.Errorf("format %q: a broker message's body is the payload itself (format: payload)", spec.Format)
	}
	if spec.Follow {
		return Config{}, errors.New("follow is a file source setting")
	}
	if spec.QoS != 0 || spec.ClientID != "" {
		return Config{}, errors.New("qos and client_id are MQTT settings; a STOMP source does not use them")
	}
	return Config{
		Name:                spec.Name,
		Prefetch:            spec.Prefetch,
		DeadLetterOnFailure: spec.OnFailure == "dead-letter",
		DeadLetter:          spec.DeadLetter,
		DrainTimeout:        d.DrainTimeout,
		Backoff:             d.Backoff,
		Logger:              d.Logger,
		Metrics:             d.Metrics,
	}, nil
}

// dialFromSpec reads the connection settings: vhost, login, passcode,
// heart-beat and TLS.
func dialFromSpec(spec rules.SourceSpec, e Endpoint, d Deps) (DialOptions, error) {
	o := DialOptions{Endpoint: e, Heartbeat: spec.Heartbeat, Logger: d.Logger}
	switch {
	case spec.VHost != "" && e.VHost != "" && spec.VHost != e.VHost:
		return o, fmt.Errorf("vhost %q and the URL's ?vhost=%s disagree", spec.VHost, e.VHost)
	case spec.VHost != "":
		o.VHost = spec.VHost
	default:
		o.VHost = e.VHost
	}
	switch {
	case spec.Login != "" && e.Login != "" && spec.Login != e.Login:
		return o, fmt.Errorf("login %q and the URL's user %q disagree", spec.Login, e.Login)
	case spec.Login != "":
		o.Login = spec.Login
	default:
		o.Login = e.Login
	}
	if spec.PasscodeFile != "" || spec.PasscodeEnv != "" {
		pass, err := ReadSecret(d.path(spec.PasscodeFile), spec.PasscodeEnv, d.LookupEnv)
		if err != nil {
			return o, fmt.Errorf("passcode: %w", err)
		}
		o.Passcode = pass
	} else if o.Login != "" {
		return o, fmt.Errorf("login %q needs a passcode: set passcode_file or passcode_env", o.Login)
	}
	t := spec.TLS
	hasTLS := t != (rules.TLSSpec{})
	if hasTLS && !e.Secure() {
		return o, fmt.Errorf("tls settings need a TLS URL (stomp+ssl:// or stomp+wss://), not %s://", e.Scheme)
	}
	if e.Secure() {
		if t.InsecureSkipVerify {
			d.Logger.Warn("TLS certificate verification is OFF for this source (tls.insecure_skip_verify): use only for tests", "source", spec.Name)
		}
		conf, err := d.tlsOptions(t).Config(e.Host())
		if err != nil {
			return o, err
		}
		o.TLS = conf
	}
	return o, nil
}

// ReadSecret reads a secret from a file or an environment variable; see
// creds.Secret.
func ReadSecret(file, env string, lookup func(string) (string, bool)) (string, error) {
	return creds.Secret(file, env, lookup)
}

func (d Deps) tlsOptions(t rules.TLSSpec) TLSOptions {
	return TLSOptions{CAFile: d.path(t.CAFile), CertFile: d.path(t.CertFile), KeyFile: d.path(t.KeyFile),
		ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
}
