package slurm

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/eventfn/eventfn/waldur"
)

// TestParallelCreatesAndGrants publishes 20 Create orders and 20 role grants
// at once over the broker to `eventfn run`, with every plan running
// concurrently, and checks every association in slurmdbd: concurrent
// sacctmgr sessions must not lose any.
func TestParallelCreatesAndGrants(t *testing.T) {
	const n = 20
	s := newProcessSiteWith(t, 2*n)
	c := "cluster=" + s.env.cluster

	// n allocations that exist already (made as the rules would), whose projects gain user C
	// (one customer, the projects in one command: fewer slurmdbd writes, one at a time)
	old := make([]*allocation, n)
	var projects []string
	for i := range old {
		a := s.newAllocationIn(fmt.Sprintf("o%02d", i), fmt.Sprintf("o%02d", i))
		s.update(a, func(r *waldur.ProviderResource) { r.State, r.BackendID = "OK", a.alloc })
		old[i], projects = a, append(projects, a.proj)
	}
	args := [][]string{
		{"add", "account", old[0].cust, "parent=" + s.root, c},
		{"add", "account", strings.Join(projects, ","), "parent=" + old[0].cust, c},
	}
	for _, a := range old {
		args = append(args, []string{"add", "account", a.alloc, "parent=" + a.proj, c})
	}
	for _, a := range args {
		if _, err := s.env.run(a...); err != nil {
			t.Fatal(err)
		}
	}
	// n new allocations, in n projects, each with users A and B (the same users everywhere)
	fresh := make([]*allocation, n)
	orders := make([]string, n)
	for i := range fresh {
		a := s.newAllocationIn(fmt.Sprintf("n%02d", i), fmt.Sprintf("n%02d", i))
		o := s.waldur.AddOrder(waldur.Order{Type: "Create", State: waldur.OrderExecuting, OfferingUUID: s.offering, ProjectUUID: a.project,
			ResourceUUID: a.resource.UUID, MarketplaceResourceUUID: a.resource.UUID, Limits: map[string]any{"cpu": i + 1}})
		fresh[i], orders[i] = a, o.UUID
	}
	s.sacctmgrCalls()

	var msgs []message
	for i := range n {
		msgs = append(msgs, message{"order", map[string]any{"order_uuid": orders[i], "order_state": "executing"}},
			message{"user_role", map[string]any{"user_uuid": old[i].userCUUID, "project_uuid": old[i].project,
				"role_name": "PROJECT.MEMBER", "granted": true}})
	}
	if failed := s.proc.deliverAll(msgs); len(failed) != 0 {
		t.Errorf("%d of %d messages failed: %q", len(failed), len(msgs), failed)
	}

	got := s.env.assocs(t, s.prefix)
	has := func(account, user string) bool {
		return slices.ContainsFunc(got, func(a assoc) bool { return a.Account == account && a.User == user })
	}
	for i, a := range fresh {
		if !has(a.alloc, "") || !has(a.alloc, a.userA) || !has(a.alloc, a.userB) {
			t.Errorf("created allocation %s: associations missing (have %v)", a.alloc, filterAssoc(got, a.alloc))
		}
		if o, _ := s.waldur.Order(orders[i]); o.State != waldur.OrderDone {
			t.Errorf("order of %s: %s", a.alloc, o.State)
		}
	}
	for _, a := range old {
		if !has(a.alloc, a.userC) {
			t.Errorf("granted allocation %s: %s missing (have %v)", a.alloc, a.userC, filterAssoc(got, a.alloc))
		}
	}
	// exactly: per fresh allocation 3 rows (account + A + B), per old one 2 (account + C), 2n projects, 1 customer
	if want := 3*n + 2*n + 2*n + 1; len(got) != want {
		t.Errorf("%d associations, want %d: %v", len(got), want, got)
	}
}

func filterAssoc(all []assoc, account string) []assoc {
	var out []assoc
	for _, a := range all {
		if a.Account == account {
			out = append(out, a)
		}
	}
	return out
}

