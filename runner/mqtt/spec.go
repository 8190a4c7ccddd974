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
	// Dir is where relative passcode and TLS file paths start (the rules
	// file's directory).
	Dir string
}

// FromSpec builds a source from a rules file's source: it reads the
// passcode (passcode_file or passcode_env) and the TLS files, and derives
// the client id when none is given.
func FromSpec(spec rules.SourceSpec, d Deps) (*Source, error) {
	logger := d.Logger
	if logger == nil {
		logger = slog.Default()
	}
	spec.PasscodeFile = inDir(d.Dir, spec.PasscodeFile)
	spec.TLS.CAFile = inDir(d.Dir, spec.TLS.CAFile)
	spec.TLS.CertFile = inDir(d.Dir, spec.TLS.CertFile)
	spec.TLS.KeyFile = inDir(d.Dir, spec.TLS.KeyFile)
	cfg := Config{
		Name: spec.Name, URL: spec.URL, VHost: spec.VHost, Login: spec.Login,
		Subscribe: spec.Subscribe, ClientID: spec.ClientID,
		Type: spec.Type, TypeField: spec.TypeField, TypeSegment: spec.TypeSegment,
		DeadLetterOnFailure: spec.OnFailure == "dead-letter", DeadLetter: spec.DeadLetter,
		MessageID: spec.MessageID, KeepAlive: spec.Heartbeat, Logger: logger,
		Metrics: d.Metrics, DrainTimeout: d.DrainTimeout,
	}
	if spec.QoS < 0 || spec.QoS > 2 {
		return nil, fmt.Errorf("mqtt: qos %d: want 1 or 2", spec.QoS)
	}
	cfg.QoS = byte(spec.QoS)
	if spec.Format != "" && spec.Format != "payload" {
		return nil, fmt.Errorf("mqtt: format %q: MQTT messages are payloads", spec.Format)
	}
	if spec.DedupKey != "" {
		return nil, errors.New("mqtt: dedup_key is not supported by MQTT sources: message_id is hash (default) or none")
	}
	if spec.Prefetch != 0 {
		return nil, errors.New("mqtt: prefetch is set on the broker for MQTT (RabbitMQ mqtt.prefetch, Mosquitto max_inflight_messages), not per source")
	}
	if spec.PasscodeFile != "" || spec.PasscodeEnv != "" {
		p, err := creds.Secret(spec.PasscodeFile, spec.PasscodeEnv, nil)
		if err != nil {
			return nil, fmt.Errorf("mqtt: passcode: %w", err)
		}
		cfg.Passcode = p
	} else if spec.Login != "" {
		return nil, errors.New("mqtt: login needs passcode_file or passcode_env")
	}
	if cfg.ClientID == "" {
		host, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("mqtt: client id: set client_id (hostname unknown: %w)", err)
		}
		cfg.ClientID = DefaultClientID(spec.Name, host)
	}
	if IsSecure(spec.URL) || spec.TLS != (rules.TLSSpec{}) {
		t, err := TLSConfig(spec.TLS)
		if err != nil {
			return nil, err
		}
		cfg.TLS = t
		if spec.TLS.InsecureSkipVerify {
			logger.Warn("mqtt: TLS certificate verification is off", "source", spec.Name)
		}
	}
	return New(cfg)
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
func TLSConfig(spec rules.TLSSpec) (*tls.Config, error) {
	c, err := creds.TLS(spec, "")
	if err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	return c, nil
}
