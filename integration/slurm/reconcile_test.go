package slurm

import (
	"slices"
	"testing"
	"time"

	"github.com/eventfn/eventfn/internal/brokertest"
	"github.com/eventfn/eventfn/waldur"
)

// TestReconcilePicksUpAnOrderLeftExecuting: an order is executing in
// Waldur's API and no message about it ever comes (Waldur's queue dropped
// it). `eventfn run` with the example's reconciliation (reconcile.yaml, the
// at_start tick of the reconcile timer) lists it, emits its order event,
// and the order rule provisions it in the real slurmdbd and marks it done;
// an order already done is not listed.
func TestReconcilePicksUpAnOrderLeftExecuting(t *testing.T) {
	s := newSite(t)
	a := s.newAllocation()
	order := s.waldur.AddOrder(waldur.Order{
		Type: "Create", State: waldur.OrderExecuting, OfferingUUID: s.offering, ProjectUUID: a.project,
		ResourceUUID: a.resource.UUID, MarketplaceResourceUUID: a.resource.UUID, Limits: map[string]any{"cpu": 10, "mem": 2},
	})
	s.waldur.AddOrder(waldur.Order{Type: "Create", State: waldur.OrderDone, OfferingUUID: s.offering})
	s.reconcile = true
	s.proc = s.startProcess(4)

	brokertest.WaitFor(t, 2*time.Minute, "the order left executing done", func() bool {
		o, _ := s.waldur.Order(order.UUID)
		return o.State == waldur.OrderDone
	})
	s.checkAssocs([]assoc{
		{Account: a.alloc, Parent: a.proj, GrpTRESMins: "cpu=600000,mem=120G", QOS: "normal"},
		{Account: a.alloc, User: a.userA, QOS: "normal"},
		{Account: a.alloc, User: a.userB, QOS: "normal"},
		{Account: a.proj, Parent: a.cust, QOS: "normal"},
		{Account: a.cust, Parent: s.root, QOS: "normal"},
	})
	calls := s.waldur.takeCalls()
	list := "GET marketplace-orders/?" + q("offering_uuid", s.offering, "state", "pending-provider", "state", "executing", "page_size", "300")
	if n := len(slices.DeleteFunc(slices.Clone(calls), func(c string) bool { return c != list })); n != 1 {
		t.Errorf("%d order list requests (%s), want 1: %q", n, list, calls)
	}
	if got := s.proc.metric("eventfn_messages_received_total", "source", "emit", "type", "order"); got != 1 {
		t.Errorf("emitted order events received: %v, want 1 (the done order is not listed)", got)
	}
}
