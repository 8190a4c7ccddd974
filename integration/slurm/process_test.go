package slurm

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eventfn/eventfn/internal/brokertest"
	"github.com/eventfn/eventfn/waldur"
)

// TestExampleAsProcess runs the example's rules, unchanged, with a site's
// settings, as `eventfn run` in its own process, consuming Waldur's queues on
// the real RabbitMQ (published as Waldur publishes), against the real
// slurmdbd and the recording Waldur stand-in: a pending-provider Create
// order, then a role grant, then a revoke.
func TestExampleAsProcess(t *testing.T) {
	s := newSite(t) // accounts, fake Waldur, cleanup; its in-process runner is not used
	a := s.newAllocation()
	dir := t.TempDir()
	bin := filepath.Join(dir, "eventfn")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/eventfn").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	b := brokertest.New(t)
	vhost := b.VHost(brokertest.Unique("eventfn-slurm-"))
	login, pass := "agent-"+s.sfx, brokertest.Unique("pw-")
	b.User(vhost, login, pass)
	b.Queue(vhost, brokertest.WaldurDLQ, nil)
	queues := map[string]string{}
	var dests []string
	for _, typ := range []string{"order", "user_role"} {
		q := waldur.QueueName(login, s.offering, typ)
		b.WaldurQueue(vhost, q)
		queues[typ] = q
		dests = append(dests, fmt.Sprintf("%q", waldur.Destination(q)))
	}

	// the example's rules verbatim; the settings before them are the site's
	example, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(example), "\nrules:\n")
	if i < 0 {
		t.Fatal("no rules: in the example")
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(s.waldur.token), 0o600); err != nil {
		t.Fatal(err)
	}
	listen := freeAddr(t)
	cfg := fmt.Sprintf(`version: 1
vars:
  root_account: %[1]s
  default_account: %[1]s
  customer_prefix: %[2]s
  project_prefix: %[2]s
  allocation_prefix: %[2]s
  qos_default: normal
  qos_paused: %[3]s
  qos_downscaled: %[4]s
  default_account_policy: common
  fairshare: parent
  auto_approve: true
  limit_factors: {cpu: 60000, mem: 61440}
  tres_names: {}
  limit_kind: GrpTRESMins
  partitions: []
  create_homedirs: false
  homedir_umask: "0077"
  periodic_limits: false
  periodic_limit_type: GrpTRESMins
  offering_user_delete_removes: false
slurm:
  cluster: %[5]s
  conf: %[6]s
waldur:
  api_url: %[7]s
  token_file: %[8]s
sources:
  - name: waldur
    url: stomp://%[9]s
    vhost: %[10]s
    login: %[11]s
    passcode_env: SLURM_SITE_PASSCODE
    on_failure: dead-letter
    subscribe: [%[12]s]
runner:
  concurrency: 4
  state_dir: %[13]s
  shutdown_timeout: 30s
  listen: %[14]s
defaults:
  timeout: 60s
  retry: {attempts: 3, backoff: exponential, initial: 200ms, max: 2s}
`, s.root, s.prefix, s.paused, s.limited, s.env.cluster, s.env.conf, s.waldur.front.URL+"/api/", tokenFile,
		brokertest.STOMPAddr, vhost, login, strings.Join(dests, ", "), filepath.Join(dir, "state"), listen) +
		string(example[i+1:])
	cfgPath := filepath.Join(dir, "eventfn.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	cmd := exec.Command(bin, "run", "-c", cfgPath)
	cmd.Env = append(os.Environ(), "SLURM_SITE_PASSCODE="+pass, "SLURM_CONF="+s.env.conf)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(40 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("eventfn run:\n%s", logs.String())
		}
	})

	// --- a pending-provider Create order, published as Waldur publishes it
	order := s.waldur.AddOrder(waldur.Order{Type: "Create", State: waldur.OrderPendingProvider, OfferingUUID: s.offering,
		ProjectUUID: a.project, ResourceUUID: a.resource.UUID, MarketplaceResourceUUID: a.resource.UUID,
		Limits: map[string]any{"cpu": 10, "mem": 2}})
	publish := func(typ string, payload map[string]any) {
		payload["offering_uuid"] = s.offering
		body, _ := json.Marshal(payload)
		b.Publish(vhost, queues[typ], body)
	}
	publish("order", map[string]any{"order_uuid": order.UUID, "order_state": "pending-provider"})
	brokertest.WaitFor(t, 2*time.Minute, "the order done in Waldur", func() bool {
		o, _ := s.waldur.Order(order.UUID)
		return o.State == waldur.OrderDone
	})
	got := filterAssoc(s.env.assocs(t, s.prefix), a.alloc)
	want := []assoc{
		{Account: a.alloc, Parent: a.proj, GrpTRESMins: "cpu=600000,mem=120G", QOS: "normal"},
		{Account: a.alloc, User: a.userA, QOS: "normal"},
		{Account: a.alloc, User: a.userB, QOS: "normal"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("allocation:\n got  %v\n want %v", got, want)
	}
	o, r := "marketplace-orders/"+order.UUID+"/", "marketplace-provider-resources/"+a.resource.UUID+"/"
	calls := s.waldur.takeCalls()
	var rules []string
	for _, c := range calls { // the source's own registration calls are not the rules'
		if !strings.Contains(c, "marketplace-site-agent-identities") && !strings.Contains(c, "event-subscriptions") {
			rules = append(rules, c)
		}
	}
	wantCalls := []string{
		"GET " + o, "POST " + o + "approve_by_provider/", "GET " + o, "GET " + r, "GET " + r + "team/",
		"GET marketplace-provider-offerings/" + s.offering + "/list_project_service_accounts/",
		"GET marketplace-provider-offerings/" + s.offering + "/list_course_accounts/",
		"POST " + r + `set_backend_id/ {"backend_id":"` + a.alloc + `"}`,
		"POST " + r + `set_limits/ {"limits":{"cpu":10,"mem":2}}`,
		"GET " + o, "POST " + o + "set_state_done/",
	}
	if !slices.Equal(rules, wantCalls) {
		t.Errorf("Waldur calls:\n got  %q\n want %q", rules, wantCalls)
	}
	s.update(a, func(r *waldur.ProviderResource) { r.State = "OK" })

	// --- a role grant, then its revoke
	role := map[string]any{"user_uuid": a.userCUUID, "project_uuid": a.project, "role_name": "PROJECT.MEMBER", "granted": true}
	publish("user_role", role)
	brokertest.WaitFor(t, time.Minute, a.userC+" in "+a.alloc, func() bool {
		return slices.Contains(filterAssoc(s.env.assocs(t, s.prefix), a.alloc), assoc{Account: a.alloc, User: a.userC, QOS: "normal"})
	})
	publish("user_role", map[string]any{"user_uuid": a.userCUUID, "project_uuid": a.project, "role_name": "PROJECT.MEMBER",
		"granted": false, "timestamp": "later"}) // another message id
	brokertest.WaitFor(t, time.Minute, a.userC+" out of "+a.alloc, func() bool {
		return !slices.Contains(filterAssoc(s.env.assocs(t, s.prefix), a.alloc), assoc{Account: a.alloc, User: a.userC, QOS: "normal"})
	})
	if ready, unacked := b.Depth(vhost, brokertest.WaldurDLQ); ready+unacked != 0 {
		t.Errorf("%d messages dead-lettered", ready+unacked)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
