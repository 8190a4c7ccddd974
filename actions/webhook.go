package actions

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
)

// SignatureHeader carries the HMAC-SHA256 of the request body.
const SignatureHeader = "X-Eventfn-Signature"

// WebhookParams are the parameters of a webhook step.
type WebhookParams struct {
	URL            string            `json:"url"`
	Method         string            `json:"method"`
	Headers        map[string]string `json:"headers"`
	Body           any               `json:"body"`
	HMACSecretFile string            `json:"hmac_secret_file"`
	OKStatus       []int             `json:"ok_status"`
	MaxResponse    int               `json:"max_response"`
}

// Webhook sends an HTTP request. A map or list body is sent as JSON, a string
// as is. With hmac_secret_file the body is signed in X-Eventfn-Signature as
// sha256=<hex>. 5xx, 429 and network errors are retried; other statuses
// outside ok_status (default 2xx) are permanent failures. Redirects to
// another host are refused.
type Webhook struct{ Client *http.Client }

// NewWebhook returns a webhook action with its own HTTP client.
func NewWebhook() *Webhook {
	return &Webhook{Client: &http.Client{CheckRedirect: sameHostRedirect}}
}

func sameHostRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("stopped after 5 redirects")
	}
	if req.URL.Host != via[0].URL.Host {
		return fmt.Errorf("refusing redirect from %s to another host %s", via[0].URL.Host, req.URL.Host)
	}
	return nil
}

// HTTPError is a response whose status is not accepted.
type HTTPError struct {
	Status int
	URL    string
	Body   string
}

func (e *HTTPError) Error() string {
	b := e.Body
	if len(b) > 200 {
		b = b[:200] + "…"
	}
	return fmt.Sprintf("%s answered %d: %s", e.URL, e.Status, strings.TrimSpace(b))
}

// Run implements Action.
func (w *Webhook) Run(ctx context.Context, req Request) (Result, error) {
	var p WebhookParams
	if err := decode(req.Params, &p); err != nil {
		return nil, err
	}
	if p.Method == "" {
		p.Method = http.MethodPost
	}
	if err := checkWebhook(p); err != nil {
		return nil, Permanent(err)
	}
	var body []byte
	switch b := p.Body.(type) {
	case nil:
	case string:
		body = []byte(b)
	default:
		var err error
		if body, err = json.Marshal(b); err != nil {
			return nil, Permanent(fmt.Errorf("webhook body: %w", err))
		}
		if p.Headers["Content-Type"] == "" {
			if p.Headers == nil {
				p.Headers = map[string]string{}
			}
			p.Headers["Content-Type"] = "application/json"
		}
	}
	hreq, err := http.NewRequestWithContext(ctx, strings.ToUpper(p.Method), p.URL, bytes.NewReader(body))
	if err != nil {
		return nil, Permanent(fmt.Errorf("webhook: %w", err))
	}
	for k, v := range p.Headers {
		if err := checkHeader(k, v); err != nil {
			return nil, Permanent(fmt.Errorf("webhook: %w", err))
		}
		hreq.Header.Set(k, v)
	}
	if p.HMACSecretFile != "" {
		secret, err := os.ReadFile(p.HMACSecretFile)
		if err != nil {
			return nil, Permanent(fmt.Errorf("webhook: reading hmac_secret_file: %w", err))
		}
		mac := hmac.New(sha256.New, bytes.TrimRight(secret, "\r\n"))
		mac.Write(body)
		hreq.Header.Set(SignatureHeader, "sha256="+hex.EncodeToString(mac.Sum(nil)))
	}
	otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(hreq.Header))
	resp, err := w.Client.Do(hreq)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) && strings.Contains(err.Error(), "refusing redirect") {
			return nil, Permanent(err)
		}
		return nil, fmt.Errorf("webhook: %w", err)
	}
	defer resp.Body.Close()
	limit := p.MaxResponse
	if limit <= 0 {
		limit = DefaultMaxOutput
	}
	rb, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)))
	if err != nil {
		return nil, fmt.Errorf("webhook: reading response: %w", err)
	}
	res := Result{"status": resp.StatusCode, "body": string(rb), "json": parseJSON(rb)}
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	if len(p.OKStatus) > 0 {
		ok = slices.Contains(p.OKStatus, resp.StatusCode)
	}
	if ok {
		return res, nil
	}
	herr := &HTTPError{Status: resp.StatusCode, URL: redactURL(hreq), Body: string(rb)}
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
		return res, herr
	}
	return res, Permanent(herr)
}

// checkHeader refuses a header name that is not an HTTP token and a value
// with CR, LF, NUL or other control characters (but tab): they would split
// or end the header, and retrying cannot change that.
func checkHeader(name, value string) error {
	if name == "" {
		return errors.New("empty header name")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return fmt.Errorf("header name %q is not a valid HTTP token", name)
		}
	}
	for i := 0; i < len(value); i++ {
		if c := value[i]; c < ' ' && c != '\t' || c == 0x7f {
			return fmt.Errorf("header %s: the value holds a control character (CR, LF, ...)", name)
		}
	}
	return nil
}

// redactURL drops credentials and the query (which may carry tokens).
func redactURL(r *http.Request) string {
	u := *r.URL
	u.User = nil
	u.RawQuery = ""
	return u.String()
}
