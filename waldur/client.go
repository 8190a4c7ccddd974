// Package waldur is a small client for the parts of the Waldur REST API that a
// site agent needs: orders, provider resources, backend resource requests and
// the registration of agent identities, event subscriptions and queues. It also
// holds the naming rules Waldur uses for queues, topics and broker logins.
package waldur

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
)

const (
	defaultTimeout = 30 * time.Second
	maxBodyBytes   = 32 << 20 // refuse larger responses
	maxErrorBody   = 512      // bytes of response body kept in an APIError
	redacted       = "[REDACTED]"
)

// Client talks to one Waldur API with one token. It is safe for concurrent use.
type Client struct {
	base         *url.URL // always ends in "/api/"
	token        string
	http         *http.Client
	version      string
	insecureHTTP bool
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client used for requests (transport, timeout,
// proxy). By default a client with a 30 s timeout is used.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.http = hc
		}
	}
}

// WithVersion sets the version sent as User-Agent "eventfn/<version>".
func WithVersion(v string) Option {
	return func(c *Client) {
		if v != "" {
			c.version = v
		}
	}
}

// WithInsecureHTTP allows an http:// API URL to a host other than the
// loopback one: the token then crosses the network in clear. It is the
// insecure_http setting of the configuration.
func WithInsecureHTTP(allow bool) Option {
	return func(c *Client) { c.insecureHTTP = allow }
}

// New returns a Client for the API at apiURL ("https://x", "https://x/api" or
// "https://x/api/" all mean "https://x/api/") authenticating with token.
func New(apiURL, token string, opts ...Option) (*Client, error) {
	base, err := normalizeBaseURL(apiURL)
	if err != nil {
		return nil, err
	}
	if token == "" {
		return nil, errors.New("waldur: empty API token")
	}
	if strings.ContainsFunc(token, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return nil, errors.New("waldur: API token contains whitespace or control characters")
	}
	c := &Client{base: base, token: token, http: &http.Client{Timeout: defaultTimeout}, version: "dev"}
	for _, o := range opts {
		o(c)
	}
	if base.Scheme == "http" && !c.insecureHTTP && !loopbackHost(base.Hostname()) {
		return nil, fmt.Errorf("waldur: API URL %q is http://: the token would cross the network in clear (use https://, or set insecure_http: true)", base.Redacted())
	}
	hc := *c.http // a copy: the caller's client is not changed
	next := hc.CheckRedirect
	hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		if first := via[0].URL; req.URL.Scheme != first.Scheme || !strings.EqualFold(req.URL.Host, first.Host) {
			req.Header.Del("Authorization") // never across a change of scheme or host
		}
		if next != nil {
			return next(req, via)
		}
		return nil
	}
	c.http = &hc
	return c, nil
}

// loopbackHost reports whether host is localhost or a loopback address:
// plain http to it keeps the token on the machine.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func normalizeBaseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return nil, fmt.Errorf("waldur: invalid API URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("waldur: API URL %q must be absolute http(s)", u.Redacted())
	}
	p := strings.TrimRight(u.Path, "/")
	if !strings.HasSuffix(p, "/api") {
		p += "/api"
	}
	u.Path, u.RawPath, u.RawQuery, u.Fragment = p+"/", "", "", ""
	return u, nil
}

// BaseURL returns the normalised API URL, ending in "/api/".
func (c *Client) BaseURL() string { return c.base.Redacted() }

// String describes the client without its token.
func (c *Client) String() string {
	return fmt.Sprintf("waldur.Client{url=%s token=%s}", c.base.Redacted(), redacted)
}

// GoString is String, so that %#v cannot print the token either.
func (c *Client) GoString() string { return c.String() }

// LogValue implements slog.LogValuer without the token.
func (c *Client) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("url", c.base.Redacted()),
		slog.String("token", redacted),
		slog.String("version", c.version),
	)
}

// Response is a successful or failed HTTP answer from Waldur.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
	JSON   any // decoded body when the response is JSON, else nil
}

// Decode unmarshals the body into v.
func (r *Response) Decode(v any) error {
	if err := json.Unmarshal(r.Body, v); err != nil {
		return fmt.Errorf("waldur: decode response: %w", err)
	}
	return nil
}

