// Package source defines the shape every kind of event source has (file,
// http, the STOMP family, the MQTT family, waldur) and the registry that
// decides, in one place, which kind a source's URL names.
//
// A kind is a Plugin: the URL schemes it takes, its typed settings (a
// struct with yaml tags, decoded strictly from the source's own YAML node
// by the config package), a Check that finds at load time everything its
// Build would refuse, the event types it can deliver, and its Build. Adding
// a kind is one Plugin value in the kind's own package and one line in
// runner/sources.Standard.
package source

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/eventfn/eventfn/event"
	"github.com/eventfn/eventfn/runner"
)

// Spec is one entry of the sources: section as a plug-in sees it: the
// keys every source has (name, url) and the kind's own settings.
type Spec[S any] struct {
	Name string
	URL  string
	// Settings are decoded from the entry's other keys.
	Settings S
}

// Deps are what building a source needs besides its settings.
type Deps struct {
	Logger  *slog.Logger
	Metrics *runner.Metrics
	// Limits bound the events a source decodes itself.
	Limits event.Limits
	// Stdin is read by a file source of "-".
	Stdin io.Reader
	// Dir is the rules file's directory: relative paths start there.
	Dir string
	// DrainTimeout is how long broker sources keep connections for
	// in-flight acknowledgements on shutdown (runner.shutdown_timeout).
	DrainTimeout time.Duration
	// Version is eventfn's version, reported to Waldur.
	Version string
	// LookupEnv reads environment variables (nil: os.LookupEnv).
	LookupEnv func(string) (string, bool)
	// StateDir is runner.state_dir ("" = in memory): sources that keep
	// what they accepted (the http source's spool) keep it there.
	StateDir string
}

// CredentialRef names one secret a source reads: a file (relative to the
// rules file) or an environment variable; empty when not set.
type CredentialRef struct{ File, Env string }

// Credentials is implemented by settings that name secrets (passcodes,
// tokens, HMAC keys), so that run can mask their values in everything that
// leaves the process.
type Credentials interface {
	CredentialRefs() []CredentialRef
}

// Kind is the untyped face of a Plugin that the registry and the loader
// use. Implementations come from Plugin; the methods taking an Entry panic
// when given another kind's entry.
type Kind interface {
	// Name is the kind's name ("stomp", "mqtt", "file", "http", "waldur").
	Name() string
	// Schemes are the URL schemes the kind takes, lower case.
	Schemes() []string
	// ImpliedBy is a settings key whose presence selects the kind when the
	// source has no url ("" for none).
	ImpliedBy() string
	// NewSettings returns a pointer to fresh default settings to decode into.
	NewSettings() any
	// Check reports what Build would refuse, without the network or secrets.
	Check(e *Entry) []error
	// Types reports the event types the source can deliver that it names
	// itself (a fixed type, a type in a destination); open is true when it
	// can also deliver whatever type its messages carry.
	Types(e *Entry) (types []string, open bool)
	// Build makes the source.
	Build(e *Entry, d Deps) (runner.Source, error)
}

// Entry is one loaded source: its name, url, kind and settings (a pointer
// to the kind's settings struct). Pos says where it is written.
type Entry struct {
	Name     string
	URL      string
	Kind     Kind
	Settings any
	// Pos is "FILE:LINE:COL" of the entry, for messages.
	Pos string
}

// Plugin implements Kind for settings of type S. Check, Types and Build
// receive the typed Spec.
type Plugin[S any] struct {
	KindName string
	// URLSchemes are the schemes taken (see Kind.Schemes).
	URLSchemes []string
	// Implied: see Kind.ImpliedBy.
	Implied string
	// Defaults returns the settings before decoding (nil: the zero value).
	Defaults func() S
	// CheckSpec reports what BuildSpec would refuse (nil: nothing).
	CheckSpec func(s *Spec[S]) []error
	// TypesOf: see Kind.Types (nil: none named, open).
	TypesOf func(s *Spec[S]) ([]string, bool)
	// BuildSpec makes the source; it is called only after CheckSpec found
	// nothing.
	BuildSpec func(s *Spec[S], d Deps) (runner.Source, error)
}

// Name implements Kind.
func (p *Plugin[S]) Name() string { return p.KindName }

// Schemes implements Kind.
func (p *Plugin[S]) Schemes() []string { return slices.Clone(p.URLSchemes) }

// ImpliedBy implements Kind.
func (p *Plugin[S]) ImpliedBy() string { return p.Implied }

