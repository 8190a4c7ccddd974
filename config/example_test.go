package config_test

import (
	"fmt"

	"github.com/eventfn/eventfn/config"
)

func ExampleParse() {
	src := []byte(`version: 1
sources:
  - name: rmq
    url: mqtt://127.0.0.1:1883
    subscribe: [subscription/+/offering/+/order]
    prefetch: 10
rules:
  - {name: r, on: order, steps: [{log: "{{ type }}"}]}
`)
	_, err := config.Parse("eventfn.yaml", src, config.Options{})
	fmt.Println(err)
	// Output:
	// eventfn.yaml:6:5: unknown key "prefetch" in source "rmq" (mqtt) (known: vhost, login, passcode_file, passcode_env, subscribe, client_id, qos, type, type_field, type_segment, message_id, on_failure, dead_letter, heartbeat, tls, format)
}

func ExampleConfig_DeliverableTypes() {
	src := []byte(`version: 1
sources:
  - name: rmq
    url: mqtt://127.0.0.1:1883
    subscribe: [subscription/+/offering/+/order, subscription/+/offering/+/user_role]
rules:
  - {name: r, on: order, steps: [{log: "{{ type }}"}]}
`)
	c, err := config.Parse("eventfn.yaml", src, config.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.DeliverableTypes())
	// Output:
	// [order user_role] false
}
