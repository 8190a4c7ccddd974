package waldur

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Observable object types a site agent subscribes to.
const (
	TypeOrder                  = "order"
	TypeUserRole               = "user_role"
	TypeResource               = "resource"
	TypeOfferingUser           = "offering_user"
	TypeServiceAccount         = "service_account"
	TypeCourseAccount          = "course_account"
	TypeImportableResources    = "importable_resources"
	TypeResourcePeriodicLimits = "resource_periodic_limits"
)

// ObjectTypes returns (a fresh copy of) the observable object types known to
// Waldur's event subscriptions.
func ObjectTypes() []string {
	return []string{
		TypeOrder, TypeUserRole, TypeResource, TypeOfferingUser, TypeServiceAccount,
		TypeCourseAccount, TypeImportableResources, TypeResourcePeriodicLimits,
	}
}

var (
	// ErrInvalidUUID is wrapped by helpers given a UUID that is not 32 hex
	// digits (dashes allowed).
	ErrInvalidUUID = errors.New("waldur: invalid UUID")
	// ErrInvalidObjectType is wrapped by helpers given a malformed object type.
	ErrInvalidObjectType = errors.New("waldur: invalid object type")

	objectTypeRe = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	queueTypeRe  = regexp.MustCompile(`_offering_[0-9a-f]{32}_(.+)$`)
)

// NormalizeUUID strips dashes and lowercases s.
func NormalizeUUID(s string) string {
	return strings.ToLower(strings.ReplaceAll(s, "-", ""))
}

// ValidUUID reports whether s is 32 hex digits, optionally with dashes.
func ValidUUID(s string) bool {
	n := 0
	for _, r := range s {
		switch {
		case r == '-':
		case r >= '0' && r <= '9', r >= 'a' && r <= 'f', r >= 'A' && r <= 'F':
			n++
		default:
			return false
		}
	}
	return n == 32
}

// checkUUID returns the normalised form of s, or an error wrapping ErrInvalidUUID.
func checkUUID(what, s string) (string, error) {
	if !ValidUUID(s) {
		return "", fmt.Errorf("%w: %s %.64q", ErrInvalidUUID, what, s)
	}
	return NormalizeUUID(s), nil
}

func checkObjectType(t string) error {
	if !objectTypeRe.MatchString(t) {
		return fmt.Errorf("%w: %.64q", ErrInvalidObjectType, t)
	}
	return nil
}

// QueueName is the per-type queue of registration path 1a:
// "subscription_{sub_hex}_offering_{offering_hex}_{type}".
func QueueName(subscriptionUUID, offeringUUID, objectType string) string {
	return "subscription_" + NormalizeUUID(subscriptionUUID) +
		"_offering_" + NormalizeUUID(offeringUUID) + "_" + objectType
}

// Destination is the STOMP destination of an existing queue, "/amq/queue/<queue>".
// (Never "/queue/<queue>": that re-declares the queue and fails.)
func Destination(queue string) string { return "/amq/queue/" + queue }

// TypeFromQueue returns the object type at the end of a per-type queue name,
// the text after "_offering_<32 hex>_".
func TypeFromQueue(name string) (string, bool) {
	m := queueTypeRe.FindStringSubmatch(name)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// TypeFromTopic returns the last segment of an MQTT topic
// ("subscription/…/offering/…/order") or AMQP routing key ("….order").
func TypeFromTopic(topic string) string {
	return topic[strings.LastIndexAny(topic, "/.")+1:]
}

// MQTTTopic is the MQTT topic Waldur publishes a type to:
// "subscription/{sub}/offering/{offering}/{type}".
func MQTTTopic(subscriptionUUID, offeringUUID, objectType string) string {
	return "subscription/" + NormalizeUUID(subscriptionUUID) +
		"/offering/" + NormalizeUUID(offeringUUID) + "/" + objectType
}

// MessageID is the de-duplication id Waldur sends as x-message-id: the first
// 32 hex characters of sha256("{vhost}:{topic}:{payload}").
func MessageID(vhost, topic string, payload []byte) string {
	h := sha256.New()
	h.Write([]byte(vhost + ":" + topic + ":"))
	h.Write(payload)
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// BrokerLogin returns the RabbitMQ login of a per-type subscription (path 1a):
// the username is the subscription UUID and the vhost the owning user's UUID,
// both as 32 hex digits. The password is the Waldur API token.
func BrokerLogin(subscriptionUUID, userUUID string) (username, vhost string) {
	return NormalizeUUID(subscriptionUUID), NormalizeUUID(userUUID)
}
