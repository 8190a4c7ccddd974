package stomp_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eventfn/eventfn/internal/brokertest"
	"github.com/eventfn/eventfn/runner"
	"github.com/eventfn/eventfn/runner/stomp"
	"github.com/eventfn/eventfn/waldur"
	"github.com/eventfn/eventfn/waldur/waldurtest"
)

// The Waldur source against the fake Waldur API (waldurtest) and the real
// broker. The fake cannot create RabbitMQ users, vhosts or queues, so the
// test plays the part of Waldur's server: it asks the fake for what it would
// answer (the API is idempotent: the same subscriptions and queues come back
// to eventfn) and provisions exactly that on the broker through the
// management API, as Waldur's server does: vhost = the user's UUID, a user
// per subscription with the token as password, queues with Waldur's
// arguments. eventfn then registers through the same API and must find, log
// in to and consume those queues.

const waldurToken = "waldur-test-token-0123456789"

func TestWaldurPerTypeQueues(t *testing.T) {
	b := brokertest.New(t)
	api := waldurtest.NewServer(waldurToken)
	t.Cleanup(api.Close)
	offering := waldurtest.NewUUID()
	types := sevenTypes

	// Waldur's server side: what the registration will produce, provisioned.
	c, err := waldur.New(api.URL, waldurToken)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	id, err := c.GetOrCreateAgentIdentity(ctx, offering, "", "test")
	if err != nil {
		t.Fatal(err)
	}
	vhost := b.VHost(api.UserUUID)
	queues := map[string]string{}
	for _, typ := range types {
		sub, err := c.RegisterEventSubscription(ctx, id.UUID, typ)
		if err != nil {
			t.Fatal(err)
		}
		q, err := c.CreateQueue(ctx, sub.UUID, offering, typ)
		if err != nil {
			t.Fatal(err)
		}
		b.User(vhost, waldur.NormalizeUUID(sub.UUID), waldurToken)
		b.WaldurQueue(vhost, q.QueueName)
		queues[typ] = q.QueueName
	}
	api.Reset()

	logger, logs := newLogger(t)
	rec := newRecorder()
	reg := registry(logger, rec)
	rs := parseRules(t, reg, `
version: 1
rules:
  - name: all
    on: "*"
    steps:
      - record: "{{ type }} {{ payload.offering_uuid }}"
`)
	m := runner.NewMetrics()
	spec := stomp.WaldurSettings{Waldur: &stomp.WaldurSection{
		APIURL: api.URL, TokenEnv: "WALDUR_TOKEN", Offerings: []string{offering}, ObjectTypes: types,
		BrokerURL: wsURL(),
	}}
	src, err := stomp.WaldurFromSettings("waldur", "waldur", spec, stomp.Deps{Logger: logger, Metrics: m, Version: "test",
		Backoff:   stomp.Backoff{Initial: 100 * time.Millisecond, Max: time.Second},
		LookupEnv: func(k string) (string, bool) { return waldurToken, k == "WALDUR_TOKEN" }})
	if err != nil {
		t.Fatal(err)
	}
	rr := startRunner(t, runner.Config{Rules: rs, Actions: reg, Sources: []runner.Source{src}, Logger: logger, Metrics: m})
	rr.waitReady(t, 20*time.Second)

	var want []string
	for _, typ := range types {
		b.Publish(vhost, queues[typ], payload(t, map[string]any{"offering_uuid": offering}))
		want = append(want, typ+" "+offering)
	}
	got := rec.waitN(t, len(want), 20*time.Second)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}

	// Registration: identity looked up and updated, a subscription and a
	// queue per type; no calls per message.
	count := map[string]int{}
	for _, call := range api.Calls() {
		switch {
		case strings.HasSuffix(call.Path, "/register_event_subscription/"):
			count["subscription"]++
		case strings.HasSuffix(call.Path, "/create_queue/"):
			count["queue"]++
		case strings.HasPrefix(call.Path, "/api/marketplace-site-agent-identities/"):
			count[call.Method+" identity"]++
		default:
			count["other "+call.Path]++
		}
	}
	wantCalls := map[string]int{"subscription": 7, "queue": 7, "GET identity": 1, "PUT identity": 1}
	if fmt.Sprint(count) != fmt.Sprint(wantCalls) {
		t.Errorf("API calls = %v, want %v", count, wantCalls)
	}
	// One connection per broker login (Waldur gives each type its own
	// subscription, hence its own login): 7, not 7 per offering.
	if n := strings.Count(logs.String(), "connected to broker and subscribed"); n != len(types) {
		t.Errorf("%d connections, want %d", n, len(types))
	}
}