// TestRevokeWhateverTheDefaultAccount revokes a role of a user whose default
// account is one of the project's allocations, and of a user whose only
// association is there: both lose every association of the project.
func TestRevokeWhateverTheDefaultAccount(t *testing.T) {
	s := newProcessSite(t)
	c := "cluster=" + s.env.cluster
	a1 := s.newAllocationIn("", "1")
	a2 := s.newAllocationIn("", "2")
	a2.project = a1.project
	s.update(a2, func(r *waldur.ProviderResource) { r.ProjectUUID = a1.project })
	other := s.newAllocationIn("x", "x") // another project where C stays
	for _, a := range []*allocation{a1, a2, other} {
		for _, args := range [][]string{
			{"add", "account", a.cust, "parent=" + s.root, c},
			{"add", "account", a.proj, "parent=" + a.cust, c},
			{"add", "account", a.alloc, "parent=" + a.proj, c},
		} {
			if _, err := s.env.run(args...); err != nil && !strings.Contains(err.Error(), "Nothing new added") {
				t.Fatal(err)
			}
		}
		s.update(a, func(r *waldur.ProviderResource) { r.State, r.BackendID = "OK", a.alloc })
	}
	// C: default a1, also in a2 and in the other project; A: only in a1 and a2, default a2
	for _, args := range [][]string{
		{"add", "user", a1.userC, "account=" + a1.alloc + "," + a2.alloc + "," + other.alloc, "defaultaccount=" + a1.alloc, c},
		{"add", "user", a1.userA, "account=" + a1.alloc + "," + a2.alloc, "defaultaccount=" + a2.alloc, c},
	} {
		if _, err := s.env.run(args...); err != nil {
			t.Fatal(err)
		}
	}
	s.sacctmgrCalls()

	for _, u := range []struct{ uuid, name string }{{a1.userCUUID, a1.userC}, {a1.userAUUID, a1.userA}} {
		s.mustSucceed("user_role", map[string]any{"user_uuid": u.uuid, "project_uuid": a1.project, "role_name": "PROJECT.MEMBER", "granted": false})
		out, err := s.env.run("show", "assoc", "where", "user="+u.name, c, "format=Account")
		if err != nil {
			t.Fatal(err)
		}
		accounts := strings.Fields(out)
		if slices.Contains(accounts, a1.alloc) || slices.Contains(accounts, a2.alloc) {
			t.Errorf("%s still in the project's allocations: %v", u.name, accounts)
		}
		if u.name == a1.userC {
			if !slices.Equal(accounts, []string{other.alloc}) {
				t.Errorf("%s: associations %v, want only %s", u.name, accounts, other.alloc)
			}
			def, _ := s.env.run("show", "user", "where", "name="+u.name, c, "format=DefaultAccount")
			if strings.TrimSpace(def) != other.alloc {
				t.Errorf("%s: default account %q, want %s", u.name, strings.TrimSpace(def), other.alloc)
			}
		} else if len(accounts) != 0 {
			t.Errorf("%s: associations %v, want none", u.name, accounts)
		}
	}
}

// TestForeignAllocationName: a Create whose allocation name is another
// project's account errs the order with a clear message and leaves that
// account as it was.
func TestForeignAllocationName(t *testing.T) {
	s := newProcessSite(t)
	c := "cluster=" + s.env.cluster
	a := s.newAllocation()
	elsewhere := s.prefix + "someone-else-" + s.sfx
	for _, args := range [][]string{
		{"add", "account", elsewhere, "parent=" + s.root, c},
		{"add", "account", a.alloc, "parent=" + elsewhere, c},
		{"add", "user", "x" + s.sfx, "account=" + a.alloc, c},
	} {
		if _, err := s.env.run(args...); err != nil {
			t.Fatal(err)
		}
	}
	before := filterAssoc(s.env.assocs(t, s.prefix), a.alloc)
	order := s.waldur.AddOrder(waldur.Order{Type: "Create", State: waldur.OrderExecuting, OfferingUUID: s.offering, ProjectUUID: a.project,
		ResourceUUID: a.resource.UUID, MarketplaceResourceUUID: a.resource.UUID, Limits: map[string]any{"cpu": 10}})
	o := s.deliver("order", map[string]any{"order_uuid": order.UUID, "order_state": "executing"})
	if o.Fate != "dead_letter" {
		t.Fatalf("fate %s", o.Fate)
	}
	got, _ := s.waldur.Order(order.UUID)
	want := fmt.Sprintf(`account %q already exists under %q, not under %q`, a.alloc, elsewhere, a.proj)
	if got.State != waldur.OrderErred || !strings.Contains(got.ErrorMessage, want) {
		t.Errorf("order %s, error %q; want erred with %q", got.State, got.ErrorMessage, want)
	}
	if after := filterAssoc(s.env.assocs(t, s.prefix), a.alloc); !slices.Equal(before, after) {
		t.Errorf("foreign account changed:\n before %v\n after  %v", before, after)
	}
	calls := s.waldur.takeCalls()
	for _, call := range calls {
		if strings.Contains(call, "set_backend_id") || strings.Contains(call, "set_state_done") {
			t.Errorf("unexpected call %s", call)
		}
	}
}

