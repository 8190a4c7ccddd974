package slurm

import (
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/eventfn/eventfn/waldur"
	"github.com/eventfn/eventfn/waldur/waldurtest"
)

// allocation is a resource of the fake Waldur with the accounts the site
// makes for it.
type allocation struct {
	resource             waldur.ProviderResource
	team                 []waldur.TeamMember
	project              string // project UUID
	cust, proj, alloc    string // account names
	userA, userB, userC  string // offering usernames: A and B in the team, C joins later
	userAUUID, userCUUID string
}

// newAllocation seeds Waldur with a resource of a new project whose team
// has users A and B (and one without an offering account).
func (s *site) newAllocation() *allocation { return s.newAllocationIn("", "") }

// newAllocationIn is newAllocation in project proj (a tag of the project
// and the resource slugs; "" for the site's default project), with resource
// slug tag alloc.
func (s *site) newAllocationIn(proj, alloc string) *allocation {
	a := &allocation{
		project: waldurtest.NewUUID(),
		cust:    s.prefix + "uni-" + s.sfx, proj: s.prefix + "proj" + proj + "-" + s.sfx, alloc: s.prefix + "alloc" + alloc + "-" + s.sfx,
		userA: "ua" + s.sfx, userB: "ub" + s.sfx, userC: "uc" + s.sfx,
		userAUUID: waldurtest.NewUUID(), userCUUID: waldurtest.NewUUID(),
	}
	a.team = []waldur.TeamMember{
		{UUID: a.userAUUID, Username: "alice@university.example", OfferingUserUsername: strings.ToUpper(a.userA), Role: "PROJECT.MEMBER"},
		{UUID: waldurtest.NewUUID(), Username: "bob@university.example", OfferingUserUsername: a.userB, Role: "PROJECT.MANAGER"},
		{UUID: waldurtest.NewUUID(), Username: "nolink@university.example", Role: "PROJECT.MEMBER"},
	}
	a.resource = s.waldur.addResource(waldur.ProviderResource{
		Name: "Alloc " + s.sfx, Slug: "alloc" + alloc + "-" + s.sfx, State: "Creating", OfferingUUID: s.offering,
		ProjectUUID: a.project, ProjectSlug: "proj" + proj + "-" + s.sfx, CustomerSlug: "uni-" + s.sfx,
	}, a.team...)
	s.waldur.mu.Lock()
	s.waldur.offeringUsers[a.userAUUID] = a.userA
	s.waldur.offeringUsers[a.userCUUID] = a.userC
	s.waldur.projects["proj"+proj+"-"+s.sfx] = a.project
	s.waldur.mu.Unlock()
	return a
}

// update changes the resource as Waldur would, keeping its team.
func (s *site) update(a *allocation, change func(r *waldur.ProviderResource)) {
	r, _ := s.waldur.Resource(a.resource.UUID)
	change(&r)
	a.resource = s.waldur.addResource(r, a.team...)
}

// createOrder seeds a Create order for a and delivers its event.
func (s *site) provision(a *allocation) {
	s.t.Helper()
	order := s.waldur.AddOrder(waldur.Order{
		Type: "Create", State: waldur.OrderPendingProvider, OfferingUUID: s.offering, ProjectUUID: a.project,
		ResourceUUID: a.resource.UUID, MarketplaceResourceUUID: a.resource.UUID, Limits: map[string]any{"cpu": 10, "mem": 2},
	})
	s.mustSucceed("order", map[string]any{"order_uuid": order.UUID, "order_state": "pending-provider"})
	// Waldur marks the resource OK once its order is done
	s.update(a, func(r *waldur.ProviderResource) { r.State = "OK" })
	s.waldur.takeCalls()
	s.sacctmgrCalls()
}

func (s *site) checkAssocs(want []assoc) {
	s.t.Helper()
	if got := s.env.assocs(s.t, s.prefix); !reflect.DeepEqual(got, want) {
		s.t.Fatalf("associations:\n got  %+v\n want %+v", got, want)
	}
}

func (s *site) checkWaldur(want ...string) {
	s.t.Helper()
	if got := s.waldur.takeCalls(); !slices.Equal(got, want) {
		s.t.Fatalf("Waldur calls:\n got  %q\n want %q", got, want)
	}
}

