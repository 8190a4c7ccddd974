package waldur_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventfn/eventfn/waldur"
	"github.com/eventfn/eventfn/waldur/waldurtest"
)

const token = "s3cr3t-t0ken-value"

func setup(t *testing.T) (*waldurtest.Server, *waldur.Client) {
	t.Helper()
	srv := waldurtest.NewServer(token)
	t.Cleanup(srv.Close)
	c, err := waldur.New(srv.URL, token, waldur.WithHTTPClient(srv.Client()), waldur.WithVersion("1.2.3"))
	if err != nil {
		t.Fatal(err)
	}
	return srv, c
}

func lastCall(t *testing.T, srv *waldurtest.Server) waldurtest.Call {
	t.Helper()
	calls := srv.Calls()
	if len(calls) == 0 {
		t.Fatal("no calls recorded")
	}
	return calls[len(calls)-1]
}

func apiStatus(err error) int {
	if e, ok := errors.AsType[*waldur.APIError](err); ok {
		return e.Status
	}
	return 0
}

func TestNewNormalizesURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://w.example":              "https://w.example/api/",
		"https://w.example/":             "https://w.example/api/",
		"https://w.example/api":          "https://w.example/api/",
		"https://w.example/api/":         "https://w.example/api/",
		"https://w.example/api//":        "https://w.example/api/",
		"http://w.example:8080/waldur":   "http://w.example:8080/waldur/api/",
		"https://w.example/api?x=1#frag": "https://w.example/api/",
	} {
		c, err := waldur.New(in, token, waldur.WithInsecureHTTP(true))
		if err != nil {
			t.Errorf("New(%q): %v", in, err)
			continue
		}
		if got := c.BaseURL(); got != want {
			t.Errorf("New(%q).BaseURL() = %q, want %q", in, got, want)
		}
	}
	for _, bad := range []string{"", "w.example", "ftp://w.example", "https://", "://x"} {
		if _, err := waldur.New(bad, token); err == nil {
			t.Errorf("New(%q) succeeded", bad)
		}
	}
	for _, tok := range []string{"", "a b", "a\nb"} {
		_, err := waldur.New("https://w.example", tok)
		if err == nil {
			t.Errorf("New with token %q succeeded", tok)
		} else if tok != "" && strings.Contains(err.Error(), tok) {
			t.Errorf("error leaks token: %v", err)
		}
	}
}

func TestHeaders(t *testing.T) {
	srv, c := setup(t)
	ctx := t.Context()
	o := srv.AddOrder(waldur.Order{})

	if _, err := c.GetOrder(ctx, o.UUID); err != nil {
		t.Fatal(err)
	}
	get := lastCall(t, srv)
	if h := get.Header.Get("Authorization"); h != "Token "+token {
		t.Errorf("Authorization = %q", h)
	}
	if h := get.Header.Get("Accept"); h != "application/json" {
		t.Errorf("Accept = %q", h)
	}
	if h := get.Header.Get("User-Agent"); h != "eventfn/1.2.3" {
		t.Errorf("User-Agent = %q", h)
	}
	if h := get.Header.Get("Content-Type"); h != "" {
		t.Errorf("GET without body has Content-Type %q", h)
	}

	if err := c.ApproveOrderByProvider(ctx, o.UUID); err != nil {
		t.Fatal(err)
	}
	if err := c.SetOrderStateErred(ctx, o.UUID, "boom", "trace"); err != nil {
		t.Fatal(err)
	}
	if h := lastCall(t, srv).Header.Get("Content-Type"); h != "application/json" {
		t.Errorf("POST with body has Content-Type %q", h)
	}
}

