package slurm

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/runner"
	"github.com/eventfn/eventfn/runner/timer"
	"github.com/eventfn/eventfn/source"
	"github.com/eventfn/eventfn/waldur"
)

// stoppedClock is a timer clock whose waits never end: only the at_start
// tick comes.
type stoppedClock struct{}

func (stoppedClock) Now() time.Time { return time.Now() }
func (stoppedClock) After(time.Duration) (<-chan time.Time, func()) {
	return make(chan time.Time), func() {}
}

// firstTick runs a timer source until its first tick has been taken.
type firstTick struct{ *timer.Source }

func (f firstTick) Run(ctx context.Context, deliver runner.Deliver) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	return f.Source.Run(ctx, func(ctx context.Context, m *runner.Message) error {
		defer cancel()
		return deliver(ctx, m)
	})
}

// TestReconcilePicksUpAnOrderLeftExecuting: an order is executing in
// Waldur's API and no message about it ever comes (Waldur's queue dropped
// it). The reconciliation at start (reconcile.yaml, the at_start tick of
// the reconcile timer) lists it, emits its order event, and the order rule
// provisions it in the real slurmdbd and marks it done.
func TestReconcilePicksUpAnOrderLeftExecuting(t *testing.T) {
	s := newSite(t)
	a := s.newAllocation()
	order := s.waldur.AddOrder(waldur.Order{
		Type: "Create", State: waldur.OrderExecuting, OfferingUUID: s.offering, ProjectUUID: a.project,
		ResourceUUID: a.resource.UUID, MarketplaceResourceUUID: a.resource.UUID, Limits: map[string]any{"cpu": 10, "mem": 2},
	})
	done := s.waldur.AddOrder(waldur.Order{Type: "Create", State: waldur.OrderDone, OfferingUUID: s.offering})

	// Waldur's order list (waldurtest serves single orders): the seeded
	// orders, filtered by offering and state as Waldur filters them.
	target, _ := url.Parse(s.waldur.front.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var listed []url.Values
	api := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/api/marketplace-orders/" {
			proxy.ServeHTTP(rw, r)
			return
		}
		q := r.URL.Query()
		listed = append(listed, q)
		out := []any{}
		for _, id := range []string{order.UUID, done.UUID} {
			o, _ := s.waldur.Order(id)
			if o.OfferingUUID == q.Get("offering_uuid") && slices.Contains(q["state"], o.State) {
				out = append(out, o)
			}
		}
		writeJSON(rw, http.StatusOK, out)
	}))
	defer api.Close()

	rs := s.runner.Rules()
	rs.Vars["offerings"] = []any{s.offering}
	client, err := waldur.New(api.URL+"/api/", s.waldur.token)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	entry := s.cfg.Sources[slices.IndexFunc(s.cfg.Sources, func(e *source.Entry) bool { return e.Name == "reconcile" })]
	tick, err := timer.New(entry.Name, entry.Settings.(*timer.Settings).Timer, timer.Deps{Clock: stoppedClock{}, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	reg := actions.Standard(actions.Options{Logger: logger, Slurm: s.cfg.Slurm, Waldur: actions.WaldurClient(client)})
	r := runner.New(runner.Config{Rules: rs, Actions: reg, Logger: logger, Concurrency: 4,
		Sources: []runner.Source{firstTick{tick}}})
	// Run returns once the tick's plan and the plans of the events it
	// emitted have finished.
	if err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}

	if len(listed) != 1 || listed[0].Get("offering_uuid") != s.offering ||
		!slices.Equal(listed[0]["state"], []string{"pending-provider", "executing"}) {
		t.Fatalf("order list requests: %v", listed)
	}
	if o, _ := s.waldur.Order(order.UUID); o.State != waldur.OrderDone {
		t.Fatalf("order left executing is %s after reconciliation, want done", o.State)
	}
	s.checkAssocs([]assoc{
		{Account: a.alloc, Parent: a.proj, GrpTRESMins: "cpu=600000,mem=120G", QOS: "normal"},
		{Account: a.alloc, User: a.userA, QOS: "normal"},
		{Account: a.alloc, User: a.userB, QOS: "normal"},
		{Account: a.proj, Parent: a.cust, QOS: "normal"},
		{Account: a.cust, Parent: s.root, QOS: "normal"},
	})
	var m dto.Metric
	_ = r.Metrics().Received.WithLabelValues(runner.EmitSource, "order").Write(&m)
	if got := m.GetCounter().GetValue(); got != 1 {
		t.Errorf("emitted order events received: %v, want 1 (the done order is not listed)", got)
	}
}
