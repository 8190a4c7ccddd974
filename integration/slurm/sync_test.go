package slurm

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eventfn/eventfn/internal/brokertest"
	"github.com/eventfn/eventfn/waldur"
	"github.com/eventfn/eventfn/waldur/waldurtest"
)

// TestOfferingResourcesSync: slurmdbd lost part of its data (one project's
// accounts, one user association of another project's allocation) and the
// service provider asks Waldur for a resync of the offering. Over the
// broker, `eventfn run` makes the missing project and allocation accounts
// again under the resource's backend_id, the emitted resource events put
// back limits and every member, a pending-provider order is handled again,
// and a resource whose project account name is another customer's is set
// erred in Waldur with that account untouched.
func TestOfferingResourcesSync(t *testing.T) {
	s := newProcessSite(t)
	c := "cluster=" + s.env.cluster
	a, b := s.newAllocationIn("", ""), s.newAllocationIn("2", "2")
	s.provision(a)
	s.provision(b)

	// a third resource whose project account name is taken by an account under root (not its customer)
	foreign := s.prefix + "proj3-" + s.sfx
	if _, err := s.env.run("add", "account", foreign, "parent="+s.root, c); err != nil {
		t.Fatal(err)
	}
	lost := s.waldur.addResource(waldur.ProviderResource{Name: "Lost " + s.sfx, Slug: "alloc3-" + s.sfx, State: "OK",
		OfferingUUID: s.offering, ProjectUUID: waldurtest.NewUUID(), ProjectSlug: "proj3-" + s.sfx, CustomerSlug: "uni-" + s.sfx,
		BackendID: s.prefix + "alloc3-" + s.sfx, Limits: map[string]any{"cpu": 1}})

	// the loss: a's project subtree, and user B's association with b's allocation
	if _, err := s.env.run("remove", "account", "where", "name="+a.proj, c); err != nil {
		t.Fatal(err)
	}
	if _, err := s.env.run("remove", "user", "where", "name="+b.userB, "account="+b.alloc, c); err != nil {
		t.Fatal(err)
	}
	pending := s.waldur.AddOrder(waldur.Order{Type: "Create", State: waldur.OrderPendingProvider, OfferingUUID: s.offering,
		ProjectUUID: b.project, ResourceUUID: b.resource.UUID, MarketplaceResourceUUID: b.resource.UUID})
	s.waldur.takeCalls()
	s.sacctmgrCalls()

	resourcePlans := s.proc.metric("eventfn_plans_total", "rule", "resource")
	orderPlans := s.proc.metric("eventfn_plans_total", "rule", "order", "outcome", "success")
	s.mustSucceed("offering_resources_sync", map[string]any{"requested_by_user_uuid": waldurtest.NewUUID()})
	// the emitted events: a resync of a and of b (not of the erred one), and the pending order
	brokertest.WaitFor(t, 2*time.Minute, "the emitted resource and order plans", func() bool {
		return s.proc.metric("eventfn_plans_total", "rule", "resource", "outcome", "success") >= resourcePlans+2 &&
			s.proc.metric("eventfn_plans_total", "rule", "order", "outcome", "success") >= orderPlans+1
	})
	if n := s.proc.metric("eventfn_plans_total", "rule", "resource"); n != resourcePlans+2 {
		t.Errorf("resource plans %v, want %v", n, resourcePlans+2)
	}

	limits := "cpu=600000,mem=120G"
	want := []assoc{
		{Account: a.alloc, Parent: a.proj, GrpTRESMins: limits, QOS: "normal"},
		{Account: a.alloc, User: a.userA, QOS: "normal"},
		{Account: a.alloc, User: a.userB, QOS: "normal"},
		{Account: b.alloc, Parent: b.proj, GrpTRESMins: limits, QOS: "normal"},
		{Account: b.alloc, User: b.userA, QOS: "normal"},
		{Account: b.alloc, User: b.userB, QOS: "normal"},
		{Account: a.proj, Parent: a.cust, QOS: "normal"},
		{Account: b.proj, Parent: b.cust, QOS: "normal"},
		{Account: foreign, Parent: s.root, QOS: "normal"},
		{Account: a.cust, Parent: s.root, QOS: "normal"},
	}
	if got := s.env.assocs(t, s.prefix); !reflect.DeepEqual(got, want) {
		t.Errorf("associations:\n got  %+v\n want %+v", got, want)
	}
	if r, _ := s.waldur.Resource(lost.UUID); r.State != "Erred" {
		t.Errorf("resource whose project account is foreign: %s, want Erred", r.State)
	}
	if o, _ := s.waldur.Order(pending.UUID); o.State != waldur.OrderDone {
		t.Errorf("pending-provider order: %s, want done (approved and handled again)", o.State)
	}

	// the calls of the sync itself, in order, then those of the plans it emitted (in any order)
	calls := s.waldur.takeCalls()
	list := "marketplace-provider-resources/?" + q("offering_uuid", s.offering, "state", "OK", "state", "Erred", "page_size", "300",
		"field", "uuid", "field", "name", "field", "slug", "field", "backend_id", "field", "offering_uuid", "field", "project_uuid",
		"field", "project_slug", "field", "project_name", "field", "customer_slug", "field", "customer_name")
	erred := "POST marketplace-provider-resources/" + lost.UUID + "/set_as_erred/"
	if len(calls) < 2 || calls[0] != "GET "+list || !strings.HasPrefix(calls[1], erred) {
		t.Fatalf("first Waldur calls %q, want the resource list then %s", calls, erred)
	}
	for _, x := range []*allocation{a, b} {
		r := "marketplace-provider-resources/" + x.resource.UUID + "/"
		for _, want := range []string{"GET " + r, "GET " + r + "team/"} {
			if !slices.Contains(calls, want) {
				t.Errorf("no %q in %q", want, calls)
			}
		}
	}
	orders := "GET marketplace-orders/?" + q("offering_uuid", s.offering, "state", "pending-provider", "state", "executing", "page_size", "300")
	po := "marketplace-orders/" + pending.UUID + "/"
	for _, want := range []string{orders, "POST " + po + "approve_by_provider/", "POST " + po + "set_state_done/"} {
		if !slices.Contains(calls, want) {
			t.Errorf("no %q in %q", want, calls)
		}
	}
	if slices.ContainsFunc(calls, func(c string) bool { return c == "GET marketplace-provider-resources/"+lost.UUID+"/" }) {
		t.Errorf("the erred resource was resynced: %q", calls)
	}
	// the recreated accounts were made as a Create makes them: with the Waldur names, read back
	cmds := s.sacctmgrCalls()
	for _, want := range cat(s.addAccount(a.proj, a.cust, "proj-"+s.sfx, a.proj), s.addAccount(a.alloc, a.proj, "Alloc "+s.sfx, a.proj)) {
		if !slices.Contains(cmds, want) {
			t.Errorf("no %q in sacctmgr calls %q", want, cmds)
		}
	}
	if slices.ContainsFunc(cmds, func(c string) bool { return strings.HasPrefix(c, "add account "+s.prefix+"alloc3-") }) {
		t.Errorf("an allocation was made under the foreign project account: %q", cmds)
	}
}