func TestDo(t *testing.T) {
	srv, c := setup(t)
	ctx := t.Context()
	r := srv.AddResource(waldur.ProviderResource{Name: "alloc"})

	resp, err := c.Do(ctx, http.MethodGet, "/marketplace-provider-resources/"+r.UUID+"/", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != http.StatusOK || resp.JSON.(map[string]any)["name"] != "alloc" {
		t.Fatalf("Do = %d %v", resp.Status, resp.JSON)
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Errorf("Header not kept: %v", resp.Header)
	}

	resp, err = c.Do(ctx, http.MethodGet, "marketplace-orders/"+subHex+"/", nil, nil)
	if apiStatus(err) != http.StatusNotFound || resp == nil || resp.Status != http.StatusNotFound {
		t.Fatalf("Do on missing order = %v, %v", resp, err)
	}
	var apiErr *waldur.APIError
	if !errors.As(err, &apiErr) || apiErr.Method != http.MethodGet ||
		apiErr.Path != "/api/marketplace-orders/"+subHex+"/" || !strings.Contains(apiErr.Body, "Not found") {
		t.Fatalf("APIError = %+v", apiErr)
	}

	for _, p := range []string{"../admin/", "marketplace-orders/../../x", "a/./b", "x?y=1", "x#f", "a\\b"} {
		if _, err := c.Do(ctx, http.MethodGet, p, nil, nil); err == nil {
			t.Errorf("Do(%q) accepted", p)
		}
	}
	if n := len(srv.Calls()); n != 2 {
		t.Errorf("%d calls recorded, want 2 (unsafe paths must not be sent)", n)
	}
}

func TestOrders(t *testing.T) {
	srv, c := setup(t)
	ctx := t.Context()
	res := waldurtest.NewUUID()
	o := srv.AddOrder(waldur.Order{MarketplaceResourceUUID: res, Limits: map[string]any{"cpu": 10}})

	got, err := c.GetOrder(ctx, o.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if got.UUID != o.UUID || got.State != waldur.OrderPendingProvider || got.Type != "Create" ||
		got.MarketplaceResourceUUID != res || got.Limits["cpu"] != float64(10) || got.Raw["uuid"] != o.UUID {
		t.Fatalf("GetOrder = %+v", got)
	}

	// Done is only allowed from executing: 409, not retryable.
	err = c.SetOrderStateDone(ctx, o.UUID)
	if apiStatus(err) != http.StatusConflict || waldur.Retryable(err) {
		t.Fatalf("SetOrderStateDone on pending order: %v", err)
	}
	if err := c.ApproveOrderByProvider(ctx, o.UUID); err != nil {
		t.Fatal(err)
	}
	if s, _ := srv.Order(o.UUID); s.State != waldur.OrderExecuting {
		t.Fatalf("after approve: %s", s.State)
	}
	if err := c.SetOrderStateDone(ctx, o.UUID); err != nil {
		t.Fatal(err)
	}
	if s, _ := srv.Order(o.UUID); s.State != waldur.OrderDone {
		t.Fatalf("after done: %s", s.State)
	}

	erred := srv.AddOrder(waldur.Order{State: waldur.OrderExecuting})
	if err := c.SetOrderStateErred(ctx, erred.UUID, "sacctmgr failed", "line 1"); err != nil {
		t.Fatal(err)
	}
	s, _ := srv.Order(erred.UUID)
	if s.State != waldur.OrderErred || s.ErrorMessage != "sacctmgr failed" || s.ErrorTraceback != "line 1" {
		t.Fatalf("after erred: %+v", s)
	}
	body := lastCall(t, srv).Body.(map[string]any)
	if body["error_message"] != "sacctmgr failed" || body["error_traceback"] != "line 1" {
		t.Fatalf("set_state_erred body = %v", body)
	}

	rejected := srv.AddOrder(waldur.Order{})
	if err := c.RejectOrderByProvider(ctx, rejected.UUID); err != nil {
		t.Fatal(err)
	}
	if s, _ := srv.Order(rejected.UUID); s.State != waldur.OrderRejected {
		t.Fatalf("after reject: %s", s.State)
	}
	if lastCall(t, srv).Path != "/api/marketplace-orders/"+rejected.UUID+"/reject_by_provider/" {
		t.Fatalf("reject path = %s", lastCall(t, srv).Path)
	}
}

func TestResources(t *testing.T) {
	srv, c := setup(t)
	ctx := t.Context()
	team := []waldur.TeamMember{
		{UUID: waldurtest.NewUUID(), Username: "alice", Role: "PROJECT.MANAGER", OfferingUserUsername: "alice01"},
		{UUID: waldurtest.NewUUID(), Username: "bob", Role: "PROJECT.MEMBER"},
	}
	r := srv.AddResource(waldur.ProviderResource{Name: "alloc", ProjectSlug: "proj"}, team...)

	got, err := c.GetProviderResource(ctx, r.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "alloc" || got.ProjectSlug != "proj" || got.State != "OK" || got.Raw["name"] != "alloc" {
		t.Fatalf("GetProviderResource = %+v", got)
	}
	gotTeam, err := c.GetResourceTeam(ctx, r.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if len(gotTeam) != 2 || gotTeam[0] != team[0] || gotTeam[1] != team[1] {
		t.Fatalf("GetResourceTeam = %+v", gotTeam)
	}
	if lastCall(t, srv).Path != "/api/marketplace-provider-resources/"+r.UUID+"/team/" {
		t.Fatalf("team path = %s", lastCall(t, srv).Path)
	}

	if err := c.SetResourceBackendID(ctx, r.UUID, "hpc_alloc"); err != nil {
		t.Fatal(err)
	}
	if err := c.SetResourceLimits(ctx, r.UUID, map[string]any{"cpu": 100, "mem": 2048}); err != nil {
		t.Fatal(err)
	}
	s, _ := srv.Resource(r.UUID)
	if s.BackendID != "hpc_alloc" || s.Limits["cpu"] != float64(100) || s.Limits["mem"] != float64(2048) {
		t.Fatalf("resource after updates: %+v", s)
	}
	if _, err := c.GetProviderResource(ctx, waldurtest.NewUUID()); apiStatus(err) != http.StatusNotFound {
		t.Fatalf("missing resource: %v", err)
	}
}

func TestBackendResourceRequests(t *testing.T) {
	srv, c := setup(t)
	ctx := t.Context()

	ok := srv.AddBackendResourceRequest()
	if err := c.BackendResourceRequestSetDone(ctx, ok); apiStatus(err) != http.StatusConflict {
		t.Fatalf("set_done before start: %v", err)
	}
	if err := c.BackendResourceRequestStartProcessing(ctx, ok); err != nil {
		t.Fatal(err)
	}
	if err := c.BackendResourceRequestSetDone(ctx, ok); err != nil {
		t.Fatal(err)
	}
	if r, _ := srv.BackendResourceRequest(ok); r.State != waldurtest.RequestDone {
		t.Fatalf("state = %s", r.State)
	}

	bad := srv.AddBackendResourceRequest()
	if err := c.BackendResourceRequestStartProcessing(ctx, bad); err != nil {
		t.Fatal(err)
	}
	if err := c.BackendResourceRequestSetErred(ctx, bad, "cluster unreachable"); err != nil {
		t.Fatal(err)
	}
	if r, _ := srv.BackendResourceRequest(bad); r.State != waldurtest.RequestErred || r.ErrorMessage != "cluster unreachable" {
		t.Fatalf("request = %+v", r)
	}
	if p := lastCall(t, srv).Path; p != "/api/backend-resource-requests/"+bad+"/set_erred/" {
		t.Fatalf("path = %s", p)
	}
}

func TestInvalidUUIDsNeverSent(t *testing.T) {
	srv, c := setup(t)
	ctx := t.Context()
	for _, id := range []string{"", "../../users", subHex[:31], subHex + "/../x", "%2e%2e", subHex[:31] + "?"} {
		checks := map[string]error{
			"GetOrder":           func() error { _, err := c.GetOrder(ctx, id); return err }(),
			"Approve":            c.ApproveOrderByProvider(ctx, id),
			"SetBackendID":       c.SetResourceBackendID(ctx, id, "x"),
			"Team":               func() error { _, err := c.GetResourceTeam(ctx, id); return err }(),
			"StartProcessing":    c.BackendResourceRequestStartProcessing(ctx, id),
			"Identity":           func() error { _, err := c.GetOrCreateAgentIdentity(ctx, id, "", "1"); return err }(),
			"Subscription":       func() error { _, err := c.RegisterEventSubscription(ctx, id, "order"); return err }(),
			"CreateQueue(sub)":   func() error { _, err := c.CreateQueue(ctx, id, offHex, "order"); return err }(),
			"CreateQueue(offer)": func() error { _, err := c.CreateQueue(ctx, subHex, id, "order"); return err }(),
			"RegisterQueue":      func() error { _, err := c.RegisterQueue(ctx, id, nil); return err }(),
		}
		for name, err := range checks {
			if !errors.Is(err, waldur.ErrInvalidUUID) || waldur.Retryable(err) {
				t.Errorf("%s(%q) = %v, want ErrInvalidUUID", name, id, err)
			}
		}
	}
	for _, typ := range []string{"", "../x", "Order", "a/b"} {
		if _, err := c.RegisterEventSubscription(ctx, subHex, typ); !errors.Is(err, waldur.ErrInvalidObjectType) {
			t.Errorf("RegisterEventSubscription(type %q) = %v", typ, err)
		}
	}
	if calls := srv.Calls(); len(calls) != 0 {
		t.Fatalf("invalid input reached the server: %+v", calls)
	}
}

func TestRegistrationPerType(t *testing.T) {
	srv, c := setup(t)
	ctx := t.Context()
	offering := "11112222-3333-4444-5555-666677778888"
	offHexLocal := waldur.NormalizeUUID(offering)

	id, err := c.GetOrCreateAgentIdentity(ctx, offering, "", "0.1.0",
		waldur.WithDependencies(waldur.Dependency{Package: "eventfn", Version: "0.1.0"}),
		waldur.WithLastRestarted(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)))
	if err != nil {
		t.Fatal(err)
	}
	if !id.Created || id.Name != "agent-"+offHexLocal || id.Offering != offHexLocal || id.Version != "0.1.0" ||
		id.LastRestarted != "2026-01-02T03:04:05Z" || len(id.Dependencies) != 1 {
		t.Fatalf("identity = %+v", id)
	}
	// A second identity whose name contains the first must not be picked
	// (the server's name filter is a substring match).
	if _, err := c.GetOrCreateAgentIdentity(ctx, offering, id.Name+"-other", "0.1.0"); err != nil {
		t.Fatal(err)
	}
	srv.Reset()
	again, err := c.GetOrCreateAgentIdentity(ctx, offering, "", "0.2.0")
	if err != nil {
		t.Fatal(err)
	}
	if again.Created || again.UUID != id.UUID || again.Version != "0.2.0" {
		t.Fatalf("identity again = %+v", again)
	}
	calls := srv.Calls()
	if len(calls) != 2 || calls[0].Method != http.MethodGet || calls[0].Query.Get("name") != id.Name ||
		calls[1].Method != http.MethodPut || calls[1].Path != "/api/marketplace-site-agent-identities/"+id.UUID+"/" {
		t.Fatalf("identity update calls = %+v", calls)
	}
	if n := len(srv.Identities()); n != 2 {
		t.Fatalf("%d identities", n)
	}

	srv.Reset()
	sub, err := c.RegisterEventSubscription(ctx, id.UUID, waldur.TypeOrder)
	if err != nil {
		t.Fatal(err)
	}
	sub2, err := c.RegisterEventSubscription(ctx, id.UUID, waldur.TypeOrder)
	if err != nil {
		t.Fatal(err)
	}
	if !sub.Created || sub2.Created || sub.UUID != sub2.UUID || sub.UserUUID != srv.UserUUID {
		t.Fatalf("subscriptions = %+v, %+v", sub, sub2)
	}
	calls = srv.Calls()
	if calls[0].Status != http.StatusCreated || calls[1].Status != http.StatusOK ||
		calls[0].Body.(map[string]any)["observable_object_type"] != "order" {
		t.Fatalf("subscription calls = %+v", calls)
	}

	q, err := c.CreateQueue(ctx, sub.UUID, offering, waldur.TypeOrder)
	if err != nil {
		t.Fatal(err)
	}
	q2, err := c.CreateQueue(ctx, sub.UUID, offering, waldur.TypeOrder)
	if err != nil {
		t.Fatal(err)
	}
	wantQueue := waldur.QueueName(sub.UUID, offering, waldur.TypeOrder)
	if !q.Created || q2.Created || q.QueueName != wantQueue || q2.QueueName != wantQueue || q.VHost != srv.UserUUID {
		t.Fatalf("queues = %+v, %+v", q, q2)
	}
	if body := lastCall(t, srv).Body.(map[string]any); body["offering_uuid"] != offHexLocal || body["object_type"] != "order" {
		t.Fatalf("create_queue body = %v", body)
	}
	if typ, ok := waldur.TypeFromQueue(q.QueueName); !ok || typ != waldur.TypeOrder {
		t.Fatalf("TypeFromQueue(%q) = %q, %v", q.QueueName, typ, ok)
	}
	user, vhost := waldur.BrokerLogin(sub.UUID, sub.UserUUID)
	if user != waldur.NormalizeUUID(sub.UUID) || vhost != q.VHost {
		t.Fatalf("BrokerLogin = %q, %q", user, vhost)
	}

	// A queue for a type the subscription does not observe is refused.
	if _, err := c.CreateQueue(ctx, sub.UUID, offering, waldur.TypeResource); apiStatus(err) != http.StatusBadRequest {
		t.Fatalf("queue for unobserved type: %v", err)
	}
}

func TestRegisterQueue(t *testing.T) {
	srv, c := setup(t)
	ctx := t.Context()
	id, err := c.GetOrCreateAgentIdentity(ctx, offHex, "agent", "1")
	if err != nil {
		t.Fatal(err)
	}
	q, err := c.RegisterQueue(ctx, id.UUID, []string{waldur.TypeOrder, waldur.TypeResource})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(q.QueueName, "consumer_") || q.VHost != srv.UserUUID || q.RMQUsername == "" ||
		len(q.ObservableObjectTypes) != 2 {
		t.Fatalf("RegisterQueue = %+v", q)
	}
	all, err := c.RegisterQueue(ctx, id.UUID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if all.QueueName != q.QueueName || len(all.ObservableObjectTypes) != len(waldur.ObjectTypes()) {
		t.Fatalf("RegisterQueue(all) = %+v", all)
	}
	if body := lastCall(t, srv).Body.(map[string]any); fmt.Sprint(body["object_types"]) != "[]" {
		t.Fatalf("empty object_types sent as %v", body["object_types"])
	}
}

func TestUnauthorized(t *testing.T) {
	srv, _ := setup(t)
	c, err := waldur.New(srv.URL+"/api", "wrong-"+token, waldur.WithHTTPClient(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.GetOrder(t.Context(), subHex)
	if apiStatus(err) != http.StatusUnauthorized || waldur.Retryable(err) {
		t.Fatalf("GetOrder with bad token: %v", err)
	}
	if strings.Contains(err.Error(), token) {
		t.Fatalf("error leaks token: %v", err)
	}
}

func TestRetryOnInjectedFailure(t *testing.T) {
	srv, c := setup(t)
	ctx := t.Context()
	o := srv.AddOrder(waldur.Order{State: waldur.OrderExecuting})
	srv.FailNext("marketplace-orders/"+o.UUID+"/set_state_done/", http.StatusServiceUnavailable, 2)

	attempts := 0
	var err error
	for attempts < 5 {
		attempts++
		if err = c.SetOrderStateDone(ctx, o.UUID); err == nil || !waldur.Retryable(err) {
			break
		}
	}
	if err != nil || attempts != 3 {
		t.Fatalf("after %d attempts: %v", attempts, err)
	}
	statuses := []int{}
	for _, call := range srv.Calls() {
		statuses = append(statuses, call.Status)
	}
	if fmt.Sprint(statuses) != "[503 503 200]" {
		t.Fatalf("statuses = %v", statuses)
	}
	if s, _ := srv.Order(o.UUID); s.State != waldur.OrderDone {
		t.Fatalf("state = %s", s.State)
	}

	srv.FailNext("/api/marketplace-orders/"+o.UUID+"/", http.StatusTooManyRequests, 1)
	if _, err := c.GetOrder(ctx, o.UUID); !waldur.Retryable(err) {
		t.Fatalf("429 not retryable: %v", err)
	}
}

func TestRetryable(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"500", &waldur.APIError{Status: 500}, true},
		{"502 wrapped", fmt.Errorf("x: %w", &waldur.APIError{Status: 502}), true},
		{"503", &waldur.APIError{Status: 503}, true},
		{"429", &waldur.APIError{Status: 429}, true},
		{"400", &waldur.APIError{Status: 400}, false},
		{"401", &waldur.APIError{Status: 401}, false},
		{"404", &waldur.APIError{Status: 404}, false},
		{"409", &waldur.APIError{Status: 409}, false},
		{"canceled", context.Canceled, false},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), false},
		{"invalid uuid", waldur.ErrInvalidUUID, false},
		{"plain", errors.New("boom"), false},
	}
	for _, tt := range tests {
		if got := waldur.Retryable(tt.err); got != tt.want {
			t.Errorf("Retryable(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestRetryableTransport(t *testing.T) {
	ctx := t.Context()

	// Connection refused.
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	c, _ := waldur.New(closed.URL, token)
	_, err := c.GetOrder(ctx, subHex)
	if err == nil || !waldur.Retryable(err) {
		t.Fatalf("connection refused: %v (retryable %v)", err, waldur.Retryable(err))
	}

	// A server too slow for the HTTP client timeout: retryable. The same
	// server with the caller's context cancelled: not retryable.
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		select {
		case <-release:
		case <-time.After(5 * time.Second):
		}
	}))
	defer slow.Close()
	defer close(release)
	c, _ = waldur.New(slow.URL, token, waldur.WithHTTPClient(&http.Client{Timeout: 50 * time.Millisecond}))
	if _, err := c.GetOrder(ctx, subHex); err == nil || !waldur.Retryable(err) {
		t.Fatalf("client timeout: %v", err)
	}
	c, _ = waldur.New(slow.URL, token)
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := c.GetOrder(cctx, subHex); err == nil || waldur.Retryable(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("context deadline: %v", err)
	}
	cctx, cancel = context.WithCancel(ctx)
	cancel()
	if _, err := c.GetOrder(cctx, subHex); err == nil || waldur.Retryable(err) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %v", err)
	}
}

func TestTokenNeverLeaks(t *testing.T) {
	// A hostile or buggy server echoing the request headers in its error body.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, "bad request from %s %s", r.Header.Get("Authorization"), strings.Repeat("x", 1000))
	}))
	defer echo.Close()
	c, err := waldur.New(echo.URL, token)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.GetOrder(t.Context(), subHex)
	var apiErr *waldur.APIError
	if !errors.As(err, &apiErr) || len(apiErr.Body) > 512 || !strings.Contains(apiErr.Body, "[REDACTED]") {
		t.Fatalf("err = %v", err)
	}

	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("client", "waldur", c)
	outputs := map[string]string{
		"error": err.Error(),
		"%v":    fmt.Sprintf("%v", c),
		"%+v":   fmt.Sprintf("%+v", c),
		"%#v":   fmt.Sprintf("%#v", c),
		"%s":    fmt.Sprintf("%s", c),
		"slog":  logged.String(),
	}
	for name, s := range outputs {
		if strings.Contains(s, token) {
			t.Errorf("%s leaks the token: %s", name, s)
		}
	}
	if !strings.Contains(logged.String(), echo.URL) {
		t.Errorf("slog output lacks the URL: %s", logged.String())
	}
}