// TestNullGrantIgnored: granted: null changes nothing, as in the agent.
func TestNullGrantIgnored(t *testing.T) {
	s := newProcessSite(t)
	a := s.newAllocation()
	s.provision(a)
	before := s.env.assocs(t, s.prefix)
	s.mustSucceed("user_role", map[string]any{"user_uuid": a.userAUUID, "project_uuid": a.project, "role_name": "PROJECT.MEMBER", "granted": nil})
	s.checkSacctmgr()
	s.checkWaldur()
	s.checkAssocs(before)
}

// TestFailedApprovalLeavesOrderPending: the approval is refused; the order
// stays pending-provider (no erred), nothing is provisioned.
func TestFailedApprovalLeavesOrderPending(t *testing.T) {
	s := newProcessSite(t)
	a := s.newAllocation()
	order := s.waldur.AddOrder(waldur.Order{Type: "Create", State: waldur.OrderPendingProvider, OfferingUUID: s.offering, ProjectUUID: a.project,
		ResourceUUID: a.resource.UUID, MarketplaceResourceUUID: a.resource.UUID})
	o := "marketplace-orders/" + order.UUID + "/"
	s.waldur.FailNext(o+"approve_by_provider/", 400, 1)
	s.mustSucceed("order", map[string]any{"order_uuid": order.UUID, "order_state": "pending-provider"})
	s.checkWaldur("GET "+o, "POST "+o+"approve_by_provider/")
	s.checkSacctmgr()
	if got, _ := s.waldur.Order(order.UUID); got.State != waldur.OrderPendingProvider {
		t.Errorf("order state %s, want pending-provider", got.State)
	}
	// the next reminder approves it and provisions by the fresh state
	s.mustSucceed("order", map[string]any{"order_uuid": order.UUID, "order_state": "pending-provider"})
	if got, _ := s.waldur.Order(order.UUID); got.State != waldur.OrderDone {
		t.Errorf("order state %s after the reminder, want done", got.State)
	}
	if len(filterAssoc(s.env.assocs(t, s.prefix), a.alloc)) != 3 {
		t.Errorf("allocation not provisioned: %v", s.env.assocs(t, s.prefix))
	}
}

