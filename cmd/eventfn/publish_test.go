package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eventfn/eventfn/internal/brokertest"
)

func TestPublishUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"publish", "ev.json"}, "--to URL is required"},
		{[]string{"publish", "--to", "stomp://h", "--queue", "q", "--destination", "/d", "ev.json"}, "not both"},
		{[]string{"publish", "--to", "stomp://h", "--queue", "q"}, "name event files"},
		{[]string{"publish", "--to", "stomp://h", "--queue", "q", "--login", "u", "ev.json"}, "--login needs --passcode-file or --passcode-env"},
	} {
		code, _, errs := cli(t, tc.args...)
		if code != 2 || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: code %d, %q; want 2 and %q", tc.args, code, errs, tc.want)
		}
	}
	code, _, errs := cli(t, "publish", "--help")
	if code != 0 || !strings.Contains(errs, "example:") {
		t.Errorf("--help: code %d:\n%s", code, errs)
	}
}

func TestPublishCommand(t *testing.T) {
	b := brokertest.New(t)
	vhost := b.VHost(brokertest.Unique("eventfn-test-"))
	b.WaldurQueue(vhost, "orders_order")
	b.WaldurQueue(vhost, "orders_resource")
	dir := t.TempDir()
	ev := filepath.Join(dir, "events.jsonl")
	os.WriteFile(ev, []byte(`{"type":"order","payload":{"order_uuid":"o1"}}
{"type":"resource","payload":{"resource_uuid":"r1"}}
`), 0o600)
	t.Setenv("EVENTFN_TEST_RMQ_PASS", brokertest.AdminPass)
	code, out, errs := cli(t, "publish", "--to", "stomp+ws://"+brokertest.WebSTOMPAddr+"/ws", "--vhost", vhost,
		"--login", brokertest.AdminUser, "--passcode-env", "EVENTFN_TEST_RMQ_PASS", "--queue", "orders_{type}", ev)
	if code != 0 || !strings.Contains(out, "published 2 messages") {
		t.Fatalf("code %d: %s %s", code, out, errs)
	}
	if m := b.Get(vhost, "orders_order", 10); len(m) != 1 || m[0].Payload != `{"order_uuid":"o1"}` {
		t.Errorf("orders_order holds %+v", m)
	}
	if m := b.Get(vhost, "orders_resource", 10); len(m) != 1 || m[0].Payload != `{"resource_uuid":"r1"}` {
		t.Errorf("orders_resource holds %+v", m)
	}
	code, _, errs = cli(t, "publish", "--to", "stomp://"+brokertest.STOMPAddr, "--vhost", vhost,
		"--login", brokertest.AdminUser, "--passcode-env", "NOT_SET_ANYWHERE", "--queue", "q", ev)
	if code != 2 || !strings.Contains(errs, "NOT_SET_ANYWHERE is not set") {
		t.Errorf("unset passcode variable: code %d: %s", code, errs)
	}
}