func TestWaldurConsumerQueue(t *testing.T) {
	b := brokertest.New(t)
	api := waldurtest.NewServer(waldurToken)
	t.Cleanup(api.Close)
	offering := waldurtest.NewUUID()

	c, err := waldur.New(api.URL, waldurToken)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	id, err := c.GetOrCreateAgentIdentity(ctx, offering, "site-agent", "test")
	if err != nil {
		t.Fatal(err)
	}
	q, err := c.RegisterQueue(ctx, id.UUID, []string{"order", "user_role"})
	if err != nil {
		t.Fatal(err)
	}
	vhost := b.VHost(q.VHost)
	b.User(vhost, q.RMQUsername, waldurToken)
	b.WaldurQueue(vhost, q.QueueName)

	logger, _ := newLogger(t)
	rec := newRecorder()
	reg := registry(logger, rec)
	rs := parseRules(t, reg, `
version: 1
rules:
  - name: all
    on: [order, user_role]
    steps:
      - record: "{{ type }} {{ payload.n }}"
`)
	m := runner.NewMetrics()
	spec := stomp.WaldurSettings{Waldur: &stomp.WaldurSection{
		APIURL: api.URL, TokenEnv: "WALDUR_TOKEN", Offerings: []string{offering}, ObjectTypes: []string{"order", "user_role"},
		Mode: stomp.ModeConsumerQueue, BrokerURL: tcpURL(), AgentName: "site-agent",
	}}
	src, err := stomp.WaldurFromSettings("waldur", "waldur", spec, stomp.Deps{Logger: logger, Metrics: m,
		LookupEnv: func(k string) (string, bool) { return waldurToken, k == "WALDUR_TOKEN" }})
	if err != nil {
		t.Fatal(err)
	}
	rr := startRunner(t, runner.Config{Rules: rs, Actions: reg, Sources: []runner.Source{src}, Logger: logger, Metrics: m})
	rr.waitReady(t, 20*time.Second)
	b.Publish(vhost, q.QueueName, payload(t, map[string]any{"object_type": "order", "schema_version": 1, "n": 1}))
	b.Publish(vhost, q.QueueName, payload(t, map[string]any{"object_type": "user_role", "schema_version": 1, "n": 2}))
	got := rec.waitN(t, 2, 20*time.Second)
	slices.Sort(got)
	if want := []string{"order 1", "user_role 2"}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if n := len(api.Identities()); n != 1 {
		t.Errorf("%d identities, want 1 (found by name, not created again)", n)
	}
}

// TestWaldurRegistrationRetried: the API failing at start is retried; the
// source stays not ready meanwhile.
func TestWaldurRegistrationRetried(t *testing.T) {
	b := brokertest.New(t)
	api := waldurtest.NewServer(waldurToken)
	t.Cleanup(api.Close)
	offering := waldurtest.NewUUID()
	c, _ := waldur.New(api.URL, waldurToken)
	ctx := context.Background()
	id, err := c.GetOrCreateAgentIdentity(ctx, offering, "", "test")
	if err != nil {
		t.Fatal(err)
	}
	sub, err := c.RegisterEventSubscription(ctx, id.UUID, "order")
	if err != nil {
		t.Fatal(err)
	}
	q, err := c.CreateQueue(ctx, sub.UUID, offering, "order")
	if err != nil {
		t.Fatal(err)
	}
	vhost := b.VHost(api.UserUUID)
	b.User(vhost, sub.UUID, waldurToken)
	b.WaldurQueue(vhost, q.QueueName)
	api.Reset()
	api.FailNext("event-subscriptions/"+sub.UUID+"/create_queue/", 503, 2)

	logger, logs := newLogger(t)
	reg := registry(logger, newRecorder())
	src, err := stomp.WaldurFromSettings("waldur", "", stomp.WaldurSettings{Waldur: &stomp.WaldurSection{
		APIURL: api.URL, TokenEnv: "T", Offerings: []string{offering}, ObjectTypes: []string{"order"}, BrokerURL: tcpURL(),
	}}, stomp.Deps{Logger: logger, Backoff: stomp.Backoff{Initial: 50 * time.Millisecond},
		LookupEnv: func(k string) (string, bool) { return waldurToken, k == "T" }})
	if err != nil {
		t.Fatal(err)
	}
	rr := startRunner(t, runner.Config{Rules: parseRules(t, reg, failingRules), Actions: reg, Sources: []runner.Source{src}, Logger: logger})
	rr.waitReady(t, 20*time.Second)
	if n := strings.Count(logs.String(), "registration with Waldur failed; retrying"); n != 2 {
		t.Errorf("%d failed registrations logged, want 2", n)
	}
}