// The sacctmgr command lines of the slurm forms, as the rules run them (flags left out).

func (s *site) addAccount(name, parent, descr, org string) []string {
	c := "cluster=" + s.env.cluster
	return []string{
		"add account " + name + " parent=" + parent + " description=" + descr + " organization=" + org + " " + c,
		"show assoc where account=" + name + " " + c + " format=Account,User,ParentName",
	}
}

func (s *site) addUsers(users, account, def string) []string {
	c := "cluster=" + s.env.cluster
	d := ""
	if def != "" {
		d = " defaultaccount=" + def
	}
	return []string{
		"add user " + users + " account=" + account + d + " fairshare=parent " + c,
		"show assoc where user=" + users + " account=" + account + " " + c + " format=Account,User,Partition",
	}
}

// removeUsers is the removal of named users from one account (no default
// account to move).
func (s *site) removeUsers(users, account string) []string {
	c := "cluster=" + s.env.cluster
	return []string{
		"show user where name=" + users + " " + c + " withassoc format=User,DefaultAccount,Account",
		"remove user where name=" + users + " account=" + account + " " + c,
		"show assoc where account=" + account + " user=" + users + " " + c + " format=Account,User",
	}
}

// removeAll is the removal of every user (users, as found) from an account.
func (s *site) removeAll(account string, users string) []string {
	c := "cluster=" + s.env.cluster
	out := []string{"show assoc where account=" + account + " " + c + " format=Account,User"}
	if users != "" {
		out = append(out, "show user where name="+users+" "+c+" withassoc format=User,DefaultAccount,Account")
	}
	return append(out, "remove user where account="+account+" "+c, "show assoc where account="+account+" "+c+" format=Account,User")
}

func (s *site) removeAccount(name string) []string {
	c := "cluster=" + s.env.cluster
	return []string{"remove account where name=" + name + " " + c, "show assoc where account=" + name + " " + c + " format=Account,User"}
}

func cat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func (s *site) checkSacctmgr(want ...string) {
	s.t.Helper()
	if got := s.sacctmgrCalls(); !slices.Equal(got, want) {
		s.t.Fatalf("sacctmgr calls:\n got  %q\n want %q", got, want)
	}
}

func q(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v.Encode()
}

