package actions

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/eventfn/eventfn/waldur"
)

// WaldurCaller is the part of the Waldur API client that waldur steps use.
type WaldurCaller interface {
	// Call sends one request to the API and returns the status and decoded
	// JSON answer. Its errors say themselves whether they are retryable:
	// network errors, 5xx and 429 are; other 4xx are marked Permanent.
	Call(ctx context.Context, method, path string, query url.Values, body any) (status int, json any, err error)
}

// Waldur calls the configured Waldur API. A step gives one request:
//
//	waldur: {method?, path, query?, body?, ok_status?}
//
// path is relative to the API root (marketplace-orders/<uuid>/); method
// defaults to GET, or POST when there is a body; query values may be lists
// (state=OK&state=Erred); ok_status lists statuses that count as success
// besides 2xx (e.g. [404] for "already gone"). The result is status and
// json. Or a step gives a batch of requests, run in order until one fails:
//
//	waldur: {method?, query?, ok_status?, batch: [{method?, path, query?, body?}, ...]}
//
// whose result is results: [{status, json}, ...] (and status and json of
// the last). Batch items are not remembered between retries: make them
// idempotent or set retry attempts to 1.
type Waldur struct{ Client WaldurCaller }

// waldurRequest is one checked request.
type waldurRequest struct {
	method string
	path   string
	query  url.Values
	body   any
}

var methods = []string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"}

// apiSegment is what one segment of an API path may hold.
var apiSegment = regexp.MustCompile(`^[A-Za-z0-9_.~-]+$`)

// Run implements Action.
func (w *Waldur) Run(ctx context.Context, req Request) (Result, error) {
	p := req.Params
	okStatus, err := intList(p["ok_status"])
	if err != nil {
		return nil, Permanent(fmt.Errorf("waldur: ok_status: %w", err))
	}
	batch, isBatch := p["batch"]
	if isBatch && p["path"] != nil {
		return nil, Permanent(errors.New("waldur: give path or batch, not both"))
	}
	var reqs []waldurRequest
	if isBatch {
		items, ok := batch.([]any)
		if !ok && batch != nil {
			return nil, Permanent(fmt.Errorf("waldur: batch must be a list of requests, got %s", describe(batch)))
		}
		for i, it := range items {
			m, ok := it.(map[string]any)
			if !ok {
				return nil, Permanent(fmt.Errorf("waldur: batch[%d] must be a mapping {method, path, query, body}, got %s", i, describe(it)))
			}
			for k := range m {
				if !slices.Contains([]string{"method", "path", "query", "body"}, k) {
					return nil, Permanent(fmt.Errorf("waldur: batch[%d]: unknown key %q (known: method, path, query, body)", i, k))
				}
			}
			r, err := waldurParse(m, p)
			if err != nil {
				return nil, Permanent(fmt.Errorf("waldur: batch[%d]: %w", i, err))
			}
			reqs = append(reqs, r)
		}
	} else {
		r, err := waldurParse(p, nil)
		if err != nil {
			return nil, Permanent(fmt.Errorf("waldur: %w", err))
		}
		reqs = []waldurRequest{r}
	}
	if w.Client == nil {
		return nil, Permanent(errors.New("waldur: no Waldur API configured (set waldur.api_url and waldur.token_file)"))
	}
	res := Result{"status": 0, "json": nil}
	results := []any{}
	for _, r := range reqs {
		status, js, err := w.Client.Call(ctx, r.method, r.path, r.query, r.body)
		if err != nil && status != 0 && slices.Contains(okStatus, status) {
			err = nil
		}
		res["status"], res["json"] = status, js
		results = append(results, map[string]any{"status": status, "json": js})
		if err != nil {
			if isBatch {
				res["results"] = results
			}
			return res, fmt.Errorf("waldur %s %s: %w", r.method, r.path, err)
		}
	}
	if isBatch {
		res["results"] = results
	}
	return res, nil
}

// waldurParse checks one request's method, path, query and body; def holds
// the step's defaults for batch items.
func waldurParse(m, def map[string]any) (waldurRequest, error) {
	get := func(k string) any {
		if v, ok := m[k]; ok && v != nil {
			return v
		}
		if def != nil {
			return def[k]
		}
		return nil
	}
	r := waldurRequest{body: m["body"]}
	path, ok := m["path"].(string)
	if !ok {
		return r, fmt.Errorf("path must be a string (relative to the API root), got %s", describe(m["path"]))
	}
	if err := checkAPIPath(path); err != nil {
		return r, err
	}
	r.path = path
	if v := get("method"); v != nil && v != "" {
		s, _ := v.(string)
		r.method = strings.ToUpper(s)
		if !slices.Contains(methods, r.method) {
			return r, fmt.Errorf("method %v: want one of %s", v, strings.Join(methods, ", "))
		}
	} else if r.body != nil {
		r.method = "POST"
	} else {
		r.method = "GET"
	}
	q, err := queryValues(get("query"))
	if err != nil {
		return r, err
	}
	r.query = q
	return r, nil
}

// checkAPIPath refuses paths that are not plain relative API paths: each
// segment of letters, digits and _ . ~ -, no . or .., no query, no scheme.
func checkAPIPath(p string) error {
	trimmed := strings.Trim(p, "/")
	if trimmed == "" {
		return fmt.Errorf("path %q refused: empty", p)
	}
	for seg := range strings.SplitSeq(trimmed, "/") {
		if seg == "." || seg == ".." || !apiSegment.MatchString(seg) {
			return fmt.Errorf("path %.100q refused: segment %.60q is not a plain name or id (letters, digits, _ . ~ -)", p, seg)
		}
	}
	return nil
}

// queryValues turns a query mapping into url.Values: scalars give one
// value, lists one value per item, null nothing.
func queryValues(v any) (url.Values, error) {
	q := url.Values{}
	if v == nil {
		return q, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("query must be a mapping, got %s", describe(v))
	}
	for k, val := range m {
		items, isList := val.([]any)
		if !isList {
			items = []any{val}
		}
		for _, it := range items {
			if it == nil {
				continue
			}
			s, err := scalarString(it)
			if err != nil {
				return nil, fmt.Errorf("query.%s: %w", k, err)
			}
			q.Add(k, s)
		}
	}
	return q, nil
}

// intList reads a list of integers (or one integer).
func intList(v any) ([]int, error) {
	if v == nil {
		return nil, nil
	}
	items, ok := v.([]any)
	if !ok {
		items = []any{v}
	}
	out := make([]int, 0, len(items))
	for _, it := range items {
		switch t := it.(type) {
		case int:
			out = append(out, t)
		case float64:
			out = append(out, int(t))
		case string:
			n, err := strconv.Atoi(t)
			if err != nil {
				return nil, fmt.Errorf("%q is not a status code", t)
			}
			out = append(out, n)
		default:
			return nil, fmt.Errorf("want status codes, got %s", describe(it))
		}
	}
	return out, nil
}

// WaldurClient adapts the Waldur API client to waldur steps: errors the
// client does not call retryable (4xx but 429, refused paths) are marked
// permanent.
func WaldurClient(c *waldur.Client) WaldurCaller { return waldurClient{c} }

type waldurClient struct{ c *waldur.Client }

func (w waldurClient) Call(ctx context.Context, method, path string, query url.Values, body any) (int, any, error) {
	resp, err := w.c.Do(ctx, method, path, query, body)
	status := 0
	var js any
	if resp != nil {
		status, js = resp.Status, resp.JSON
	}
	if err != nil && !waldur.Retryable(err) {
		err = Permanent(err)
	}
	return status, js, err
}