// TestTraceContextInjected checks that the W3C trace context of the active
// span reaches Waldur. The span context is built with the otel trace API:
// the SDK (go.opentelemetry.io/otel/sdk/trace) cannot be imported until go.sum
// gains github.com/google/uuid.
func TestTraceContextInjected(t *testing.T) {
	prev := otel.GetTextMapPropagator()
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTextMapPropagator(prev) })

	srv, c := setup(t)
	o := srv.AddOrder(waldur.Order{})
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:     trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		TraceFlags: trace.FlagsSampled,
	})
	ctx := trace.ContextWithSpanContext(t.Context(), sc)
	if _, err := c.GetOrder(ctx, o.UUID); err != nil {
		t.Fatal(err)
	}
	want := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if got := lastCall(t, srv).Header.Get("Traceparent"); got != want {
		t.Fatalf("traceparent = %q, want %q", got, want)
	}

	// Without an active span nothing is injected.
	if _, err := c.GetOrder(t.Context(), o.UUID); err != nil {
		t.Fatal(err)
	}
	if got := lastCall(t, srv).Header.Get("Traceparent"); got != "" {
		t.Fatalf("traceparent without span = %q", got)
	}
}

func TestHTTPAPIURLNeedsInsecureHTTP(t *testing.T) {
	_, err := waldur.New("http://w.example/api/", token)
	if err == nil || !strings.Contains(err.Error(), "insecure_http") {
		t.Fatalf("New(http://w.example) = %v, want a refusal naming insecure_http", err)
	}
	if _, err := waldur.New("http://w.example/api/", token, waldur.WithInsecureHTTP(true)); err != nil {
		t.Fatalf("with insecure_http: %v", err)
	}
	for _, local := range []string{"http://127.0.0.1:8000/api/", "http://localhost/api/", "http://[::1]:80/"} {
		if _, err := waldur.New(local, token); err != nil {
			t.Errorf("New(%q) (loopback): %v", local, err)
		}
	}
}