func TestOrderLifecycle(t *testing.T) {
	s := newProcessSite(t)
	a := s.newAllocation()
	c := "cluster=" + s.env.cluster
	r := "marketplace-provider-resources/" + a.resource.UUID + "/"

	// --- Create (pending-provider: approved, then provisioned)
	order := s.waldur.AddOrder(waldur.Order{
		Type: "Create", State: waldur.OrderPendingProvider, OfferingUUID: s.offering, ProjectUUID: a.project,
		ResourceUUID: a.resource.UUID, MarketplaceResourceUUID: a.resource.UUID, Limits: map[string]any{"cpu": 10, "mem": 2},
	})
	o := "marketplace-orders/" + order.UUID + "/"
	createEvent := map[string]any{"order_uuid": order.UUID, "order_state": "pending-provider"}
	s.mustSucceed("order", createEvent)

	provisioned := []assoc{
		{Account: a.alloc, Parent: a.proj, GrpTRESMins: "cpu=600000,mem=120G", QOS: "normal"},
		{Account: a.alloc, User: a.userA, QOS: "normal"},
		{Account: a.alloc, User: a.userB, QOS: "normal"},
		{Account: a.proj, Parent: a.cust, QOS: "normal"},
		{Account: a.cust, Parent: s.root, QOS: "normal"},
	}
	s.checkAssocs(provisioned)
	createCommands := cat(
		s.addAccount(a.cust, s.root, "uni-"+s.sfx, a.cust),
		s.addAccount(a.proj, a.cust, "proj-"+s.sfx, a.proj),
		s.addAccount(a.alloc, a.proj, "Alloc "+s.sfx, a.proj),
		[]string{"modify account where name=" + a.alloc + " " + c + " set GrpTRESMins=cpu=600000,mem=122880"},
		s.addUsers(a.userA+","+a.userB, a.alloc, s.root),
	)
	s.checkSacctmgr(createCommands...)
	s.checkWaldur(
		"GET "+o,
		"POST "+o+"approve_by_provider/",
		"GET "+o,
		"GET "+r,
		"GET "+r+"team/",
		"GET marketplace-provider-offerings/"+s.offering+"/list_project_service_accounts/",
		"GET marketplace-provider-offerings/"+s.offering+"/list_course_accounts/",
		"POST "+r+`set_backend_id/ {"backend_id":"`+a.alloc+`"}`,
		"POST "+r+`set_limits/ {"limits":{"cpu":10,"mem":2}}`,
		"GET "+o,
		"POST "+o+"set_state_done/",
	)
	if got, _ := s.waldur.Order(order.UUID); got.State != waldur.OrderDone {
		t.Errorf("order state %s, want done", got.State)
	}
	if got, _ := s.waldur.Resource(a.resource.UUID); got.BackendID != a.alloc || got.Limits["cpu"] != float64(10) {
		t.Errorf("resource backend_id %q, limits %v", got.BackendID, got.Limits)
	}
	s.update(a, func(r *waldur.ProviderResource) { r.State = "OK" })

	// the same message again: the order is done, nothing happens
	s.mustSucceed("order", createEvent)
	s.checkSacctmgr()
	s.checkWaldur("GET " + o)
	// and with the order executing again: the resource has its backend_id and the account exists, so
	// the order is only set done (as the agent does: membership follows from the other events)
	s.waldur.AddOrder(waldur.Order{UUID: order.UUID, Type: "Create", State: waldur.OrderExecuting, OfferingUUID: s.offering,
		ResourceUUID: a.resource.UUID, MarketplaceResourceUUID: a.resource.UUID, Limits: map[string]any{"cpu": 10, "mem": 2}})
	s.mustSucceed("order", map[string]any{"order_uuid": order.UUID, "order_state": "executing"})
	s.checkSacctmgr("show assoc where account=" + a.alloc + " " + c + " format=Account,User,ParentName")
	s.checkAssocs(provisioned)
	s.checkWaldur("GET "+o, "GET "+r, "GET "+o, "POST "+o+"set_state_done/")

	// --- user_role: grant adds the association, revoke removes it
	resources := "marketplace-provider-resources/?" + q("field", "uuid", "field", "backend_id", "field", "restrict_member_access",
		"offering_uuid", s.offering, "project_uuid", a.project, "state", "OK", "state", "Erred")
	offeringUsers := "marketplace-offering-users/?" + q("is_restricted", "false", "offering_uuid", s.offering, "user_uuid", a.userCUUID)
	role := map[string]any{"user_uuid": a.userCUUID, "user_username": "carol@university.example", "project_uuid": a.project,
		"project_name": "Project " + s.sfx, "role_name": "PROJECT.MEMBER", "granted": true}
	s.mustSucceed("user_role", role)
	withC := append([]assoc{provisioned[0], provisioned[1], provisioned[2], {Account: a.alloc, User: a.userC, QOS: "normal"}}, provisioned[3:]...)
	s.checkAssocs(withC)
	s.checkSacctmgr(s.addUsers(a.userC, a.alloc, s.root)...)
	s.checkWaldur("GET "+offeringUsers, "GET "+resources)
	s.mustSucceed("user_role", role) // again: nothing new
	s.checkAssocs(withC)
	s.waldur.takeCalls()
	s.sacctmgrCalls()

	role["granted"] = false
	for range 2 { // revoke, and the same again: nothing left to delete
		s.mustSucceed("user_role", role)
		s.checkAssocs(provisioned)
		s.checkSacctmgr(s.removeUsers(a.userC, a.alloc)...)
		s.checkWaldur("GET "+offeringUsers, "GET "+resources)
	}

	// --- Update: new limits; SLURM keeps the TRES the order does not name
	update := s.waldur.AddOrder(waldur.Order{Type: "Update", State: waldur.OrderExecuting, OfferingUUID: s.offering,
		ResourceUUID: a.resource.UUID, MarketplaceResourceUUID: a.resource.UUID, Limits: map[string]any{"cpu": 20}})
	s.mustSucceed("order", map[string]any{"order_uuid": update.UUID, "order_state": "executing"})
	provisioned[0].GrpTRESMins = "cpu=1200000,mem=120G"
	s.checkAssocs(provisioned)
	s.checkSacctmgr("modify account where name=" + a.alloc + " " + c + " set GrpTRESMins=cpu=1200000")
	u := "marketplace-orders/" + update.UUID + "/"
	s.checkWaldur("GET "+u, "GET "+r, "GET "+u, "POST "+u+"set_state_done/")
	s.update(a, func(r *waldur.ProviderResource) { r.Limits = map[string]any{"cpu": 20, "mem": 2} })

	// --- resource: paused, downscaled, restored
	for _, tc := range []struct {
		paused, downscaled bool
		qos                string
	}{{true, false, s.paused}, {false, true, s.limited}, {false, false, "normal"}} {
		s.update(a, func(r *waldur.ProviderResource) { r.Paused, r.Downscaled = tc.paused, tc.downscaled })
		s.mustSucceed("resource", map[string]any{"resource_uuid": a.resource.UUID, "resource_backend_id": a.alloc,
			"paused": tc.paused, "downscaled": tc.downscaled, "restrict_member_access": false, "sequence_number": 1})
		for i := range 3 {
			provisioned[i].QOS = tc.qos
		}
		s.checkAssocs(provisioned)
		s.checkSacctmgr(cat([]string{
			"modify account where name=" + a.alloc + " " + c + " set qos=" + tc.qos,
			"modify account where name=" + a.alloc + " " + c + " set GrpTRESMins=cpu=1200000,mem=122880",
			"show assoc where account=" + a.alloc + " " + c + " format=Account,User",
		}, s.addUsers(a.userA+","+a.userB, a.alloc, s.root))...)
		s.checkWaldur("GET "+r, "GET "+r+"team/", "GET marketplace-provider-offerings/"+s.offering+"/list_project_service_accounts/",
			"GET marketplace-provider-offerings/"+s.offering+"/list_course_accounts/")
	}

	// --- Terminate: the allocation goes, and the project account it leaves empty
	term := s.waldur.AddOrder(waldur.Order{Type: "Terminate", State: waldur.OrderExecuting, OfferingUUID: s.offering,
		ResourceUUID: a.resource.UUID, MarketplaceResourceUUID: a.resource.UUID})
	tp := "marketplace-orders/" + term.UUID + "/"
	for i := range 2 { // terminate, then the same again with the order executing: nothing left to remove
		if i == 1 {
			s.waldur.AddOrder(waldur.Order{UUID: term.UUID, Type: "Terminate", State: waldur.OrderExecuting, OfferingUUID: s.offering,
				ResourceUUID: a.resource.UUID, MarketplaceResourceUUID: a.resource.UUID})
		}
		s.mustSucceed("order", map[string]any{"order_uuid": term.UUID, "order_state": "executing"})
		s.checkAssocs([]assoc{{Account: a.cust, Parent: s.root, QOS: "normal"}})
		users := a.userA + "," + a.userB
		if i == 1 {
			users = ""
		}
		s.checkSacctmgr(cat(
			s.removeAll(a.alloc, users),
			s.removeAccount(a.alloc),
			[]string{"show assoc where parent=" + a.proj + " " + c + " format=Account,User"},
			s.removeAccount(a.proj),
		)...)
		s.checkWaldur("GET "+tp, "GET "+r, "GET "+tp, "POST "+tp+"set_state_done/")
		if got, _ := s.waldur.Order(term.UUID); got.State != waldur.OrderDone {
			t.Fatalf("terminate order state %s", got.State)
		}
	}
}

