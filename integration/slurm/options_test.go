package slurm

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"

	"github.com/eventfn/eventfn/config"
	"github.com/eventfn/eventfn/event"
	"github.com/eventfn/eventfn/rules"
)

// Rule tests of the example's optional agent features: the example's rules
// with its settings (vars) changed as a site would, rendered without side
// effects (no cluster, no Waldur). `eventfn test` cannot change vars, so
// these live here.

// renderWith renders eventFile (from examples/slurm-site/events) through the
// example rules with vars overridden, and returns the rendered params of
// each step of the named rule by step id ("skipped" for skipped steps).
func renderWith(t *testing.T, settings map[string]any, eventFile, rule string, mocks rules.Mocks) map[string]any {
	t.Helper()
	c, err := config.Load(rulesFile, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rs := c.Rules
	vars := map[string]any{}
	for k, v := range rs.Vars {
		vars[k] = v
	}
	for k, v := range settings {
		vars[k] = v
	}
	rs.Vars = vars
	raw, err := os.ReadFile("../../examples/slurm-site/events/" + eventFile)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := event.DecodeEnvelope(raw, event.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	res := rs.DryRun(ev, mocks)
	for _, p := range res.Plans {
		if p.Rule != rule {
			continue
		}
		out := map[string]any{}
		for _, s := range p.Steps {
			if s.Skipped {
				out[s.ID] = "skipped"
				continue
			}
			b, _ := json.Marshal(s.Params)
			var m any
			_ = json.Unmarshal(b, &m)
			out[s.ID] = m
		}
		return out
	}
	t.Fatalf("rule %s did not match %s (errors %v)", rule, eventFile, res.Errors)
	return nil
}

var createMocks = rules.Mocks{
	"order": {"json": map[string]any{"state": "executing", "type": "Create", "marketplace_resource_uuid": "4d5e6f7a8b9c40d1e2f3a4b5c6d7e8f9",
		"limits": map[string]any{"cpu": 10}}},
	"resource": {"json": map[string]any{"uuid": "4d5e6f7a8b9c40d1e2f3a4b5c6d7e8f9", "name": "Climate sim", "slug": "climate-sim-7f3a",
		"backend_id": "", "project_slug": "climate-7b2e", "customer_slug": "uni-x"}},
	"team": {"json": []any{
		map[string]any{"offering_user_username": "JDoe01"},
		map[string]any{"offering_user_username": "-rf"},
		map[string]any{"offering_user_username": "asmith"},
	}},
	"final": {"json": map[string]any{"state": "executing"}},
}

func param(t *testing.T, steps map[string]any, path ...string) any {
	t.Helper()
	var v any = steps
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%v: no %s in %v", path, p, v)
		}
		v = m[p]
	}
	return v
}

func TestOptionDefaultAccountPolicy(t *testing.T) {
	for policy, want := range map[string]any{"common": "site_default", "individual": "hpc_climate-sim-7f3a", "none": ""} {
		steps := renderWith(t, map[string]any{"default_account_policy": policy, "default_account": "site_default"},
			"order-create.json", "order", createMocks)
		if got := param(t, steps, "users", "add_user", "default_account"); got != want {
			t.Errorf("policy %s: default_account %v, want %v", policy, got, want)
		}
	}
	// the same on a grant
	steps := renderWith(t, map[string]any{"default_account_policy": "individual"}, "user-role-granted.json", "user-role", rules.Mocks{
		"offering_user": {"json": []any{map[string]any{"username": "jdoe01"}}},
		"resources": {"json": []any{
			map[string]any{"uuid": "a", "backend_id": "hpc_restricted", "restrict_member_access": true},
			map[string]any{"uuid": "b", "backend_id": "hpc_first"},
			map[string]any{"uuid": "c", "backend_id": "hpc_second"},
		}},
	})
	if got := param(t, steps, "add", "add_user", "default_account"); got != "hpc_first" {
		t.Errorf("grant, individual: default_account %v", got)
	}
}

func TestOptionPartitions(t *testing.T) {
	steps := renderWith(t, nil, "order-create.json", "order", createMocks)
	if got := param(t, steps, "users", "add_user", "partition"); !reflect.DeepEqual(got, []any{}) {
		t.Errorf("default partition %v, want none", got)
	}
	steps = renderWith(t, map[string]any{"partitions": []any{"batch", "gpu"}}, "order-create.json", "order", createMocks)
	if got := param(t, steps, "users", "add_user", "partition"); !reflect.DeepEqual(got, []any{"batch", "gpu"}) {
		t.Errorf("partition %v", got)
	}
}

func TestOptionHomeDirectories(t *testing.T) {
	if steps := renderWith(t, nil, "order-create.json", "order", createMocks); steps["homedirs"] != "skipped" {
		t.Errorf("homedirs run by default: %v", steps["homedirs"])
	}
	steps := renderWith(t, map[string]any{"create_homedirs": true, "homedir_umask": "0027"}, "order-create.json", "order", createMocks)
	want := map[string]any{
		"argv":  []any{"xargs", "--no-run-if-empty", "--delimiter=\\n", "-I", "{}", "mkhomedir_helper", "{}", "0027"},
		"stdin": "jdoe01\nasmith", // the name that would be an option is left out
	}
	if !reflect.DeepEqual(steps["homedirs"], want) {
		t.Errorf("homedirs:\n got  %v\n want %v", steps["homedirs"], want)
	}
}

func TestOptionPeriodicLimits(t *testing.T) {
	steps := renderWith(t, map[string]any{"periodic_limits": true}, "resource-periodic-limits.json", "resource-periodic-limits", nil)
	want := map[string]any{
		"fairshare":   map[string]any{"modify_account": map[string]any{"name": "hpc_climate-sim-7f3a", "set": map[string]any{"fairshare": float64(250)}}},
		"limits":      map[string]any{"set_limits": map[string]any{"account": "hpc_climate-sim-7f3a", "limits": map[string]any{"billing": float64(360000)}, "kind": "GrpTRESMins"}},
		"reset_usage": map[string]any{"modify_account": map[string]any{"name": "hpc_climate-sim-7f3a", "set": map[string]any{"RawUsage": float64(0)}}},
	}
	for id, w := range want {
		if !reflect.DeepEqual(steps[id], w) {
			t.Errorf("%s:\n got  %v\n want %v", id, steps[id], w)
		}
	}
	if got := param(t, steps, "report", "body", "success"); got != true {
		t.Errorf("report success %v", got)
	}
}

func TestOptionOfferingUserDeleteRemoves(t *testing.T) {
	mocks := rules.Mocks{"memberships": {"rows": []any{
		map[string]any{"account": "hpc_climate-sim-7f3a", "user": "jdoe01"},
		map[string]any{"account": "hpc_climate-gpu-01aa", "user": "jdoe01"},
		map[string]any{"account": "other_site_acct", "user": "jdoe01"},
	}}}
	steps := renderWith(t, map[string]any{"offering_user_delete_removes": true}, "offering-user-delete.json", "offering-user-deleted", mocks)
	want := map[string]any{"remove_user": map[string]any{"user": "jdoe01", "account": []any{"hpc_climate-sim-7f3a", "hpc_climate-gpu-01aa"}}}
	if !reflect.DeepEqual(steps["remove"], want) {
		t.Errorf("remove:\n got  %v\n want %v", steps["remove"], want)
	}
}
