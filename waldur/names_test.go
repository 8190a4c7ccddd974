package waldur_test

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"testing"

	"github.com/eventfn/eventfn/waldur"
)

const (
	subDashed = "0A1B2C3D-4E5F-6071-8293-A4B5C6D7E8F9"
	subHex    = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
	offHex    = "ffeeddccbbaa99887766554433221100"
)

func TestNormalizeUUID(t *testing.T) {
	for in, want := range map[string]string{
		subDashed: subHex,
		subHex:    subHex,
		"":        "",
		"A-b-C":   "abc",
	} {
		if got := waldur.NormalizeUUID(in); got != want {
			t.Errorf("NormalizeUUID(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValidUUID(t *testing.T) {
	for in, want := range map[string]bool{
		subDashed:            true,
		subHex:               true,
		subHex[:31]:          false,
		subHex + "0":         false,
		"../" + subHex[3:]:   false,
		subHex[:30] + "/x":   false,
		subHex[:31] + "g":    false,
		"":                   false,
		subHex[:16] + "%2e.": false,
	} {
		if got := waldur.ValidUUID(in); got != want {
			t.Errorf("ValidUUID(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestQueueNaming(t *testing.T) {
	q := waldur.QueueName(subDashed, offHex, "order")
	if want := "subscription_" + subHex + "_offering_" + offHex + "_order"; q != want {
		t.Fatalf("QueueName = %q, want %q", q, want)
	}
	if d := waldur.Destination(q); d != "/amq/queue/"+q {
		t.Errorf("Destination = %q", d)
	}

	tests := []struct {
		name, want string
		ok         bool
	}{
		{q, "order", true},
		{waldur.QueueName(subHex, offHex, "resource_periodic_limits"), "resource_periodic_limits", true},
		{waldur.QueueName(subHex, offHex, "user_role"), "user_role", true},
		{"subscription_x_offering_" + offHex[:31] + "_order", "", false},
		{"subscription_" + subHex + "_offering_" + offHex + "_", "", false},
		{"consumer_" + subHex, "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := waldur.TypeFromQueue(tt.name)
		if got != tt.want || ok != tt.ok {
			t.Errorf("TypeFromQueue(%q) = %q, %v; want %q, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

func TestTopics(t *testing.T) {
	topic := waldur.MQTTTopic(subDashed, offHex, "offering_user")
	if want := "subscription/" + subHex + "/offering/" + offHex + "/offering_user"; topic != want {
		t.Fatalf("MQTTTopic = %q, want %q", topic, want)
	}
	for in, want := range map[string]string{
		topic: "offering_user",
		"subscription." + subHex + ".offering." + offHex + ".order": "order",
		"order": "order",
		"a/b/":  "",
	} {
		if got := waldur.TypeFromTopic(in); got != want {
			t.Errorf("TypeFromTopic(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMessageID(t *testing.T) {
	payload := []byte(`{"order_uuid":"` + subHex + `","order_state":"pending-provider"}`)
	sum := sha256.Sum256([]byte("vh:topic:" + string(payload)))
	want := hex.EncodeToString(sum[:])[:32]
	if got := waldur.MessageID("vh", "topic", payload); got != want {
		t.Fatalf("MessageID = %q, want %q", got, want)
	}
	if waldur.MessageID("vh", "topic", nil) == waldur.MessageID("vh2", "topic", nil) {
		t.Error("MessageID ignores vhost")
	}
	if n := len(waldur.MessageID("", "", nil)); n != 32 {
		t.Errorf("len(MessageID) = %d", n)
	}
}

func TestBrokerLogin(t *testing.T) {
	user, vhost := waldur.BrokerLogin(subDashed, "AABBCCDD-0000-1111-2222-333344445555")
	if user != subHex || vhost != "aabbccdd000011112222333344445555" {
		t.Fatalf("BrokerLogin = %q, %q", user, vhost)
	}
}

func TestObjectTypes(t *testing.T) {
	want := []string{"order", "user_role", "resource", "offering_user", "service_account",
		"course_account", "importable_resources", "resource_periodic_limits"}
	got := waldur.ObjectTypes()
	if !slices.Equal(got, want) {
		t.Fatalf("ObjectTypes = %v", got)
	}
	got[0] = "mutated"
	if waldur.ObjectTypes()[0] != "order" {
		t.Fatal("ObjectTypes shares its slice")
	}
}
