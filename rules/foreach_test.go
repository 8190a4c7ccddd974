package rules

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/eventfn/eventfn/event"
)

func TestForEachLoadErrors(t *testing.T) {
	for _, c := range []struct{ step, want string }{
		{`{log: "{{ item }}"}`, `test.yaml:6:15: rule "r": item: item and index are bound only in steps with for_each`},
		{`{for_each: "{{ item }}", log: x}`, `rule "r": for_each: item and index are bound inside the step`},
		{`{for_each: "payload.(", log: x}`, `test.yaml:6:20: rule "r": for_each: expression "payload.("`},
		{`{for_each: [1], log: x}`, `for_each: want an expression giving a list`},
		{`{for_each: payload.l, for_each_concurrency: 0, log: x}`, `for_each_concurrency "0": want a number from 1 to 64`},
		{`{for_each_concurrency: 2, log: x}`, `for_each_concurrency without for_each`},
	} {
		src := "version: 1\nrules:\n  - name: r\n    on: order\n    steps: [" + c.step + "]\n"
		src = strings.Replace(src, "    steps: [", "    steps:\n      - ", 1)
		src = strings.TrimSuffix(src, "]\n") + "\n"
		_, err := Parse("test.yaml", []byte(src), testOptions())
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.step, err, c.want)
		}
	}
}

func TestForEachDryRunShowsEachItem(t *testing.T) {
	rs, err := Parse("test.yaml", []byte(`
version: 1
rules:
  - name: r
    on: order
    steps:
      - id: each
        for_each: "{{ payload.users }}"
        when: item != "skip"
        log: "user {{ index }}: {{ item }}"
      - id: list
        log: x
      - for_each: steps.list.json
        log: "{{ item.id }}"
`), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	ev := &event.Event{Type: "order", Payload: map[string]any{"users": []any{"ann", "skip", "bob"}}}
	out := rs.DryRun(ev, nil)
	b, _ := json.Marshal(out.Plans[0].Steps)
	want := `[{"id":"each","kind":"log","items":[{"kind":"log","params":{"message":"user 0: ann"},"when":"item != \"skip\"","when_value":true},` +
		`{"kind":"log","when":"item != \"skip\"","when_value":false,"skipped":true},{"kind":"log","params":{"message":"user 2: bob"},"when":"item != \"skip\"","when_value":true}]},` +
		`{"id":"list","kind":"log","params":{"message":"x"}},` +
		`{"kind":"log","items":[{"kind":"log","params":{"message":"{{ item.id }}"}}]}]`
	if string(b) != want {
		t.Errorf("dry-run steps\n got %s\nwant %s", b, want)
	}
}
