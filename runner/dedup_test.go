package runner

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/event"
	"github.com/eventfn/eventfn/rules"
)

func TestEntityKey(t *testing.T) {
	long := string(make([]byte, 200))
	for _, c := range []struct {
		name    string
		typ     string
		payload map[string]any
		want    string
	}{
		{"order", "order", map[string]any{"order_uuid": "o1", "order_state": "executing", "offering_uuid": "f"}, "entity:order|order_uuid=o1"},
		{"user_role grant", "user_role", map[string]any{"project_uuid": "p1", "user_uuid": "u1", "granted": true}, "entity:user_role|project_uuid=p1|user_uuid=u1"},
		{"user_role project resync", "user_role", map[string]any{"project_uuid": "p1"}, "entity:user_role|project_uuid=p1"},
		{"resource", "resource", map[string]any{"resource_uuid": "r1", "offering_uuid": "f"}, "entity:resource|resource_uuid=r1"},
		{"offering_user", "offering_user", map[string]any{"offering_user_uuid": "ou", "user_uuid": "u"}, "entity:offering_user|offering_user_uuid=ou"},
		{"service_account", "service_account", map[string]any{"account_uuid": "a", "project_uuid": "p"}, "entity:service_account|account_uuid=a"},
		{"course_account", "course_account", map[string]any{"account_uuid": "a"}, "entity:course_account|account_uuid=a"},
		{"importable_resources", "importable_resources", map[string]any{"backend_resource_request_uuid": "b"}, "entity:importable_resources|backend_resource_request_uuid=b"},
		{"periodic limits", "resource_periodic_limits", map[string]any{"resource_uuid": "r", "policy_uuid": "x"}, "entity:resource_periodic_limits|resource_uuid=r"},
		{"unknown type takes the first generic uuid", "user_ssh_key", map[string]any{"user_uuid": "u", "project_uuid": "p"}, "entity:user_ssh_key|user_uuid=u"},
		{"no entity: the type alone", "offering_resources_sync", map[string]any{"requested_by_user_uuid": "u"}, "type:offering_resources_sync"},
		{"not a string", "order", map[string]any{"order_uuid": 12}, "type:order"},
		{"empty", "order", map[string]any{"order_uuid": ""}, "type:order"},
		{"too long to be a uuid", "order", map[string]any{"order_uuid": long}, "type:order"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := EntityKey(&event.Event{Type: c.typ, Payload: c.payload}); got != c.want {
				t.Errorf("EntityKey = %q, want %q", got, c.want)
			}
		})
	}
}

func TestDedupKeys(t *testing.T) {
	ev := &event.Event{Type: "order", Payload: map[string]any{"order_uuid": "o1"}}
	r1, r2 := &rules.Rule{Name: "a"}, &rules.Rule{Name: "b"}
	got := dedupKeys(ev, []rules.Candidate{{Rule: r1, Key: "k"}, {Rule: r2}, {Rule: r2, Key: "k"}})
	want := []string{"rule:k", "entity:order|order_uuid=o1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("dedupKeys = %q, want %q", got, want)
	}
	if got := dedupKeys(ev, nil); fmt.Sprint(got) != "[entity:order|order_uuid=o1]" {
		t.Errorf("no plans: %q, want the entity key", got)
	}
	// An entity key that looks like a rule key is still another key.
	got = dedupKeys(ev, []rules.Candidate{{Rule: r1, Key: "x"}, {Rule: r2, Key: "rule:x"}, {Rule: r1, Key: "x"}})
	if fmt.Sprint(got) != "[rule:x rule:rule:x]" {
		t.Errorf("nested prefix: %q", got)
	}
}

// TestDedupKeysSharedKey: many rules under one key make one key, built
// once: the allocations do not grow with the rules (they were one per
// rule, the concatenation, before the key was looked for first).
func TestDedupKeysSharedKey(t *testing.T) {
	ev := &event.Event{Type: "order", Payload: map[string]any{"order_uuid": "o1"}}
	cands := make([]rules.Candidate, 1000)
	for i := range cands {
		cands[i] = rules.Candidate{Rule: &rules.Rule{Name: fmt.Sprint(i)}, Key: "o1"}
	}
	if got := dedupKeys(ev, cands); fmt.Sprint(got) != "[rule:o1]" {
		t.Fatalf("dedupKeys = %q", got)
	}
	// The key's string and the slice holding it.
	if n := testing.AllocsPerRun(100, func() { dedupKeys(ev, cands) }); n > 2 {
		t.Errorf("%v allocations for 1,000 rules of one key, want at most 2", n)
	}
}

