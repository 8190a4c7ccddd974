package actions

import (
	"context"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/eventfn/eventfn/waldur"
	"github.com/eventfn/eventfn/waldur/waldurtest"
)

func newWaldurAction(t *testing.T) (*Waldur, *waldurtest.Server) {
	t.Helper()
	srv := waldurtest.NewServer("test-token")
	t.Cleanup(srv.Close)
	c, err := waldur.New(srv.URL, "test-token")
	if err != nil {
		t.Fatal(err)
	}
	return &Waldur{Client: WaldurClient(c)}, srv
}

func TestWaldurAgentCalls(t *testing.T) {
	w, srv := newWaldurAction(t)
	res := srv.AddResource(waldur.ProviderResource{Name: "alloc", Slug: "alloc-1", ProjectSlug: "proj", CustomerSlug: "cust"},
		waldur.TeamMember{UUID: waldurtest.NewUUID(), Username: "alice", OfferingUserUsername: "alice01"})
	order := srv.AddOrder(waldur.Order{ResourceUUID: res.UUID, MarketplaceResourceUUID: res.UUID, Limits: map[string]any{"cpu": 10}})
	order2 := srv.AddOrder(waldur.Order{State: waldur.OrderExecuting})
	ctx := context.Background()
	step := func(params map[string]any) Result {
		t.Helper()
		r, err := w.Run(ctx, Request{Params: params})
		if err != nil {
			t.Fatalf("%v: %v", params, err)
		}
		return r
	}

	got := step(map[string]any{"path": "marketplace-orders/" + order.UUID + "/"})
	if got["status"] != 200 || got["json"].(map[string]any)["state"] != "pending-provider" {
		t.Fatalf("fetch order: %v", got)
	}
	step(map[string]any{"method": "POST", "path": "marketplace-orders/" + order.UUID + "/approve_by_provider/"})
	step(map[string]any{"path": "marketplace-provider-resources/" + res.UUID + "/"})
	team := step(map[string]any{"path": "marketplace-provider-resources/" + res.UUID + "/team/"})
	if team["json"].([]any)[0].(map[string]any)["offering_user_username"] != "alice01" {
		t.Errorf("team: %v", team)
	}
	step(map[string]any{"path": "marketplace-provider-resources/" + res.UUID + "/set_backend_id/", "body": map[string]any{"backend_id": "hpc_alloc_1"}})
	step(map[string]any{"path": "marketplace-provider-resources/" + res.UUID + "/set_limits/", "body": map[string]any{"limits": map[string]any{"cpu": 10}}})
	step(map[string]any{"method": "post", "path": "marketplace-orders/" + order.UUID + "/set_state_done/"})
	step(map[string]any{"path": "marketplace-orders/" + order2.UUID + "/set_state_erred/",
		"body": map[string]any{"error_message": "boom", "error_traceback": "trace"}})

	if o, _ := srv.Order(order.UUID); o.State != waldur.OrderDone {
		t.Errorf("order state %s", o.State)
	}
	if o, _ := srv.Order(order2.UUID); o.State != waldur.OrderErred || o.ErrorMessage != "boom" || o.ErrorTraceback != "trace" {
		t.Errorf("order2 = %+v", o)
	}
	if r, _ := srv.Resource(res.UUID); r.BackendID != "hpc_alloc_1" || r.Limits["cpu"] != float64(10) {
		t.Errorf("resource = %+v", r)
	}
	var paths []string
	for _, c := range srv.Calls() {
		paths = append(paths, c.Method+" "+strings.TrimPrefix(c.Path, "/api/"))
		if c.Header.Get("Authorization") != "Token test-token" {
			t.Errorf("%s: authorization %q", c.Path, c.Header.Get("Authorization"))
		}
	}
	want := []string{
		"GET marketplace-orders/" + order.UUID + "/",
		"POST marketplace-orders/" + order.UUID + "/approve_by_provider/",
		"GET marketplace-provider-resources/" + res.UUID + "/",
		"GET marketplace-provider-resources/" + res.UUID + "/team/",
		"POST marketplace-provider-resources/" + res.UUID + "/set_backend_id/",
		"POST marketplace-provider-resources/" + res.UUID + "/set_limits/",
		"POST marketplace-orders/" + order.UUID + "/set_state_done/",
		"POST marketplace-orders/" + order2.UUID + "/set_state_erred/",
	}
	if !reflect.DeepEqual(paths, want) {
		t.Errorf("calls:\n got  %q\n want %q", paths, want)
	}
}