// APIError is returned by Do for any non-2xx answer.
type APIError struct {
	Status int
	Method string
	Path   string
	Body   string // at most 512 bytes, token redacted
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("waldur: %s %s: HTTP %d %s", e.Method, e.Path, e.Status, http.StatusText(e.Status))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// transportError marks a failure to exchange a request with the server
// (connection, TLS, timeout, truncated body) that was not caused by the
// caller's context ending.
type transportError struct{ err error }

func (e *transportError) Error() string { return e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

// Retryable reports whether err is worth retrying: network failures, HTTP
// 5xx and 429 are; other 4xx, invalid input and a cancelled or expired
// context are not.
func Retryable(err error) bool {
	if err == nil {
		return false
	}
	if apiErr, ok := errors.AsType[*APIError](err); ok {
		return apiErr.Status >= 500 || apiErr.Status == http.StatusTooManyRequests
	}
	if _, ok := errors.AsType[*transportError](err); ok {
		return true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF)
}

// Do sends one request to path (relative to the API root, e.g.
// "marketplace-orders/<uuid>/") with query and, unless body is nil, body
// encoded as JSON. A non-2xx answer yields both the Response and an *APIError.
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body any) (*Response, error) {
	u, err := c.resolve(path)
	if err != nil {
		return nil, err
	}
	u.RawQuery = query.Encode()

	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("waldur: %s %s: encode body: %w", method, u.Path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("waldur: %s %s: %w", method, u.Path, err)
	}
	req.Header.Set("Authorization", "Token "+c.token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "eventfn/"+c.version)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(req.Header))

	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.wrapTransport(ctx, method, u.Path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes+1))
	if err != nil {
		return nil, c.wrapTransport(ctx, method, u.Path, err)
	}
	if len(data) > maxBodyBytes {
		return nil, fmt.Errorf("waldur: %s %s: response larger than %d bytes", method, u.Path, maxBodyBytes)
	}

	r := &Response{Status: resp.StatusCode, Header: resp.Header, Body: data}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); len(data) > 0 &&
		(mt == "application/json" || strings.HasSuffix(mt, "+json")) {
		_ = json.Unmarshal(data, &r.JSON) // a broken body stays available in Body
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return r, &APIError{Status: resp.StatusCode, Method: method, Path: u.Path, Body: c.errorBody(data)}
	}
	return r, nil
}

func (c *Client) wrapTransport(ctx context.Context, method, path string, err error) error {
	err = c.scrub(err)
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("waldur: %s %s: %w (%w)", method, path, ctxErr, err)
	}
	return fmt.Errorf("waldur: %s %s: %w", method, path, &transportError{err})
}

// scrub replaces an error whose text would contain the token (it never should)
// by a redacted copy that still unwraps to the original.
func (c *Client) scrub(err error) error {
	if !strings.Contains(err.Error(), c.token) {
		return err
	}
	return &redactedError{msg: strings.ReplaceAll(err.Error(), c.token, redacted), err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

func (c *Client) errorBody(data []byte) string {
	s := strings.ReplaceAll(string(data), c.token, redacted)
	if len(s) > maxErrorBody {
		s = s[:maxErrorBody]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return strings.TrimSpace(s)
}

// resolve joins a relative API path to the base URL, refusing anything that
// could leave the API root. Percent escapes in path (those the rules'
// renderer writes for event values) are kept as they are, and a segment
// that decodes to . or .. is refused too.
func (c *Client) resolve(path string) (*url.URL, error) {
	p := strings.TrimLeft(path, "/")
	if strings.ContainsAny(p, "?#\\") || strings.ContainsFunc(p, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return nil, fmt.Errorf("waldur: invalid API path %.80q", path)
	}
	decoded, err := url.PathUnescape(p)
	if err != nil {
		return nil, fmt.Errorf("waldur: invalid API path %.80q: %w", path, err)
	}
	for seg := range strings.SplitSeq(p, "/") {
		if d, _ := url.PathUnescape(seg); d == "." || d == ".." || seg == "." || seg == ".." {
			return nil, fmt.Errorf("waldur: invalid API path %.80q", path)
		}
	}
	u := *c.base
	u.Path += decoded
	u.RawPath = c.base.EscapedPath() + p
	return &u, nil
}
