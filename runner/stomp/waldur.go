package stomp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/eventfn/eventfn/runner"
	"github.com/eventfn/eventfn/runner/broker"
	"github.com/eventfn/eventfn/waldur"
)

// Waldur registration modes.
const (
	// ModePerType is Waldur's per-(offering, type) queue path (section 1a of
	// the Waldur notes): an event subscription per object type, a queue per
	// offering and type, broker login = subscription UUID.
	ModePerType = "per-type"
	// ModeConsumerQueue is the newer single-queue path (1b): one queue per
	// agent identity, the type read from each payload's object_type.
	ModeConsumerQueue = "consumer-queue"
)

// WaldurBrokerPath is the WebSocket path of Web-STOMP behind Waldur's ingress.
const WaldurBrokerPath = "/rmqws-stomp"

// WaldurConfig configures a Waldur source.
type WaldurConfig struct {
	// Config holds the settings shared with plain STOMP sources; its
	// Connections are derived from the registration and must be empty.
	Config
	// Client talks to the Waldur API with the agent's token.
	Client *waldur.Client
	// Token is the API token, also the broker passcode.
	Token string
	// Offerings are the offering UUIDs served.
	Offerings []string
	// ObjectTypes are the event types subscribed to (default: every type
	// Waldur knows, waldur.ObjectTypes()).
	ObjectTypes []string
	// Mode is ModePerType (default) or ModeConsumerQueue.
	Mode string
	// Broker is where Waldur's RabbitMQ listens (see BrokerFromAPI).
	Broker Endpoint
	// TLS for a stomp+wss or stomp+ssl broker.
	TLS *tls.Config
	// Heartbeat: see DialOptions.Heartbeat.
	Heartbeat time.Duration
	// TypeField overrides the payload field holding the type (consumer
	// queue; default object_type).
	TypeField string
	// AgentName names the agent identity (default "agent-<offering hex>",
	// the Python agent's name, so eventfn takes over its identity). With
	// several offerings "-<offering hex>" is appended to a given name.
	AgentName string
	// Version is reported in the agent identity.
	Version string
}

// NewWaldur returns a source that registers with Waldur when it starts
// (retrying with backoff while the API is unreachable or refuses), then
// consumes the queues Waldur made: one STOMP connection per broker login,
// carrying all of that login's queues. When the broker later says a queue
// does not exist, the queue is registered again before reconnecting.
func NewWaldur(cfg WaldurConfig) (*Source, error) {
	if cfg.Client == nil {
		return nil, errors.New("waldur source: no API client")
	}
	if cfg.Token == "" {
		return nil, errors.New("waldur source: no token")
	}
	if len(cfg.Offerings) == 0 {
		return nil, errors.New("waldur source: list the offerings served (waldur.offerings)")
	}
	for _, o := range cfg.Offerings {
		if !waldur.ValidUUID(o) {
			return nil, fmt.Errorf("waldur source: offering %q is not a UUID", o)
		}
	}
	if len(cfg.ObjectTypes) == 0 {
		cfg.ObjectTypes = waldur.ObjectTypes()
	}
	switch cfg.Mode {
	case "":
		cfg.Mode = ModePerType
	case ModePerType, ModeConsumerQueue:
	default:
		return nil, fmt.Errorf("waldur source: mode %q: want %s or %s", cfg.Mode, ModePerType, ModeConsumerQueue)
	}
	if len(cfg.Connections) > 0 {
		return nil, errors.New("waldur source: connections come from the registration")
	}
	s := newSource(cfg.Config)
	w := &waldurReg{cfg: cfg, src: s}
	s.conf = w.register
	return s, nil
}

type waldurReg struct {
	cfg WaldurConfig
	src *Source
}