// NewSettings implements Kind.
func (p *Plugin[S]) NewSettings() any {
	s := new(S)
	if p.Defaults != nil {
		*s = p.Defaults()
	}
	return s
}

func (p *Plugin[S]) spec(e *Entry) *Spec[S] {
	s, ok := e.Settings.(*S)
	if !ok {
		panic(fmt.Sprintf("source %q: settings %T given to kind %s", e.Name, e.Settings, p.KindName))
	}
	return &Spec[S]{Name: e.Name, URL: e.URL, Settings: *s}
}

// Check implements Kind.
func (p *Plugin[S]) Check(e *Entry) []error {
	if p.CheckSpec == nil {
		return nil
	}
	return p.CheckSpec(p.spec(e))
}

// Types implements Kind.
func (p *Plugin[S]) Types(e *Entry) ([]string, bool) {
	if p.TypesOf == nil {
		return nil, true
	}
	return p.TypesOf(p.spec(e))
}

// Build implements Kind: it runs Check first, so that Build never accepts
// what Check refuses.
func (p *Plugin[S]) Build(e *Entry, d Deps) (runner.Source, error) {
	if errs := p.Check(e); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	return p.BuildSpec(p.spec(e), d)
}

// KeyError is a problem with one settings key; the loader reports it at
// that key's position. Its message names the key itself.
type KeyError struct {
	Key string
	Err error
}

func (e *KeyError) Error() string { return e.Err.Error() }
func (e *KeyError) Unwrap() error { return e.Err }

// AtKey returns a KeyError for key with a formatted message.
func AtKey(key, format string, args ...any) error {
	return &KeyError{Key: key, Err: fmt.Errorf(format, args...)}
}

// Registry maps URL schemes to kinds. It is built once, from a list, and
// read only after.
type Registry struct {
	kinds    []Kind
	byScheme map[string]Kind
}

// NewRegistry registers kinds; two kinds taking one scheme is an error.
func NewRegistry(kinds ...Kind) (*Registry, error) {
	r := &Registry{byScheme: map[string]Kind{}}
	for _, k := range kinds {
		for _, s := range k.Schemes() {
			if prev, dup := r.byScheme[s]; dup {
				return nil, fmt.Errorf("scheme %s is taken by both %s and %s", s, prev.Name(), k.Name())
			}
			r.byScheme[s] = k
		}
		r.kinds = append(r.kinds, k)
	}
	return r, nil
}

// Kinds returns the registered kinds in registration order.
func (r *Registry) Kinds() []Kind { return slices.Clone(r.kinds) }

// Schemes returns every scheme taken, sorted.
func (r *Registry) Schemes() []string {
	out := make([]string, 0, len(r.byScheme))
	for s := range r.byScheme {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// Scheme returns the scheme of a source URL, lower case: the text before
// "://" or ":" ("file:events.jsonl", "waldur"); a URL without either is a
// scheme by itself.
func Scheme(url string) string {
	s, _, _ := strings.Cut(url, ":")
	return strings.ToLower(s)
}

// ForURL returns the kind that takes url's scheme.
func (r *Registry) ForURL(url string) (Kind, error) {
	scheme := Scheme(url)
	if k, ok := r.byScheme[scheme]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("unknown scheme %s (known: %s)", scheme, strings.Join(r.Schemes(), ", "))
}

// Implied returns the kind selected by the presence of key when a source
// has no url, or nil.
func (r *Registry) Implied(keys []string) Kind {
	for _, k := range r.kinds {
		if k.ImpliedBy() != "" && slices.Contains(keys, k.ImpliedBy()) {
			return k
		}
	}
	return nil
}

// Family returns the name of the kind that takes url's scheme (e.g.
// "stomp" for stomp+wss://…, "mqtt" for mqtts://…).
func (r *Registry) Family(url string) (string, error) {
	k, err := r.ForURL(url)
	if err != nil {
		return "", err
	}
	return k.Name(), nil
}

// DeliverableTypes returns the event types the given sources name
// themselves, sorted and each once; open is true when some source can
// deliver any type its messages carry.
func DeliverableTypes(entries []*Entry) (types []string, open bool) {
	seen := map[string]bool{}
	for _, e := range entries {
		ts, o := e.Kind.Types(e)
		open = open || o
		for _, t := range ts {
			if t != "" && !seen[t] {
				seen[t] = true
				types = append(types, t)
			}
		}
	}
	slices.Sort(types)
	return types, open
}
