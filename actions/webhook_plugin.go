package actions

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"go.opentelemetry.io/otel/attribute"

	"github.com/eventfn/eventfn/spec"
)

// httpMethods are the methods a webhook may use.
var httpMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// Definition implements Kind.
func (w *Webhook) Definition() spec.Definition {
	return spec.Definition{
		Kind:      "webhook",
		Doc:       "Sends an HTTP request. A mapping or list body is sent as JSON. 5xx, 429 and network errors are retried; other statuses outside ok_status fail at once. Redirects to another host are refused.",
		Shorthand: "url",
		Params: []spec.Param{
			{Name: "url", Type: spec.String, Required: true, Doc: "http:// or https:// URL.", Example: "https://hooks.example.org/orders"},
			{Name: "method", Type: spec.String, Default: "POST", Enum: httpMethods, Doc: "HTTP method.", Example: "PUT"},
			{Name: "headers", Type: spec.StringMap, Doc: "Request headers.", Example: `{Authorization: "Bearer {{ secrets.hook_token }}"}`},
			{Name: "body", Type: spec.Any, Doc: "Request body: a mapping or list (sent as JSON) or a string.", Example: `{order: "{{ payload.order_uuid }}"}`},
			{Name: "hmac_secret_file", Type: spec.String, Doc: "File holding a key: the body's HMAC-SHA256 is sent as X-Eventfn-Signature: sha256=<hex>.", Example: "/run/secrets/hook-key"},
			{Name: "ok_status", Type: spec.IntegerList, Default: "2xx", Doc: "Statuses that count as success.", Example: "[200, 409]"},
			{Name: "max_response", Type: spec.Integer, Default: "1048576", Doc: "Bytes of the response body kept.", Example: "65536"},
		},
		Result: []spec.Field{
			{Name: "status", Type: spec.Integer, Doc: "HTTP status."},
			{Name: "body", Type: spec.String, Doc: "Response body (up to max_response)."},
			{Name: "json", Type: spec.Any, Doc: "The body parsed, when it is JSON; else null."},
		},
		Example: `{webhook: {url: "https://hooks.example.org/orders", body: {order: "{{ payload.order_uuid }}"}}}`,
	}
}

// Check implements Kind: the URL, and what decoding refuses.
func (w *Webhook) Check(params map[string]any) []error {
	lit, _ := literal(params)
	var p WebhookParams
	if err := decode(lit, &p); err != nil {
		return []error{err}
	}
	var errs []error
	if _, ok := lit["url"]; ok {
		if err := checkWebhookURL(p.URL); err != nil {
			errs = append(errs, spec.Errorf("url", "%v", err))
		}
	}
	for i, st := range p.OKStatus {
		if st < 100 || st > 599 {
			errs = append(errs, spec.Errorf(fmt.Sprintf("ok_status[%d]", i), "%d is not an HTTP status", st))
		}
	}
	return errs
}

// checkWebhook refuses what no request can be sent with: a method outside
// the standard set, a URL that is not http(s) with a host.
func checkWebhook(p WebhookParams) error {
	if m := strings.ToUpper(p.Method); m != "" && !slices.Contains(httpMethods, m) {
		return fmt.Errorf("webhook: method %q: want one of %s", p.Method, strings.Join(httpMethods, ", "))
	}
	if err := checkWebhookURL(p.URL); err != nil {
		return fmt.Errorf("webhook: url: %w", err)
	}
	return nil
}

func checkWebhookURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%.100q is not a URL", s)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%.100q: scheme %q: want http or https", s, u.Scheme)
	}
	if u.Host == "" {
		return fmt.Errorf("%.100q: no host", s)
	}
	return nil
}

// Preview implements Kind: the request Run would send, the signature and
// sensitive headers masked.
func (w *Webhook) Preview(req Request) (Effect, error) {
	var p WebhookParams
	if err := decode(req.Params, &p); err != nil {
		return Effect{}, err
	}
	if p.Method == "" {
		p.Method = http.MethodPost
	}
	if err := checkWebhook(p); err != nil {
		return Effect{}, Permanent(err)
	}
	headers := map[string]string{}
	for k, v := range p.Headers {
		headers[http.CanonicalHeaderKey(k)] = maskHeader(k, v)
	}
	var body string
	switch b := p.Body.(type) {
	case nil:
	case string:
		body = b
	default:
		js, err := json.Marshal(b)
		if err != nil {
			return Effect{}, Permanent(fmt.Errorf("webhook body: %w", err))
		}
		body = string(js)
		if headers["Content-Type"] == "" {
			headers["Content-Type"] = "application/json"
		}
	}
	if p.HMACSecretFile != "" {
		headers[SignatureHeader] = "sha256=***"
	}
	return Effect{Requests: []HTTPRequest{{Method: strings.ToUpper(p.Method), URL: maskURL(p.URL), Headers: headers, Body: body}}}, nil
}

// Attributes implements Kind.
func (w *Webhook) Attributes(req Request, res Result) []attribute.KeyValue {
	method, _ := req.Params["method"].(string)
	if method == "" {
		method = http.MethodPost
	}
	u, _ := req.Params["url"].(string)
	attrs := []attribute.KeyValue{AttrMethod.String(strings.ToUpper(method)), AttrURL.String(u)}
	if st, ok := res["status"].(int); ok && st != 0 {
		attrs = append(attrs, AttrStatus.Int(st))
	}
	return attrs
}

// sensitiveHeaders are masked in previews whatever their value.
var sensitiveHeaders = []string{"Authorization", "Proxy-Authorization", "Cookie", "X-Api-Key", "X-Auth-Token"}

func maskHeader(k, v string) string {
	k = http.CanonicalHeaderKey(k)
	if slices.Contains(sensitiveHeaders, k) || strings.Contains(strings.ToLower(k), "token") || strings.Contains(strings.ToLower(k), "secret") {
		if scheme, _, ok := strings.Cut(v, " "); ok && (scheme == "Bearer" || scheme == "Token" || scheme == "Basic") {
			return scheme + " ***"
		}
		return "***"
	}
	return v
}

// maskURL masks a URL's password (secrets rendered into a URL are already
// *** in a dry run).
func maskURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "***")
	}
	return u.String()
}