// register runs the registration until it succeeds or ctx ends.
func (w *waldurReg) register(ctx context.Context) ([]ConnConfig, error) {
	retry := broker.Retry{Backoff: w.src.cfg.Backoff}
	for {
		conns, err := w.registerOnce(ctx)
		if err == nil {
			return conns, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		delay := retry.Failed()
		w.src.setLastError(err)
		w.src.log.Error("registration with Waldur failed; retrying", "error", err.Error(),
			"attempt", retry.Failures(), "retry_in", delay.Round(time.Millisecond).String())
		sleep(ctx, delay)
	}
}

func (w *waldurReg) agentName(offering string) string {
	switch {
	case w.cfg.AgentName == "":
		return "" // the client's default: agent-<offering hex>
	case len(w.cfg.Offerings) == 1:
		return w.cfg.AgentName
	}
	return w.cfg.AgentName + "-" + waldur.NormalizeUUID(offering)
}

func (w *waldurReg) dial(vhost, login string) DialOptions {
	return DialOptions{Endpoint: w.cfg.Broker, TLS: w.cfg.TLS, VHost: vhost, Login: login,
		Passcode: w.cfg.Token, Heartbeat: w.cfg.Heartbeat}
}

func (w *waldurReg) registerOnce(ctx context.Context) ([]ConnConfig, error) {
	c := w.cfg.Client
	type key struct{ vhost, login string }
	var order []key
	byKey := map[key]*ConnConfig{}
	add := func(k key, sub Subscription, renew func(context.Context) error) {
		cc, ok := byKey[k]
		if !ok {
			cc = &ConnConfig{DialOptions: w.dial(k.vhost, k.login)}
			byKey[k] = cc
			order = append(order, k)
		}
		cc.Subscriptions = append(cc.Subscriptions, sub)
		prev := cc.OnNotFound
		cc.OnNotFound = func(ctx context.Context) error {
			if prev != nil {
				if err := prev(ctx); err != nil {
					return err
				}
			}
			return renew(ctx)
		}
	}
	for _, off := range w.cfg.Offerings {
		id, err := c.GetOrCreateAgentIdentity(ctx, off, w.agentName(off), w.cfg.Version)
		if err != nil {
			return nil, fmt.Errorf("offering %s: agent identity: %w", off, err)
		}
		w.src.log.Info("agent identity registered", "offering", off, "identity", id.UUID, "name", id.Name, "created", id.Created)
		switch w.cfg.Mode {
		case ModeConsumerQueue:
			q, err := c.RegisterQueue(ctx, id.UUID, w.cfg.ObjectTypes)
			if err != nil {
				return nil, fmt.Errorf("offering %s: register_queue: %w", off, err)
			}
			w.src.log.Info("consumer queue registered", "offering", off, "queue", q.QueueName, "vhost", q.VHost, "types", q.ObservableObjectTypes)
			identity := id.UUID
			tf := w.cfg.TypeField
			if tf == "" {
				tf = DefaultTypeField
			}
			add(key{q.VHost, q.RMQUsername}, Subscription{Destination: waldur.Destination(q.QueueName), TypeField: tf},
				func(ctx context.Context) error {
					_, err := c.RegisterQueue(ctx, identity, w.cfg.ObjectTypes)
					return err
				})
		default:
			for _, typ := range w.cfg.ObjectTypes {
				sub, err := c.RegisterEventSubscription(ctx, id.UUID, typ)
				if err != nil {
					return nil, fmt.Errorf("offering %s, type %s: event subscription: %w", off, typ, err)
				}
				q, err := c.CreateQueue(ctx, sub.UUID, off, typ)
				if err != nil {
					return nil, fmt.Errorf("offering %s, type %s: create_queue: %w", off, typ, err)
				}
				login, vhost := waldur.BrokerLogin(sub.UUID, sub.UserUUID)
				if vhost == "" {
					vhost = waldur.NormalizeUUID(q.VHost)
				}
				name := q.QueueName
				if name == "" {
					name = waldur.QueueName(sub.UUID, off, typ)
				}
				w.src.log.Info("queue registered", "offering", off, "type", typ, "subscription", sub.UUID, "queue", name, "created", q.Created)
				subUUID, offering, objType := sub.UUID, off, typ
				add(key{vhost, login}, Subscription{Destination: waldur.Destination(name), Type: typ},
					func(ctx context.Context) error {
						_, err := c.CreateQueue(ctx, subUUID, offering, objType)
						return err
					})
			}
		}
	}
	conns := make([]ConnConfig, 0, len(order))
	for _, k := range order {
		cc := *byKey[k]
		if err := checkConn(&cc); err != nil {
			return nil, err
		}
		conns = append(conns, cc)
	}
	return conns, nil
}

// BrokerFromAPI derives the broker's Web-STOMP address from the Waldur API
// URL: https://host[:port]/api/ → stomp+wss://host[:port]/rmqws-stomp
// (port 443 by default), http → stomp+ws (port 80).
func BrokerFromAPI(apiURL string) (Endpoint, error) {
	u, err := url.Parse(apiURL)
	if err != nil {
		return Endpoint{}, fmt.Errorf("api_url: %w", err)
	}
	scheme := SchemeWSS
	switch strings.ToLower(u.Scheme) {
	case "https":
	case "http":
		scheme = SchemeWS
	default:
		return Endpoint{}, fmt.Errorf("api_url %q: want http or https", apiURL)
	}
	if u.Hostname() == "" {
		return Endpoint{}, fmt.Errorf("api_url %q: missing host", apiURL)
	}
	return ParseURL(scheme + "://" + u.Host + WaldurBrokerPath)
}

// WaldurFromSettings builds a Waldur source from its settings.
func WaldurFromSettings(name, url string, s WaldurSettings, d Deps) (*Source, error) {
	if errs := s.Check(url); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	d = d.withDefaults()
	ws := s.Waldur
	token, err := ReadSecret(d.path(ws.TokenFile), ws.TokenEnv, d.LookupEnv)
	if err != nil {
		return nil, fmt.Errorf("waldur token (token_file or token_env): %w", err)
	}
	client, err := waldur.New(ws.APIURL, token, waldur.WithVersion(d.Version), waldur.WithInsecureHTTP(ws.InsecureHTTP))
	if err != nil {
		return nil, err
	}
	var broker Endpoint
	if ws.BrokerURL != "" {
		if broker, err = ParseURL(ws.BrokerURL); err != nil {
			return nil, fmt.Errorf("waldur.broker_url: %w", err)
		}
	} else if broker, err = BrokerFromAPI(ws.APIURL); err != nil {
		return nil, err
	}
	var tlsConf *tls.Config
	if broker.Secure() {
		if s.TLS.InsecureSkipVerify {
			d.Logger.Warn("TLS certificate verification is OFF for this source (tls.insecure_skip_verify): use only for tests", "source", name)
		}
		if tlsConf, err = d.tlsOptions(s.TLS).Config(broker.Host()); err != nil {
			return nil, err
		}
	}
	return NewWaldur(WaldurConfig{
		Config: s.common().config(name, d), Client: client, Token: token, Offerings: ws.Offerings,
		ObjectTypes: slices.Clone(ws.ObjectTypes), Mode: ws.Mode, Broker: broker, TLS: tlsConf,
		Heartbeat: s.Heartbeat, TypeField: s.TypeField, AgentName: ws.AgentName, Version: d.Version,
	})
}

var _ runner.Source = (*Source)(nil)
