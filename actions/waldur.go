package actions

import (
	"context"
	"errors"
	"fmt"
	"net/url"
)

var waldurSpec = Spec{Keys: []string{"method", "path", "query", "body", "ok_status"}, Shorthand: "path", Required: []string{"path"}}

// WaldurCaller is the part of the Waldur API client that waldur steps use.
type WaldurCaller interface {
	// Call sends one request to the API and returns the status and decoded
	// JSON answer. Its errors say themselves whether they are retryable:
	// network errors, 5xx and 429 are; other 4xx are marked Permanent.
	Call(ctx context.Context, method, path string, query url.Values, body any) (status int, json any, err error)
}

// Waldur calls the configured Waldur API.
type Waldur struct{ Client WaldurCaller }

// Run implements Action.
func (w *Waldur) Run(ctx context.Context, req Request) (Result, error) {
	if w.Client == nil {
		return nil, Permanent(errors.New("waldur: no Waldur API configured (set waldur.api_url and waldur.token_file)"))
	}
	var p struct {
		Method string            `json:"method"`
		Path   string            `json:"path"`
		Query  map[string]string `json:"query"`
		Body   any               `json:"body"`
	}
	if err := decode(req.Params, &p); err != nil {
		return nil, err
	}
	if p.Method == "" {
		p.Method = "GET"
		if p.Body != nil {
			p.Method = "POST"
		}
	}
	q := url.Values{}
	for k, v := range p.Query {
		q.Set(k, v)
	}
	status, js, err := w.Client.Call(ctx, p.Method, p.Path, q, p.Body)
	res := Result{"status": status, "json": js}
	if err != nil {
		return res, fmt.Errorf("waldur %s %s: %w", p.Method, p.Path, err)
	}
	return res, nil
}