func TestWaldurErrors(t *testing.T) {
	w, srv := newWaldurAction(t)
	ctx := context.Background()
	order := srv.AddOrder(waldur.Order{State: waldur.OrderDone})
	path := "marketplace-orders/" + order.UUID + "/set_state_done/"

	res, err := w.Run(ctx, Request{Params: map[string]any{"method": "POST", "path": path}})
	if err == nil || Retryable(err) || res["status"] != http.StatusConflict {
		t.Errorf("409: err %v, res %v", err, res)
	}
	if _, err := w.Run(ctx, Request{Params: map[string]any{"method": "POST", "path": path, "ok_status": []any{409}}}); err != nil {
		t.Errorf("409 listed in ok_status: %v", err)
	}
	srv.FailNext(path, http.StatusServiceUnavailable, 1)
	if _, err := w.Run(ctx, Request{Params: map[string]any{"method": "POST", "path": path, "ok_status": 409}}); err == nil || !Retryable(err) {
		t.Errorf("503 must be retryable: %v", err)
	}
	if _, err := w.Run(ctx, Request{Params: map[string]any{"path": "marketplace-orders/" + waldurtest.NewUUID() + "/"}}); err == nil || Retryable(err) {
		t.Errorf("404 must be permanent: %v", err)
	}
	srv.Reset()
	for _, p := range []string{"../admin/", "marketplace-orders/../../x/", "orders/a b/", "orders/x?y=1", "orders/%2e%2e/", "https://evil/api/", "", "orders/x\n/"} {
		_, err := w.Run(ctx, Request{Params: map[string]any{"path": p}})
		if err == nil || Retryable(err) || !strings.Contains(err.Error(), "path") {
			t.Errorf("path %q: want a permanent path error, got %v", p, err)
		}
	}
	for _, p := range []map[string]any{
		{"path": "x/", "method": "TRACE"},
		{"path": "x/", "batch": []any{}},
		{"batch": []any{"x/"}},
		{"batch": []any{map[string]any{"path": "x/", "bogus": 1}}},
		{"path": "x/", "query": "a=b"},
		{"path": "x/", "ok_status": "many"},
	} {
		if _, err := w.Run(ctx, Request{Params: p}); err == nil || Retryable(err) {
			t.Errorf("%v: want a permanent error, got %v", p, err)
		}
	}
	if len(srv.Calls()) != 0 {
		t.Errorf("refused requests were sent: %v", srv.Calls())
	}
	if _, err := (&Waldur{}).Run(ctx, Request{Params: map[string]any{"path": "x/"}}); err == nil || !strings.Contains(err.Error(), "waldur.api_url") {
		t.Errorf("no client: %v", err)
	}
}

func TestWaldurQueryAndBatch(t *testing.T) {
	w, srv := newWaldurAction(t)
	ctx := context.Background()
	req1, req2 := srv.AddBackendResourceRequest(), srv.AddBackendResourceRequest()
	res, err := w.Run(ctx, Request{Params: map[string]any{
		"method": "POST",
		"query":  map[string]any{"state": []any{"OK", "Erred"}, "page_size": 200, "skip": nil},
		"batch": []any{
			map[string]any{"path": "backend-resource-requests/" + req1 + "/start_processing/"},
			map[string]any{"path": "backend-resource-requests/" + req2 + "/start_processing/", "query": map[string]any{"x": true}},
			map[string]any{"path": "backend-resource-requests/" + req1 + "/set_done/"},
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if rs := res["results"].([]any); len(rs) != 3 || res["status"] != 200 {
		t.Errorf("res = %v", res)
	}
	calls := srv.Calls()
	if len(calls) != 3 || calls[0].Method != "POST" || !reflect.DeepEqual(calls[0].Query, url.Values{"state": {"OK", "Erred"}, "page_size": {"200"}}) ||
		!reflect.DeepEqual(calls[1].Query, url.Values{"x": {"true"}}) {
		t.Errorf("calls = %+v", calls)
	}
	if r, _ := srv.BackendResourceRequest(req1); r.State != waldurtest.RequestDone {
		t.Errorf("request 1: %+v", r)
	}
	// a batch stops at the first failure, with the results so far
	srv.Reset()
	res, err = w.Run(ctx, Request{Params: map[string]any{"method": "POST", "batch": []any{
		map[string]any{"path": "backend-resource-requests/" + req2 + "/set_done/"},
		map[string]any{"path": "backend-resource-requests/" + req2 + "/set_done/"},
		map[string]any{"path": "backend-resource-requests/" + req1 + "/set_erred/"},
	}}})
	if err == nil || len(res["results"].([]any)) != 2 || len(srv.Calls()) != 2 {
		t.Errorf("err %v, res %v, calls %d", err, res, len(srv.Calls()))
	}
	// an empty batch calls nothing
	srv.Reset()
	if res, err := w.Run(ctx, Request{Params: map[string]any{"batch": []any{}}}); err != nil || len(res["results"].([]any)) != 0 || len(srv.Calls()) != 0 {
		t.Errorf("empty batch: %v %v", res, err)
	}
}