// dedupModel is the specification of de-duplication, written as plainly as
// possible: the history of completions, scanned.
type dedupModel struct {
	window time.Duration
	hist   []modelCompletion
}

type modelCompletion struct {
	sid  string
	keys []string
	fate string
	at   time.Time
}

func (m *dedupModel) duplicate(sid string, keys []string, now time.Time) (string, bool) {
	fate, found := "", false
	for _, c := range m.hist {
		if c.sid == sid && now.Sub(c.at) < m.window {
			fate, found = c.fate, true
		}
	}
	if !found {
		return "", false
	}
	for _, k := range keys {
		// Keys, like ids, are remembered for the window: a key last
		// handled longer ago counts as unknown, and the message runs.
		last := ""
		for _, c := range m.hist {
			for _, ck := range c.keys {
				if ck == k && now.Sub(c.at) < m.window {
					last = c.sid
				}
			}
		}
		if last != sid {
			return "", false
		}
	}
	return fate, true
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestDedupMatchesModel drives the memory journal with random
// interleavings, per entity key, of state changes (grant, revoke, ... with
// identical payloads, so identical ids) and exact redeliveries, from two
// sources, with the clock moving, and checks every verdict against the
// model; and checks the property the model stands for: a message whose
// content differs from the last one handled for its entity always runs.
func TestDedupMatchesModel(t *testing.T) {
	for seed := uint64(1); seed <= 40; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
			window := 10 * time.Minute
			j := NewMemoryJournalWith(MemoryOptions{Window: window, Now: clk.Now})
			model := &dedupModel{window: window}
			sources := []string{"stomp", "http"}
			states := []string{"grant", "revoke"}
			lastContent := map[string]string{} // entity → content of the last message handled
			var prev struct {
				src, id string
				keys    []string
			}
			for step := 0; step < 400; step++ {
				switch rng.IntN(10) {
				case 0:
					clk.Add(time.Duration(rng.Int64N(int64(window))))
				case 1:
					clk.Add(time.Duration(rng.IntN(5)) * time.Second)
				}
				var src, id string
				var keys []string
				if step > 0 && rng.IntN(4) == 0 { // an exact redelivery of the previous message
					src, id, keys = prev.src, prev.id, prev.keys
				} else {
					src = sources[rng.IntN(len(sources))]
					entity := fmt.Sprintf("user%d", rng.IntN(3))
					// The id is a hash of the content, as Waldur's is.
					id = entity + "/" + states[rng.IntN(len(states))]
					keys = []string{"entity:" + entity}
					if rng.IntN(5) == 0 { // a second plan keyed by the rule
						keys = append(keys, "rule:project")
					}
				}
				prev.src, prev.id, prev.keys = src, id, keys
				sid := SID(src, id)
				wantFate, wantDup := model.duplicate(sid, keys, clk.Now())
				gotFate, gotDup := j.Duplicate(src, id, keys)
				if gotDup != wantDup || gotFate != wantFate {
					t.Fatalf("step %d: %s from %s keys %v: duplicate = %v %q, model says %v %q", step, id, src, keys, gotDup, gotFate, wantDup, wantFate)
				}
				entity := keys[0]
				if gotDup && lastContent[entity] != src+"|"+id {
					t.Fatalf("step %d: %s skipped although the last message handled for %s was %s", step, id, entity, lastContent[entity])
				}
				if gotDup {
					continue
				}
				fate := FateAcked
				if rng.IntN(6) == 0 {
					fate = FateDeadLettered
				}
				if err := j.Complete(Completion{Source: src, ID: id, Keys: keys, Fate: fate}); err != nil {
					t.Fatal(err)
				}
				model.hist = append(model.hist, modelCompletion{sid: sid, keys: keys, fate: fate, at: clk.Now()})
				lastContent[entity] = src + "|" + id
			}
		})
	}
}

// counter is an action counting its runs per message id.
type counter struct {
	mu   sync.Mutex
	runs []string
}

func (c *counter) Run(_ context.Context, req actions.Request) (actions.Result, error) {
	c.mu.Lock()
	c.runs = append(c.runs, req.MessageID)
	c.mu.Unlock()
	return actions.Result{}, nil
}

func (c *counter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.runs)
}