// TestRestoreRecreatesUnderBackendID: a terminated resource restored keeps
// its backend_id: the account is made again under that name, with limits and
// members, and the order is done.
func TestRestoreRecreatesUnderBackendID(t *testing.T) {
	s := newProcessSite(t)
	a := s.newAllocation()
	s.provision(a)
	term := s.waldur.AddOrder(waldur.Order{Type: "Terminate", State: waldur.OrderExecuting, OfferingUUID: s.offering,
		ResourceUUID: a.resource.UUID, MarketplaceResourceUUID: a.resource.UUID})
	s.mustSucceed("order", map[string]any{"order_uuid": term.UUID, "order_state": "executing"})
	if got := filterAssoc(s.env.assocs(t, s.prefix), a.alloc); len(got) != 0 {
		t.Fatalf("after Terminate: %v", got)
	}
	// Waldur keeps the backend_id; the slug changes so that only the backend_id can name the account
	s.update(a, func(r *waldur.ProviderResource) {
		r.State, r.Slug, r.Limits = "Terminated", "renamed-"+s.sfx, map[string]any{"cpu": 3}
	})
	s.sacctmgrCalls()
	s.waldur.takeCalls()
	restore := s.waldur.AddOrder(waldur.Order{Type: "Restore", State: waldur.OrderExecuting, OfferingUUID: s.offering,
		ResourceUUID: a.resource.UUID, MarketplaceResourceUUID: a.resource.UUID})
	s.mustSucceed("order", map[string]any{"order_uuid": restore.UUID, "order_state": "executing"})
	got := filterAssoc(s.env.assocs(t, s.prefix), a.alloc)
	want := []assoc{
		{Account: a.alloc, Parent: a.proj, GrpTRESMins: "cpu=180000", QOS: "normal"},
		{Account: a.alloc, User: a.userA, QOS: "normal"},
		{Account: a.alloc, User: a.userB, QOS: "normal"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("restored:\n got  %v\n want %v", got, want)
	}
	if o, _ := s.waldur.Order(restore.UUID); o.State != waldur.OrderDone {
		t.Errorf("restore order %s", o.State)
	}
	r := "marketplace-provider-resources/" + a.resource.UUID + "/"
	calls := s.waldur.takeCalls()
	if !slices.Contains(calls, "POST "+r+`set_backend_id/ {"backend_id":"`+a.alloc+`"}`) ||
		!slices.Contains(calls, "POST "+r+`set_limits/ {"limits":{"cpu":3}}`) {
		t.Errorf("Waldur calls %q", calls)
	}
}

// TestResourceResyncKeepsProjectAccounts: a resource resync adds and keeps
// the project's OK service and course accounts, removes closed ones and users
// who left the team.
func TestResourceResyncKeepsProjectAccounts(t *testing.T) {
	s := newProcessSite(t)
	c := "cluster=" + s.env.cluster
	a := s.newAllocation()
	s.provision(a)
	svc, course, closed, gone := "svc-"+s.sfx, "hpc101-"+s.sfx, "old-"+s.sfx, "gone"+s.sfx
	s.waldur.mu.Lock()
	s.waldur.serviceAccounts = []map[string]any{
		{"username": svc, "state": "OK", "project_uuid": a.project},
		{"username": closed, "state": "Closed", "project_uuid": a.project},
	}
	s.waldur.courseAccounts = []map[string]any{{"username": course, "state": "OK", "project_uuid": a.project}}
	s.waldur.mu.Unlock()
	for _, u := range []string{course, closed, gone} {
		if _, err := s.env.run("add", "user", u, "account="+a.alloc, c); err != nil {
			t.Fatal(err)
		}
	}
	s.mustSucceed("resource", map[string]any{"resource_uuid": a.resource.UUID, "resource_backend_id": a.alloc})
	var users []string
	for _, x := range filterAssoc(s.env.assocs(t, s.prefix), a.alloc) {
		if x.User != "" {
			users = append(users, x.User)
		}
	}
	want := []string{course, svc, a.userA, a.userB}
	slices.Sort(want)
	if !slices.Equal(users, want) {
		t.Errorf("members after resync %v, want %v", users, want)
	}
}

// TestPeriodicLimits applies a periodic usage policy's settings to an
// allocation (fairshare, GrpTRESMins) and reports the commands to Waldur;
// with the feature off (the agent's default) nothing changes and Waldur is
// told so. (A raw usage reset needs slurmctld, which the test stack does
// not run: its command is covered by the rule tests.)
func TestPeriodicLimits(t *testing.T) {
	for _, enabled := range []bool{true, false} {
		t.Run(fmt.Sprintf("enabled=%v", enabled), func(t *testing.T) {
			s := newProcessSite(t, map[string]any{"periodic_limits": enabled})
			c := "cluster=" + s.env.cluster
			a := s.newAllocation()
			s.provision(a)
			policy := "6f9a0d2e-1c3b-4a5d-8e7f-0a1b2c3d4e5f"
			s.mustSucceed("resource_periodic_limits", map[string]any{"resource_uuid": a.resource.UUID, "policy_uuid": policy,
				"backend_id": a.alloc, "action": "apply_periodic_settings",
				"settings": map[string]any{"fairshare": 250, "limit_type": "GrpTRESMins", "grp_tres_mins": map[string]any{"cpu": 7000},
					"reset_raw_usage": false}})
			out, err := s.env.run("show", "assoc", "where", "account="+a.alloc, "user=", c, "format=Account,User,Share,GrpTRESMins")
			if err != nil {
				t.Fatal(err)
			}
			var row string
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				if strings.HasPrefix(l, a.alloc+"||") {
					row = l
				}
			}
			calls := s.waldur.takeCalls()
			report := "POST marketplace-slurm-periodic-usage-policies/" + policy + "/report_command_result/ "
			if enabled {
				if want := a.alloc + "||250|cpu=7000,mem=120G"; row != want {
					t.Errorf("account row %q, want %q", row, want)
				}
				bin := filepath.Join(filepath.Dir(s.cmdLog), "sacctmgr")
				want := report + `{"commands_executed":["` +
					bin + ` --parsable2 --noheader --immediate modify account where name=` + a.alloc + ` ` + c + ` set fairshare=250","` +
					bin + ` --parsable2 --noheader --immediate modify account where name=` + a.alloc + ` ` + c + ` set GrpTRESMins=cpu=7000"],` +
					`"error_message":"","resource_uuid":"` + a.resource.UUID + `","success":true}`
				if !slices.Equal(calls, []string{want}) {
					t.Errorf("Waldur calls:\n got  %q\n want %q", calls, want)
				}
			} else {
				if want := a.alloc + "||1|cpu=600000,mem=120G"; row != want {
					t.Errorf("account row %q, want %q (unchanged)", row, want)
				}
				want := report + `{"commands_executed":[],"error_message":"periodic limits are not enabled on this site","resource_uuid":"` +
					a.resource.UUID + `","success":false}`
				if !slices.Equal(calls, []string{want}) {
					t.Errorf("Waldur calls:\n got  %q\n want %q", calls, want)
				}
				s.checkSacctmgr()
			}
		})
	}
}