func TestRedirectNeverCarriesTokenToAnotherSchemeOrHost(t *testing.T) {
	var got []string
	var mu sync.Mutex
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Host+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{}`))
	}))
	defer target.Close()
	// Same listener, other host name: a change of host.
	other := strings.Replace(target.URL, "127.0.0.1", "localhost", 1)
	tlsSrv := httptest.NewTLSServer(http.RedirectHandler(target.URL+"/api/x/", http.StatusFound))
	defer tlsSrv.Close()
	plain := httptest.NewServer(http.RedirectHandler(other+"/api/x/", http.StatusFound))
	defer plain.Close()

	for name, c := range map[string]struct {
		base string
		hc   *http.Client
	}{
		"https to http": {tlsSrv.URL, tlsSrv.Client()},
		"another host":  {plain.URL, nil},
	} {
		cl, err := waldur.New(c.base, token, waldur.WithHTTPClient(c.hc))
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		got = nil
		mu.Unlock()
		if _, err := cl.Do(context.Background(), "GET", "x/", nil, nil); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		mu.Lock()
		if len(got) != 1 || strings.Contains(got[0], token) || strings.HasSuffix(got[0], " Token") {
			t.Errorf("%s: the redirect target saw %q, want no Authorization", name, got)
		}
		mu.Unlock()
	}
}

func TestEscapedPathIsSentAsWritten(t *testing.T) {
	var raw string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw = r.URL.EscapedPath()
		w.WriteHeader(204)
	}))
	defer srv.Close()
	c, err := waldur.New(srv.URL, token)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Do(context.Background(), "GET", "users/a%2F..%2Fb/", nil, nil); err != nil {
		t.Fatal(err)
	}
	if raw != "/api/users/a%2F..%2Fb/" {
		t.Errorf("server saw %q, want the escaped segment kept", raw)
	}
	if _, err := c.Do(context.Background(), "GET", "users/%2E%2E/x/", nil, nil); err == nil {
		t.Error("a segment that decodes to .. was sent")
	}
}
