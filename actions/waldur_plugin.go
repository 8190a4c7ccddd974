package actions

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.opentelemetry.io/otel/attribute"

	"github.com/eventfn/eventfn/spec"
)

// waldurKind is the waldur action as a plug-in; apiURL is the API root, for
// previews.
type waldurKind struct {
	*Waldur
	apiURL string
}

var waldurBatchKeys = []string{"method", "path", "query", "body"}

// Definition implements Kind.
func (w waldurKind) Definition() spec.Definition {
	return spec.Definition{
		Kind:      "waldur",
		Doc:       "Calls the Waldur API configured in the file's waldur section, with its token. One request (path), or a batch run in order until one fails.",
		Shorthand: "path",
		Params: []spec.Param{
			{Name: "path", Type: spec.String, Doc: "Path relative to the API root; each segment letters, digits and _ . ~ -.", Example: `"marketplace-orders/{{ payload.order_uuid }}/"`},
			{Name: "method", Type: spec.String, Default: "GET, or POST with a body", Enum: methods, Doc: "HTTP method.", Example: "POST"},
			{Name: "query", Type: spec.Mapping, Doc: "Query parameters; a list value gives the parameter once per item.", Example: "{state: [OK, Erred]}"},
			{Name: "body", Type: spec.Any, Doc: "JSON body.", Example: `{error_message: "{{ error }}"}`},
			{Name: "ok_status", Type: spec.IntegerList, Doc: "Statuses besides 2xx that count as success.", Example: "[404]"},
			{Name: "batch", Type: spec.List, Doc: "Requests {method, path, query, body} run in order until one fails; method, query and ok_status of the step are their defaults.", Example: `[{path: "marketplace-orders/{{ payload.order_uuid }}/approve_by_provider/", method: POST}]`},
		},
		Result: []spec.Field{
			{Name: "status", Type: spec.Integer, Doc: "HTTP status (of the last request of a batch)."},
			{Name: "json", Type: spec.Any, Doc: "The decoded answer (of the last request of a batch)."},
			{Name: "results", Type: spec.List, Doc: "With batch: [{status, json}, …] of each request."},
		},
		Example: `{id: order, waldur: "marketplace-orders/{{ payload.order_uuid }}/"}`,
	}
}

// Check implements Kind: Run's own parsing of every literal part.
func (w waldurKind) Check(params map[string]any) []error {
	if _, ok := params["path"]; !ok {
		if _, ok := params["batch"]; !ok {
			return []error{spec.Errorf("", "waldur needs path or batch")}
		}
	}
	_, err := waldurPlan(params, true)
	if err != nil {
		return []error{err}
	}
	return nil
}

// waldurPlan checks a step's parameters as Run does and returns its
// requests. With lenient set (load time) values holding {{ are unknown and
// pass.
func waldurPlan(p map[string]any, lenient bool) ([]waldurRequest, error) {
	known := func(m map[string]any) map[string]any {
		if !lenient {
			return m
		}
		out := map[string]any{}
		for k, v := range m {
			switch {
			case k == "path" && spec.IsTemplate(v):
				out[k] = "x"
			case k == "query" || k == "body":
				if q, ok := v.(map[string]any); ok && k == "query" {
					lq, _ := literal(q)
					out[k] = lq
				} else if !spec.IsTemplate(v) {
					out[k] = v
				}
			case !hasTemplate(v):
				out[k] = v
			}
		}
		return out
	}
	top := known(p)
	if _, err := intList(top["ok_status"]); err != nil {
		return nil, spec.Errorf("ok_status", "%v", err)
	}
	batch, isBatch := p["batch"]
	if isBatch && p["path"] != nil {
		return nil, spec.Errorf("", "give path or batch, not both")
	}
	if !isBatch {
		r, err := waldurParse(top, nil)
		if err != nil {
			return nil, waldurParamError("", err)
		}
		return []waldurRequest{r}, nil
	}
	if lenient && spec.IsTemplate(batch) {
		return nil, nil
	}
	items, ok := batch.([]any)
	if !ok && batch != nil {
		return nil, spec.Errorf("batch", "must be a list of requests, got %s", spec.Describe(batch))
	}
	var reqs []waldurRequest
	for i, it := range items {
		at := fmt.Sprintf("batch[%d]", i)
		if lenient && spec.IsTemplate(it) {
			continue
		}
		m, ok := it.(map[string]any)
		if !ok {
			return nil, spec.Errorf(at, "must be a mapping {method, path, query, body}, got %s", spec.Describe(it))
		}
		for k := range m {
			if !slices.Contains(waldurBatchKeys, k) {
				return nil, spec.Errorf(at+"."+k, "unknown key %q%s", k, spec.DidYouMean(k, waldurBatchKeys))
			}
		}
		r, err := waldurParse(known(m), top)
		if err != nil {
			return nil, waldurParamError(at, err)
		}
		reqs = append(reqs, r)
	}
	return reqs, nil
}

// waldurParamError places an error of waldurParse on the parameter it is
// about.
func waldurParamError(at string, err error) error {
	key := ""
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "path"):
		key = "path"
	case strings.HasPrefix(msg, "method"):
		key = "method"
	case strings.HasPrefix(msg, "query"):
		key = "query"
	}
	switch {
	case at == "":
		at = key
	case key != "":
		at += "." + key
	}
	return &spec.Error{Path: at, Msg: msg}
}

// Preview implements Kind: the requests Run would send, the token masked.
func (w waldurKind) Preview(req Request) (Effect, error) {
	reqs, err := waldurPlan(req.Params, false)
	if err != nil {
		return Effect{}, Permanent(fmt.Errorf("waldur: %w", err))
	}
	root := w.apiURL
	if root == "" {
		root = "<waldur.api_url>/"
	}
	if !strings.HasSuffix(root, "/") {
		root += "/"
	}
	var eff Effect
	for _, r := range reqs {
		u := root + strings.TrimPrefix(r.path, "/")
		if len(r.query) > 0 {
			u += "?" + r.query.Encode()
		}
		h := map[string]string{"Authorization": "Token ***", "Accept": "application/json"}
		var body string
		if r.body != nil {
			js, err := json.Marshal(r.body)
			if err != nil {
				return Effect{}, Permanent(fmt.Errorf("waldur: body: %w", err))
			}
			body = string(js)
			h["Content-Type"] = "application/json"
		}
		eff.Requests = append(eff.Requests, HTTPRequest{Method: r.method, URL: u, Headers: h, Body: body})
	}
	if w.Client == nil && w.apiURL == "" && len(eff.Requests) == 0 {
		return Effect{}, Permanent(errors.New("waldur: nothing to send"))
	}
	return eff, nil
}

// Attributes implements Kind.
func (w waldurKind) Attributes(req Request, res Result) []attribute.KeyValue {
	var attrs []attribute.KeyValue
	if reqs, err := waldurPlan(req.Params, false); err == nil && len(reqs) > 0 {
		attrs = append(attrs, AttrMethod.String(reqs[0].method), AttrPath.String(reqs[0].path))
	}
	if st, ok := res["status"].(int); ok && st != 0 {
		attrs = append(attrs, AttrStatus.Int(st))
	}
	return attrs
}