func TestMembershipEvents(t *testing.T) {
	s := newProcessSite(t, map[string]any{"offering_user_delete_removes": true})
	a := s.newAllocation()
	s.provision(a)
	c := "cluster=" + s.env.cluster
	account := assoc{Account: a.alloc, Parent: a.proj, GrpTRESMins: "cpu=600000,mem=120G", QOS: "normal"}
	user := func(name string) assoc { return assoc{Account: a.alloc, User: name, QOS: "normal"} }
	upper := []assoc{{Account: a.proj, Parent: a.cust, QOS: "normal"}, {Account: a.cust, Parent: s.root, QOS: "normal"}}
	with := func(users ...string) []assoc {
		out := []assoc{account}
		users = slices.Sorted(slices.Values(users))
		for _, u := range users {
			out = append(out, user(u))
		}
		return append(out, upper...)
	}
	s.checkAssocs(with(a.userA, a.userB))
	resources := "marketplace-provider-resources/?" + q("field", "uuid", "field", "backend_id", "field", "restrict_member_access",
		"offering_uuid", s.offering, "project_uuid", a.project, "state", "OK", "state", "Erred")

	// --- service_account and course_account: create adds, delete removes
	for _, tc := range []struct{ typ, name string }{{"service_account", "svc-" + s.sfx}, {"course_account", "hpc101-" + s.sfx}} {
		ev := map[string]any{"account_uuid": waldurtest.NewUUID(), "account_username": tc.name, "scope_type": "project",
			"project_uuid": a.project, "project_name": "Project " + s.sfx, "action": "create"}
		list := "list_project_service_accounts"
		// not (yet) listed by Waldur for the offering: nothing happens (the agent's existence check)
		s.mustSucceed(tc.typ, ev)
		if tc.typ == "course_account" {
			list = "list_course_accounts"
		}
		s.checkSacctmgr()
		s.checkWaldur("GET marketplace-provider-offerings/" + s.offering + "/" + list + "/")
		acct := map[string]any{"username": tc.name, "state": "OK", "project_uuid": a.project}
		s.waldur.mu.Lock()
		if tc.typ == "course_account" {
			s.waldur.courseAccounts = append(s.waldur.courseAccounts, acct)
		} else {
			s.waldur.serviceAccounts = append(s.waldur.serviceAccounts, acct)
		}
		s.waldur.mu.Unlock()
		s.mustSucceed(tc.typ, ev)
		s.checkAssocs(with(a.userA, a.userB, tc.name))
		s.checkSacctmgr(s.addUsers(tc.name, a.alloc, s.root)...)
		s.checkWaldur("GET marketplace-provider-offerings/"+s.offering+"/"+list+"/", "GET "+resources)
		s.waldur.mu.Lock()
		s.waldur.serviceAccounts, s.waldur.courseAccounts = nil, nil
		s.waldur.mu.Unlock()

		ev["action"] = "delete"
		s.mustSucceed(tc.typ, ev)
		s.checkAssocs(with(a.userA, a.userB))
		s.checkSacctmgr(s.removeUsers(tc.name, a.alloc)...)
		s.checkWaldur("GET " + strings.Replace(resources, "field=restrict_member_access&", "", 1))
	}

	// --- offering_user: username_set adds the user where Waldur says, delete removes it
	od := "od" + s.sfx
	ou := map[string]any{"offering_user_uuid": waldurtest.NewUUID(), "user_uuid": waldurtest.NewUUID(), "username": od,
		"action": "username_set", "state": "OK", "resource_backend_ids": []any{a.alloc, "elsewhere_0001"}}
	s.mustSucceed("offering_user", ou)
	s.checkAssocs(with(od, a.userA, a.userB))
	s.checkSacctmgr(s.addUsers(od, a.alloc, s.root)...)
	s.checkWaldur("GET marketplace-provider-resources/?" + q("field", "uuid", "field", "backend_id", "field", "restrict_member_access",
		"offering_uuid", s.offering, "state", "OK", "state", "Erred"))
	for _, action := range []string{"create", "update", "attribute_update"} { // Waldur's own business: logged
		s.mustSucceed("offering_user", map[string]any{"offering_user_uuid": ou["offering_user_uuid"], "user_uuid": ou["user_uuid"],
			"username": od, "action": action, "state": "OK"})
		s.checkSacctmgr()
		s.checkWaldur()
	}
	ou["action"] = "delete"
	s.mustSucceed("offering_user", ou)
	s.checkAssocs(with(a.userA, a.userB))
	s.checkSacctmgr(cat([]string{"show assoc where user=" + od + " " + c + " format=Account,User"}, s.removeUsers(od, a.alloc))...)
	s.checkWaldur()

	// --- user_role resync: the project team is the truth
	stale := "st" + s.sfx
	if _, err := s.env.run("add", "user", stale, "account="+a.alloc, c); err != nil {
		t.Fatal(err)
	}
	a.team = a.team[:1] // B left the project
	s.update(a, func(*waldur.ProviderResource) {})
	sync := map[string]any{"project_uuid": a.project, "project_name": "Project " + s.sfx}
	s.mustSucceed("user_role", sync)
	s.checkAssocs(with(a.userA))
	s.checkSacctmgr(cat(
		[]string{"show assoc where account=" + a.alloc + " " + c + " format=Account,User"},
		s.addUsers(a.userA, a.alloc, s.root),
		s.removeUsers(stale+","+a.userB, a.alloc),
	)...)
	s.checkWaldur("GET "+resources, "GET marketplace-provider-resources/"+a.resource.UUID+"/team/")
	a.team = []waldur.TeamMember{a.team[0], {UUID: waldurtest.NewUUID(), Username: "bob@university.example", OfferingUserUsername: a.userB}}
	s.update(a, func(*waldur.ProviderResource) {})
	sync["resource_uuid"] = a.resource.UUID
	s.mustSucceed("user_role", sync)
	s.checkAssocs(with(a.userA, a.userB))
	s.sacctmgrCalls()
	s.waldur.takeCalls()

	// --- a resource that restricts member access loses its members
	s.update(a, func(r *waldur.ProviderResource) { r.RestrictMemberAccess = true })
	s.mustSucceed("resource", map[string]any{"resource_uuid": a.resource.UUID, "resource_backend_id": a.alloc,
		"paused": false, "downscaled": false, "restrict_member_access": true})
	s.checkAssocs(with())
	s.update(a, func(r *waldur.ProviderResource) { r.RestrictMemberAccess = false })
	s.mustSucceed("resource", map[string]any{"resource_uuid": a.resource.UUID, "resource_backend_id": a.alloc})
	s.checkAssocs(with(a.userA, a.userB))
	s.sacctmgrCalls()
	s.waldur.takeCalls()

	// --- importable resources: an allocation made outside Waldur is reported, then set_done
	legacy := s.prefix + "legacy-" + s.sfx
	if _, err := s.env.run("add", "account", legacy, "parent="+a.proj, c); err != nil {
		t.Fatal(err)
	}
	if _, err := s.env.run("modify", "account", "where", "name="+legacy, c, "set", "GrpTRESMins=cpu=120000,mem=30720"); err != nil {
		t.Fatal(err)
	}
	req := s.waldur.AddBackendResourceRequest()
	s.mustSucceed("importable_resources", map[string]any{"backend_resource_request_uuid": req})
	s.checkWaldur(
		"GET backend-resource-requests/"+req+"/",
		"POST backend-resource-requests/"+req+"/start_processing/",
		"GET marketplace-provider-resources/?"+q("field", "backend_id", "offering_uuid", s.offering, "state", "OK", "state", "Erred", "state", "Creating"),
		"GET projects/?"+q("field", "uuid", "slug", "proj-"+s.sfx),
		"GET backend-resources/?"+q("backend_id", legacy, "offering_uuid", s.offering, "project_uuid", a.project),
		`POST backend-resources/ {"backend_id":"`+legacy+`","backend_metadata":{"limits":{"cpu":2,"mem":0.5}},"name":"`+legacy+
			`","offering":"`+s.offering+`","project":"`+a.project+`"}`,
		"POST backend-resource-requests/"+req+"/set_done/",
	)
	if got, _ := s.waldur.BackendResourceRequest(req); got.State != waldurtest.RequestDone {
		t.Errorf("backend resource request %+v", got)
	}
	// reported once: the second request finds it in Waldur's backend resources
	req2 := s.waldur.AddBackendResourceRequest()
	s.mustSucceed("importable_resources", map[string]any{"backend_resource_request_uuid": req2})
	calls := s.waldur.takeCalls()
	for _, call := range calls {
		if strings.HasPrefix(call, "POST backend-resources/") {
			t.Errorf("reported twice: %s", call)
		}
	}
	if len(calls) != 6 || calls[5] != "POST backend-resource-requests/"+req2+"/set_done/" {
		t.Errorf("calls = %q", calls)
	}
}

