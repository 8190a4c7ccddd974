package runner

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/rules"
)

type leakyFailure struct{}

func (leakyFailure) Run(_ context.Context, req actions.Request) (actions.Result, error) {
	return nil, actions.Permanent(fmt.Errorf("login with token %v refused", req.Params["t"]))
}

// TestDeadLetterReasonIsRedacted: the reason given to the settler travels
// in a header of the dead-lettered message; secrets in it are masked.
func TestDeadLetterReasonIsRedacted(t *testing.T) {
	reg := actions.Standard(actions.Options{Logger: testLogger()})
	reg.Register(actions.FromSpec("leak", actions.Spec{Keys: []string{"t"}}, leakyFailure{}))
	rs, err := rules.Parse("test.yaml", []byte(`
version: 1
secrets: {tok: {env: TOK}}
rules:
  - {name: r, on: order, steps: [{leak: {t: "{{ secrets.tok }}"}}]}
`), rules.Options{Actions: reg})
	if err != nil {
		t.Fatal(err)
	}
	r := New(Config{Rules: rs, Actions: reg, Logger: testLogger(), Secrets: map[string]any{"tok": "s3cr3t-t0ken"}})
	s := newSettler()
	r.Deliver(context.Background(), &Message{Source: "t", Type: "order", Body: []byte(`{}`), DeadLetterOnFailure: true, Settler: s})
	f := <-s.done
	if !strings.HasPrefix(f, "dead-letter: ") || strings.Contains(f, "s3cr3t-t0ken") || !strings.Contains(f, "token *** refused") {
		t.Errorf("dead-letter reason %q: want the failure with the secret masked", f)
	}
}
