// Package creds reads the credentials sources and clients need: secrets
// from files or environment variables, and TLS client configurations.
// Every source and client reads them here, one way.
package creds

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
)

// TLSSpec is the tls: setting of a source or client: verification against
// ca_file (else the system's roots) for server_name (else the host), a
// client certificate from cert_file and key_file.
type TLSSpec struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// IsZero reports whether no TLS setting is given.
func (t TLSSpec) IsZero() bool { return t == TLSSpec{} }

// Secret reads a secret from a file (trailing newlines dropped) or an
// environment variable (through lookup; nil means os.LookupEnv). Exactly one
// of file and env must be given; an empty secret is an error.
func Secret(file, env string, lookup func(string) (string, bool)) (string, error) {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	switch {
	case file != "" && env != "":
		return "", errors.New("give either a file or an environment variable, not both")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", err
		}
		s := strings.TrimRight(string(b), "\r\n")
		if s == "" {
			return "", fmt.Errorf("%s is empty", file)
		}
		return s, nil
	case env != "":
		v, ok := lookup(env)
		if !ok || v == "" {
			return "", fmt.Errorf("environment variable %s is not set", env)
		}
		return v, nil
	}
	return "", errors.New("no secret given: set a *_file or *_env")
}

// TLS builds a client TLS configuration for a server at host: TLS 1.2 or
// newer, the server's certificate verified (unless insecure_skip_verify)
// against ca_file when given, else the system's roots, for server_name when
// given, else host; a client certificate when cert_file and key_file are set.
func TLS(spec TLSSpec, host string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host,
		InsecureSkipVerify: spec.InsecureSkipVerify} //nolint:gosec // opt-in, documented as tests only
	if spec.ServerName != "" {
		c.ServerName = spec.ServerName
	}
	if spec.CAFile != "" {
		pem, err := os.ReadFile(spec.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls ca_file %s: no PEM certificate found", spec.CAFile)
		}
		c.RootCAs = pool
	}
	if (spec.CertFile == "") != (spec.KeyFile == "") {
		return nil, errors.New("tls: cert_file and key_file go together")
	}
	if spec.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(spec.CertFile, spec.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