// TestCraftedNamesAreRefused sends events whose names would be options,
// extra arguments or shell code: each is refused before any sacctmgr runs.
func TestCraftedNamesAreRefused(t *testing.T) {
	s := newProcessSite(t, map[string]any{"offering_user_delete_removes": true})
	a := s.newAllocation()
	s.update(a, func(r *waldur.ProviderResource) { r.State, r.BackendID = "OK", a.alloc })
	s.waldur.takeCalls()
	crafted := []string{"-rf", "--help", "a b", "x;reboot", "$(reboot)", "`id`", "a\nb", "x=y", "a,b"}
	s.waldur.mu.Lock()
	for _, name := range crafted { // Waldur lists them (else the existence check skips them before the slurm action)
		s.waldur.serviceAccounts = append(s.waldur.serviceAccounts, map[string]any{"username": name, "state": "OK", "project_uuid": a.project})
	}
	s.waldur.mu.Unlock()
	for _, name := range crafted {
		for _, ev := range []struct {
			typ     string
			payload map[string]any
		}{
			{"service_account", map[string]any{"account_uuid": waldurtest.NewUUID(), "account_username": name, "scope_type": "project",
				"project_uuid": a.project, "project_name": "p", "action": "create"}},
			{"course_account", map[string]any{"account_uuid": waldurtest.NewUUID(), "account_username": name, "scope_type": "project",
				"project_uuid": a.project, "project_name": "p", "action": "delete"}},
			{"offering_user", map[string]any{"offering_user_uuid": waldurtest.NewUUID(), "user_uuid": waldurtest.NewUUID(), "username": name,
				"action": "username_set", "state": "OK", "resource_backend_ids": []any{a.alloc}}},
			{"offering_user", map[string]any{"offering_user_uuid": waldurtest.NewUUID(), "user_uuid": waldurtest.NewUUID(), "username": name,
				"action": "delete"}},
		} {
			o := s.deliver(ev.typ, ev.payload)
			if o.Fate != "dead_letter" || !strings.Contains(o.Reason, "refused") {
				t.Errorf("%s with %q: %s %q, want a refusal", ev.typ, name, o.Fate, o.Reason)
			}
			s.checkSacctmgr()
		}
	}
	s.waldur.takeCalls()

	// an order whose resource carries a crafted slug: refused at the first account, the order erred.
	// (A slug starting with "-" is harmless there: the prefix comes first.)
	for _, name := range crafted {
		if strings.HasPrefix(name, "-") {
			continue
		}
		s.update(a, func(r *waldur.ProviderResource) { r.State, r.BackendID, r.CustomerSlug = "Creating", "", name })
		order := s.waldur.AddOrder(waldur.Order{Type: "Create", State: waldur.OrderExecuting, OfferingUUID: s.offering,
			ResourceUUID: a.resource.UUID, MarketplaceResourceUUID: a.resource.UUID})
		o := s.deliver("order", map[string]any{"order_uuid": order.UUID, "order_state": "executing"})
		if o.Fate != "dead_letter" || !strings.Contains(o.Reason, "refused") {
			t.Errorf("order with customer slug %q: %s %q, want a refusal", name, o.Fate, o.Reason)
		}
		s.checkSacctmgr()
		calls := s.waldur.takeCalls()
		op := "marketplace-orders/" + order.UUID + "/"
		if len(calls) != 3 || calls[0] != "GET "+op || !strings.HasPrefix(calls[2], "POST "+op+"set_state_erred/ ") ||
			!strings.Contains(calls[2], "refused") {
			t.Errorf("Waldur calls for %q: %q", name, calls)
		}
		if got, _ := s.waldur.Order(order.UUID); got.State != waldur.OrderErred || !strings.Contains(got.ErrorMessage, "refused") {
			t.Errorf("order %q: state %s, error %q", name, got.State, got.ErrorMessage)
		}
	}
	s.checkAssocs(nil)
}
