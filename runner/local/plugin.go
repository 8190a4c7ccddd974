package local

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/eventfn/eventfn/runner"
	"github.com/eventfn/eventfn/source"
)

// FileSettings are a file source's settings (url file:PATH, file:- for
// stdin): events as JSON envelopes, an array of them or JSON Lines.
type FileSettings struct {
	// Follow keeps reading as the file grows.
	Follow bool `yaml:"follow"`
	// Format is envelope (the only one: each event carries its type).
	Format string `yaml:"format"`
	// OnFailure is ack (default) or dead-letter (failed events are logged
	// as dead-lettered: the log line is their record).
	OnFailure string `yaml:"on_failure"`
}

// HTTPSettings are an http source's settings (url http://ADDR[/PATH],
// default path /events): events POSTed as JSON envelopes.
type HTTPSettings struct {
	// Format is envelope (the only one: each event carries its type).
	Format string `yaml:"format"`
	// HTTP is the http: section: authentication, TLS, timeouts, bounds,
	// respond (httpconfig.go).
	HTTP HTTPConfig `yaml:"http"`
}

// CredentialRefs implements source.Credentials: the token and HMAC secret.
func (s HTTPSettings) CredentialRefs() []source.CredentialRef {
	return []source.CredentialRef{{File: s.HTTP.TokenFile, Env: s.HTTP.TokenEnv},
		{File: s.HTTP.HMACSecretFile, Env: s.HTTP.HMACSecretEnv}}
}

// CredentialRefs implements source.Credentials: none.
func (FileSettings) CredentialRefs() []source.CredentialRef { return nil }

func checkFormat(f string) error {
	if f != "" && f != "envelope" {
		return source.AtKey("format", "format %q: this source reads envelopes {type, payload} (format: envelope)", f)
	}
	return nil
}

// filePath returns the path of a file: URL, anchored at dir when relative.
func filePath(url, dir string) (string, error) {
	_, rest, _ := strings.Cut(url, ":")
	path := strings.TrimPrefix(rest, "//")
	if path == "" {
		return "", source.AtKey("url", "file source needs a path: file:events.jsonl or file:- for stdin")
	}
	if path != "-" && !filepath.IsAbs(path) && dir != "" {
		path = filepath.Join(dir, path)
	}
	return path, nil
}

// httpAddr returns the listen address and path of an http: URL.
func httpAddr(url string) (addr, path string, err error) {
	_, rest, _ := strings.Cut(url, ":")
	if !strings.HasPrefix(rest, "//") {
		return "", "", source.AtKey("url", "http source url %q: want http://ADDR[/PATH], e.g. http://127.0.0.1:8080/events", url)
	}
	addr, path = strings.TrimPrefix(rest, "//"), "/events"
	if i := strings.IndexByte(addr, '/'); i >= 0 {
		addr, path = addr[:i], addr[i:]
	}
	if addr == "" {
		return "", "", source.AtKey("url", "http source url %q: missing the address to listen on", url)
	}
	return addr, path, nil
}

// FileKind is the source plug-in of file sources (url file:PATH).
func FileKind() source.Kind {
	return &source.Plugin[FileSettings]{
		KindName:   "file",
		URLSchemes: []string{"file"},
		CheckSpec: func(s *source.Spec[FileSettings]) []error {
			var errs []error
			if _, err := filePath(s.URL, ""); err != nil {
				errs = append(errs, err)
			}
			if err := checkFormat(s.Settings.Format); err != nil {
				errs = append(errs, err)
			}
			switch s.Settings.OnFailure {
			case "", "ack", "dead-letter":
			default:
				errs = append(errs, source.AtKey("on_failure", "on_failure %q: want ack or dead-letter", s.Settings.OnFailure))
			}
			return errs
		},
		BuildSpec: func(s *source.Spec[FileSettings], d source.Deps) (runner.Source, error) {
			path, err := filePath(s.URL, d.Dir)
			if err != nil {
				return nil, err
			}
			return &File{SourceName: s.Name, Path: path, Follow: s.Settings.Follow, Stdin: d.Stdin,
				DeadLetterOnFailure: s.Settings.OnFailure == "dead-letter"}, nil
		},
	}
}

// HTTPKind is the source plug-in of http sources (url http://ADDR/PATH).
func HTTPKind() source.Kind {
	return &source.Plugin[HTTPSettings]{
		KindName:   "http",
		URLSchemes: []string{"http"},
		CheckSpec: func(s *source.Spec[HTTPSettings]) []error {
			var errs []error
			if _, _, err := httpAddr(s.URL); err != nil {
				errs = append(errs, err)
			}
			if err := checkFormat(s.Settings.Format); err != nil {
				errs = append(errs, err)
			}
			if err := s.Settings.HTTP.Check(); err != nil {
				errs = append(errs, source.AtKey("http", "%v", err))
			}
			return errs
		},
		BuildSpec: func(s *source.Spec[HTTPSettings], d source.Deps) (runner.Source, error) {
			addr, path, err := httpAddr(s.URL)
			if err != nil {
				return nil, fmt.Errorf("http source: %w", err)
			}
			h := &HTTP{SourceName: s.Name, Addr: addr, Path: path, Limits: d.Limits, Logger: d.Logger,
				Config: s.Settings.HTTP, Dir: d.Dir, Metrics: d.Metrics, LookupEnv: d.LookupEnv}
			if d.StateDir != "" {
				// Accepted pushes are kept here until settled (accepted means kept).
				h.SpoolDir = filepath.Join(d.StateDir, "http-spool", s.Name)
				if !filepath.IsAbs(h.SpoolDir) {
					h.SpoolDir = filepath.Join(d.Dir, h.SpoolDir)
				}
			}
			return h, nil
		},
	}
}