// TestWaldurQueueGoneIsRegisteredAgain: when a queue disappears (Waldur's
// cleanup deleted it), the broker refuses the subscription as not found; the
// source registers the queue again through the API and resubscribes.
func TestWaldurQueueGoneIsRegisteredAgain(t *testing.T) {
	for _, tc := range []struct{ name, url string }{{"stomp", tcpURL()}, {"stomp+ws", wsURL()}} {
		t.Run(tc.name, func(t *testing.T) { testQueueGone(t, tc.url) })
	}
}

func testQueueGone(t *testing.T, brokerURL string) {
	b := brokertest.New(t)
	api := waldurtest.NewServer(waldurToken)
	t.Cleanup(api.Close)
	offering := waldurtest.NewUUID()
	c, _ := waldur.New(api.URL, waldurToken)
	ctx := context.Background()
	id, err := c.GetOrCreateAgentIdentity(ctx, offering, "", "test")
	if err != nil {
		t.Fatal(err)
	}
	sub, err := c.RegisterEventSubscription(ctx, id.UUID, "order")
	if err != nil {
		t.Fatal(err)
	}
	q, err := c.CreateQueue(ctx, sub.UUID, offering, "order")
	if err != nil {
		t.Fatal(err)
	}
	vhost := b.VHost(api.UserUUID)
	b.User(vhost, sub.UUID, waldurToken)
	b.WaldurQueue(vhost, q.QueueName)

	logger, logs := newLogger(t)
	rec := newRecorder()
	reg := registry(logger, rec)
	src, err := stomp.WaldurFromSettings("waldur", "", stomp.WaldurSettings{Waldur: &stomp.WaldurSection{
		APIURL: api.URL, TokenEnv: "T", Offerings: []string{offering}, ObjectTypes: []string{"order"}, BrokerURL: brokerURL,
	}}, stomp.Deps{Logger: logger, Backoff: stomp.Backoff{Initial: 100 * time.Millisecond, Max: 200 * time.Millisecond},
		LookupEnv: func(k string) (string, bool) { return waldurToken, k == "T" }})
	if err != nil {
		t.Fatal(err)
	}
	rs := parseRules(t, reg, "version: 1\nrules:\n  - {name: r, on: order, steps: [{record: '{{ payload.n }}'}]}\n")
	rr := startRunner(t, runner.Config{Rules: rs, Actions: reg, Sources: []runner.Source{src}, Logger: logger})
	rr.waitReady(t, 20*time.Second)
	api.Reset()

	b.DeleteQueue(vhost, q.QueueName)
	// Waldur's server, asked again, makes the queue again.
	brokertest.WaitFor(t, 20*time.Second, "create_queue called again", func() bool {
		for _, call := range api.Calls() {
			if strings.HasSuffix(call.Path, "/create_queue/") {
				return true
			}
		}
		return false
	})
	b.WaldurQueue(vhost, q.QueueName)
	rr.waitReady(t, 20*time.Second)
	b.Publish(vhost, q.QueueName, payload(t, map[string]any{"n": 5}))
	if got := rec.waitN(t, 1, 20*time.Second); got[0] != "5" {
		t.Fatalf("got %v", got)
	}
	if !strings.Contains(logs.String(), "queues registered again after a failed subscription") {
		t.Error("no log line about the re-registration")
	}
}
