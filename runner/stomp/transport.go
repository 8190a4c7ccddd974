package stomp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/eventfn/eventfn/internal/creds"
)

// URL schemes of the STOMP transports.
const (
	SchemeTCP = "stomp"     // STOMP over TCP (RabbitMQ: port 61613)
	SchemeTLS = "stomp+ssl" // STOMP over TLS (RabbitMQ: port 61614)
	SchemeWS  = "stomp+ws"  // STOMP over WebSocket (RabbitMQ Web-STOMP: port 15674, path /ws)
	SchemeWSS = "stomp+wss" // STOMP over WebSocket with TLS (Waldur: port 443, path /rmqws-stomp)
)

// Schemes are the URL schemes this package handles.
var Schemes = []string{SchemeTCP, SchemeTLS, SchemeWS, SchemeWSS}

// DefaultWSPath is the WebSocket path used when a ws URL has none
// (RabbitMQ Web-STOMP's).
const DefaultWSPath = "/ws"

// Endpoint is where a broker listens, parsed from a source URL.
type Endpoint struct {
	// Scheme is one of Schemes.
	Scheme string
	// Addr is host:port (default ports: stomp 61613, stomp+ssl 61614,
	// stomp+ws 80, stomp+wss 443).
	Addr string
	// Path is the WebSocket path (ws schemes only).
	Path string
	// Login is the user name given in the URL, if any. A password in the
	// URL is refused: passcodes come from a file or an environment variable.
	Login string
	// VHost is the ?vhost= query parameter, if any.
	VHost string
}

// Secure reports whether the transport uses TLS.
func (e Endpoint) Secure() bool { return e.Scheme == SchemeTLS || e.Scheme == SchemeWSS }

// WebSocket reports whether the transport is a WebSocket.
func (e Endpoint) WebSocket() bool { return e.Scheme == SchemeWS || e.Scheme == SchemeWSS }

// Host returns the host part of Addr.
func (e Endpoint) Host() string {
	h, _, err := net.SplitHostPort(e.Addr)
	if err != nil {
		return e.Addr
	}
	return h
}

// String returns the URL without credentials, for logs.
func (e Endpoint) String() string {
	return e.Scheme + "://" + e.Addr + e.Path
}

// ErrPasswordInURL is returned for a URL carrying a password.
var ErrPasswordInURL = errors.New("a password in the URL is not accepted: give the passcode with passcode_file or passcode_env")

// ParseURL parses a stomp://, stomp+ssl://, stomp+ws:// or stomp+wss:// URL:
// scheme://[login@]host[:port][/path][?vhost=V].
func ParseURL(raw string) (Endpoint, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Endpoint{}, fmt.Errorf("stomp url: %w", err)
	}
	var e Endpoint
	e.Scheme = strings.ToLower(u.Scheme)
	port := ""
	switch e.Scheme {
	case SchemeTCP:
		port = "61613"
	case SchemeTLS:
		port = "61614"
	case SchemeWS:
		port = "80"
	case SchemeWSS:
		port = "443"
	default:
		return Endpoint{}, fmt.Errorf("stomp url %q: unsupported scheme %q (want %s)", redactURL(u), u.Scheme, strings.Join(Schemes, ", "))
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			return Endpoint{}, ErrPasswordInURL
		}
		e.Login = u.User.Username()
	}
	if u.Hostname() == "" {
		return Endpoint{}, fmt.Errorf("stomp url %q: missing host", redactURL(u))
	}
	if u.Port() != "" {
		port = u.Port()
	}
	e.Addr = net.JoinHostPort(u.Hostname(), port)
	if e.WebSocket() {
		e.Path = u.EscapedPath()
		if e.Path == "" {
			e.Path = DefaultWSPath
		}
	} else if u.Path != "" && u.Path != "/" {
		return Endpoint{}, fmt.Errorf("stomp url %q: a path is only meaningful for stomp+ws and stomp+wss", redactURL(u))
	}
	for k, v := range u.Query() {
		switch k {
		case "vhost":
			e.VHost = v[0]
		default:
			return Endpoint{}, fmt.Errorf("stomp url %q: unknown parameter %q (known: vhost)", redactURL(u), k)
		}
	}
	return e, nil
}

func redactURL(u *url.URL) string {
	c := *u
	if c.User != nil {
		if _, has := c.User.Password(); has {
			c.User = url.UserPassword(c.User.Username(), "xxxxx")
		}
	}
	return c.String()
}

// TLSOptions configure TLS for stomp+ssl and stomp+wss. Verification of the
// server's certificate is on unless InsecureSkipVerify is set.
type TLSOptions struct {
	// CAFile is a PEM bundle of the CAs to trust instead of the system's.
	CAFile string
	// CertFile and KeyFile are a client certificate and its key (PEM).
	CertFile, KeyFile string
	// ServerName overrides the name verified in the server's certificate
	// (default: the URL's host).
	ServerName string
	// InsecureSkipVerify turns verification off. For tests only.
	InsecureSkipVerify bool
}

// Config builds the tls.Config for a server at host.
func (o TLSOptions) Config(host string) (*tls.Config, error) {
	return creds.TLS(creds.TLSSpec{CAFile: o.CAFile, CertFile: o.CertFile, KeyFile: o.KeyFile,
		ServerName: o.ServerName, InsecureSkipVerify: o.InsecureSkipVerify}, host)
}

// wsSubprotocols are the STOMP WebSocket subprotocols offered to the server.
var wsSubprotocols = []string{"v12.stomp", "v11.stomp", "v10.stomp"}

// dialTransport opens the byte stream STOMP runs over: TCP, TLS, or a
// WebSocket adapted to a net.Conn.
func dialTransport(ctx context.Context, e Endpoint, tlsConf *tls.Config) (net.Conn, error) {
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	if e.Secure() && tlsConf == nil {
		var err error
		if tlsConf, err = (TLSOptions{}).Config(e.Host()); err != nil {
			return nil, err
		}
	}
	switch e.Scheme {
	case SchemeTCP:
		return d.DialContext(ctx, "tcp", e.Addr)
	case SchemeTLS:
		td := &tls.Dialer{NetDialer: d, Config: tlsConf}
		return td.DialContext(ctx, "tcp", e.Addr)
	case SchemeWS, SchemeWSS:
		scheme := "ws"
		if e.Scheme == SchemeWSS {
			scheme = "wss"
		}
		wd := &websocket.Dialer{
			NetDialContext:   d.DialContext,
			TLSClientConfig:  tlsConf,
			HandshakeTimeout: 30 * time.Second,
			Subprotocols:     wsSubprotocols,
			Proxy:            http.ProxyFromEnvironment,
		}
		u := scheme + "://" + e.Addr + e.Path
		ws, resp, err := wd.DialContext(ctx, u, nil)
		if err != nil {
			if resp != nil {
				return nil, fmt.Errorf("websocket %s: %w (HTTP %s)", u, err, resp.Status)
			}
			return nil, fmt.Errorf("websocket %s: %w", u, err)
		}
		return newWSConn(ws), nil
	}
	return nil, fmt.Errorf("unsupported scheme %q", e.Scheme)
}