func countingRunner(t *testing.T, j Journal) (*Runner, *counter) {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	c := &counter{}
	reg := actions.Standard(actions.Options{Logger: logger})
	reg.Register(actions.FromSpec("count", actions.Spec{Keys: []string{"n"}, Shorthand: "n"}, c))
	rs, err := rules.Parse("count.yaml", []byte(`
version: 1
rules:
  - name: membership
    on: user_role
    steps:
      - count: x
`), rules.Options{Actions: reg})
	if err != nil {
		t.Fatal(err)
	}
	return New(Config{Rules: rs, Actions: reg, Logger: logger, Journal: j}), c
}

// deliverAndWait delivers m and waits for its settlement.
func deliverAndWait(t *testing.T, r *Runner, m *Message) string {
	t.Helper()
	s := newSettler()
	m.Settler = s
	if err := r.Deliver(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	return <-s.done
}

func roleMsg(source string, granted bool) *Message {
	body := fmt.Sprintf(`{"project_uuid": "p1", "user_uuid": "u1", "user_username": "alice", "granted": %v}`, granted)
	// The id is the hash of the payload, as Waldur's x-message-id is.
	return &Message{Source: source, Type: "user_role", ID: fmt.Sprintf("hash-%v", granted), Body: []byte(body)}
}

func TestGrantRevokeWithIdenticalPayloadsAllRun(t *testing.T) {
	r, c := countingRunner(t, NewMemoryJournal(0, 0))
	for i, granted := range []bool{true, false, true, false} {
		if fate := deliverAndWait(t, r, roleMsg("stomp", granted)); fate != "ack" {
			t.Fatalf("message %d: fate %q", i, fate)
		}
		if n := c.count(); n != i+1 {
			t.Fatalf("after message %d (granted=%v) the plan ran %d times, want %d: a state change was skipped", i, granted, n, i+1)
		}
	}
	// An exact republish with nothing between is the same delivery again.
	if fate := deliverAndWait(t, r, roleMsg("stomp", false)); fate != "ack" {
		t.Fatalf("republish: fate %q", fate)
	}
	if n := c.count(); n != 4 {
		t.Errorf("the republished revoke ran (%d runs, want 4)", n)
	}
	if d := testCounter(r.m.Duplicates.WithLabelValues("stomp", "user_role")); d != 1 {
		t.Errorf("duplicates counted %v, want 1", d)
	}
}

func TestIdsOfAnotherSourceDoNotSuppress(t *testing.T) {
	r, c := countingRunner(t, NewMemoryJournal(0, 0))
	// An event pushed over HTTP with the id a broker message will carry.
	deliverAndWait(t, r, roleMsg("http", true))
	deliverAndWait(t, r, roleMsg("stomp", true))
	if n := c.count(); n != 2 {
		t.Errorf("the broker message with the id an HTTP push used ran %d times in all, want 2 (ids are scoped by source)", n-1)
	}
}

func TestDedupWindowExpires(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	j := NewMemoryJournalWith(MemoryOptions{Window: time.Minute, Now: clk.Now})
	r, c := countingRunner(t, j)
	deliverAndWait(t, r, roleMsg("stomp", true))
	clk.Add(59 * time.Second)
	deliverAndWait(t, r, roleMsg("stomp", true))
	if n := c.count(); n != 1 {
		t.Fatalf("a redelivery within the window ran (%d runs)", n)
	}
	clk.Add(2 * time.Second)
	deliverAndWait(t, r, roleMsg("stomp", true))
	if n := c.count(); n != 2 {
		t.Errorf("a message after the window was skipped (%d runs, want 2)", n)
	}
}

// TestJournalKeepsTheNewestEntries: past MaxEntries the oldest handled ids
// go first, however often the journal's queue has grown and wrapped round,
// and an id completed again counts from its newest completion.
func TestJournalKeepsTheNewestEntries(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	const max = 100
	j := NewMemoryJournalWith(MemoryOptions{Window: time.Hour, MaxEntries: max, Now: clk.Now})
	id := func(i int) string { return strconv.Itoa(i) }
	complete := func(i int) {
		clk.Add(time.Millisecond)
		j.Apply(Completion{Source: "s", ID: id(i), Keys: []string{"k" + id(i)}, Fate: FateAcked}, clk.Now())
	}
	for i := range 1000 {
		complete(i)
		if i == 950 {
			complete(3) // back after being pruned long ago: it is among the newest now
		}
	}
	if ids, keys := j.Len(); ids != max || keys != max {
		t.Fatalf("journal holds %d ids and %d keys, want %d each", ids, keys, max)
	}
	for i := range 1000 {
		_, dup := j.Duplicate("s", id(i), []string{"k" + id(i)})
		if want := i == 3 || i > 1000-max; dup != want {
			t.Errorf("id %d held: %v, want %v", i, dup, want)
		}
	}
}
