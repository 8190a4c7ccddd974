package rules_test

import (
	"fmt"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/event"
	"github.com/eventfn/eventfn/rules"
)

// Parse loads a rules file; Match gives the plans of an event.
func ExampleRuleset_Match() {
	rs, err := rules.Parse("eventfn.yaml", []byte(`
version: 1
vars: {prefix: wd_}
rules:
  - name: executing-orders
    on: order
    when: payload.order_state == "executing"
    key: payload.order_uuid
    steps:
      - exec: [echo, "{{ vars.prefix + payload.order_uuid }}"]
`), rules.Options{Actions: actions.Builtin()})
	if err != nil {
		fmt.Println(err)
		return
	}
	ev := &event.Event{Type: "order", Payload: map[string]any{"order_uuid": "abc", "order_state": "executing"}}
	plans, _ := rs.Match(ev, rs.Environment(ev, nil))
	for _, p := range plans {
		params, _, err := rules.RenderStep(p.Rule.Steps[0], p.Env, false)
		fmt.Println(p.Rule.Name, p.Key, params["argv"], err)
	}
	// Output: executing-orders abc [echo wd_abc] <nil>
}

// Every problem of a file comes back at once, each with its position.
func ExampleParse_errors() {
	_, err := rules.Parse("eventfn.yaml", []byte(`
version: 1
rules:
  - name: typo
    on: user-role
    steps:
      - webhook: {url: "https://hooks.example.org/x", method: PSOT}
`), rules.Options{Actions: actions.Builtin()})
	fmt.Println(err)
	// Output:
	// eventfn.yaml:5:9: rule "typo": on: unknown event type "user-role" (did you mean "user_role"? a custom type is declared with `types: [user-role]`)
	// eventfn.yaml:7:63: rule "typo": webhook method: "PSOT" is not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS (did you mean POST?)
}

// DryRunWith shows what each step would do, here with the actions' previews.
func ExampleRuleset_DryRunWith() {
	rs, _ := rules.Parse("eventfn.yaml", []byte(`
version: 1
rules:
  - name: account
    on: resource
    steps:
      - slurm: {add_account: {name: "{{ payload.resource_uuid }}", parent: root}}
`), rules.Options{Actions: actions.Builtin()})
	reg := actions.Standard(actions.Options{Slurm: actions.SlurmConfig{Cluster: "hpc1"}})
	res := rs.DryRunWith(&event.Event{Type: "resource", Payload: map[string]any{"resource_uuid": "r1"}}, rules.DryRunOptions{
		Preview: func(s *rules.Step, params map[string]any, p rules.Plan) (any, error) {
			return reg.Preview(s.Kind, actions.Request{Params: params})
		},
	})
	fmt.Println(res.Plans[0].Steps[0].Effect.(actions.Effect).Commands[0].Argv)
	// Output: [sacctmgr --parsable2 --noheader --immediate add account r1 parent=root cluster=hpc1]
}