// TestTerminateKeepsSiblingAllocations: terminating one of two allocations
// of a project removes only that allocation; the project account, and the
// other allocation with its users and limits, stay.
func TestTerminateKeepsSiblingAllocations(t *testing.T) {
	s := newProcessSite(t)
	a1 := s.newAllocationIn("", "1")
	s.provision(a1)
	a2 := s.newAllocationIn("", "2")
	a2.project = a1.project
	s.update(a2, func(r *waldur.ProviderResource) { r.ProjectUUID = a1.project })
	s.provision(a2)
	before := s.env.assocs(t, s.prefix)
	term := s.waldur.AddOrder(waldur.Order{Type: "Terminate", State: waldur.OrderExecuting, OfferingUUID: s.offering,
		ResourceUUID: a1.resource.UUID, MarketplaceResourceUUID: a1.resource.UUID})
	s.mustSucceed("order", map[string]any{"order_uuid": term.UUID, "order_state": "executing"})
	var want []assoc
	for _, x := range before {
		if x.Account != a1.alloc {
			want = append(want, x)
		}
	}
	s.checkAssocs(want)
	if len(filterAssoc(want, a2.alloc)) != 3 || len(filterAssoc(want, a1.proj)) != 1 {
		t.Errorf("sibling or project missing: %v", want)
	}
	if o, _ := s.waldur.Order(term.UUID); o.State != waldur.OrderDone {
		t.Errorf("terminate order %s", o.State)
	}
}

// TestImportableOneBadAccount: Waldur refuses one importable account; the
// others are still reported and the request is set done, as the agent does.
func TestImportableOneBadAccount(t *testing.T) {
	s := newProcessSite(t)
	c := "cluster=" + s.env.cluster
	a := s.newAllocation()
	s.provision(a)
	bad, good := s.prefix+"x-bad-"+s.sfx, s.prefix+"y-good-"+s.sfx
	for _, name := range []string{bad, good} {
		if _, err := s.env.run("add", "account", name, "parent="+a.proj, c); err != nil {
			t.Fatal(err)
		}
	}
	// Waldur knows the provisioned allocation
	s.update(a, func(r *waldur.ProviderResource) { r.BackendID = a.alloc })
	s.waldur.takeCalls()
	req := s.waldur.AddBackendResourceRequest()
	s.mustSucceed("importable_resources", map[string]any{"backend_resource_request_uuid": req})
	var posted []string
	for _, call := range s.waldur.takeCalls() {
		if strings.HasPrefix(call, "POST backend-resources/ ") {
			posted = append(posted, call)
		}
	}
	if len(posted) != 2 || !strings.Contains(posted[0], bad) || !strings.Contains(posted[1], good) {
		t.Errorf("reports %q: want the bad one tried and the good one after it", posted)
	}
	s.waldur.mu.Lock()
	var stored []string
	for _, br := range s.waldur.backendRes {
		stored = append(stored, br["backend_id"].(string))
	}
	s.waldur.mu.Unlock()
	if !slices.Equal(stored, []string{good}) {
		t.Errorf("Waldur backend resources %v, want [%s]", stored, good)
	}
	if got, _ := s.waldur.BackendResourceRequest(req); got.State != "Done" {
		t.Errorf("request %+v, want Done", got)
	}
}
