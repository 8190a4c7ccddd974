package runner

import (
	"strings"
	"time"

	"github.com/eventfn/eventfn/event"
	"github.com/eventfn/eventfn/rules"
)

// DefaultDedupWindow is how long a handled message id is remembered for
// de-duplication when runner.dedup_window is not set. Waldur's publisher
// retries within seconds; a broker redelivers at once after a lost ack.
const DefaultDedupWindow = 10 * time.Minute

// entityFields are the payload fields naming the Waldur entity an event is
// about, per event type (see /work/shared/waldur-events.md), in the order
// they make up the key.
var entityFields = map[string][]string{
	"order":                            {"order_uuid"},
	"user_role":                        {"project_uuid", "user_uuid"},
	"resource":                         {"resource_uuid"},
	"offering_user":                    {"offering_user_uuid"},
	"service_account":                  {"account_uuid"},
	"course_account":                   {"account_uuid"},
	"importable_resources":             {"backend_resource_request_uuid"},
	"resource_periodic_limits":         {"resource_uuid"},
	"resource_api_key_rotation":        {"resource_uuid"},
	"resource_end_date_change_request": {"resource_uuid"},
}

// genericEntityFields are tried, first present wins, for types not in
// entityFields.
var genericEntityFields = []string{"order_uuid", "resource_uuid", "offering_user_uuid", "account_uuid", "user_uuid", "project_uuid"}

// maxKeyPart bounds a payload value taken into a key: longer values are
// not uuids and are not used.
const maxKeyPart = 128

// EntityKey returns the de-duplication key of an event when no rule gives
// one: the event type and the uuid(s) of the Waldur entity it is about:
// order_uuid for order, project_uuid and user_uuid for user_role (a
// project resync, without user_uuid, keys by project), resource_uuid for
// resource and its limits, offering_user_uuid for offering_user,
// account_uuid for service and course accounts,
// backend_resource_request_uuid for importable_resources; for other types
// the first of order_uuid, resource_uuid, offering_user_uuid,
// account_uuid, user_uuid, project_uuid present. Only non-empty strings of
// up to 128 bytes count. An event naming no entity keys by its type alone,
// so that any other event of its type handled in between makes a repeat
// of it run again: the conservative choice, running rather than skipping.
func EntityKey(ev *event.Event) string {
	fields, known := entityFields[ev.Type]
	if !known {
		fields = genericEntityFields
	}
	// One buffer for the whole key: "entity:" type ("|" field "=" value)…
	var b []byte
	for _, f := range fields {
		v, ok := keyPart(ev.Payload, f)
		if !ok {
			continue
		}
		if b == nil {
			b = make([]byte, 0, 64)
			b = append(append(b, "entity:"...), ev.Type...)
		}
		b = append(append(append(append(b, '|'), f...), '='), v...)
		if !known {
			break // the first generic field names the entity
		}
	}
	if b == nil {
		return "type:" + ev.Type
	}
	return string(b)
}

func keyPart(p map[string]any, f string) (string, bool) {
	s, ok := p[f].(string)
	if !ok || s == "" || len(s) > maxKeyPart {
		return "", false
	}
	return s, true
}

// rulePrefix starts the de-duplication key of a rule's key.
const rulePrefix = "rule:"

// hasRuleKey reports whether keys holds rulePrefix+k.
func hasRuleKey(keys []string, k string) bool {
	for _, o := range keys {
		if rest, ok := strings.CutPrefix(o, rulePrefix); ok && rest == k {
			return true
		}
	}
	return false
}

// dedupKeys returns the keys a message's handling is recorded under: the
// key of each rule that may run for it where the rule has one, else the
// event's EntityKey (also when no rule may run), without repeats.
func dedupKeys(ev *event.Event, plans []rules.Candidate) []string {
	var keys []string
	add := func(k string) {
		for _, o := range keys {
			if o == k {
				return
			}
		}
		keys = append(keys, k)
	}
	entity := ""
	for _, p := range plans {
		if p.Key != "" {
			// Many rules of a type share one key: the key is built once,
			// not once per rule (1,000 rules: 1,000 allocations).
			if !hasRuleKey(keys, p.Key) {
				keys = append(keys, rulePrefix+p.Key)
			}
			continue
		}
		if entity == "" {
			entity = EntityKey(ev)
		}
		add(entity)
	}
	if len(keys) == 0 {
		add(EntityKey(ev))
	}
	return keys
}
