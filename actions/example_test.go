package actions_test

import (
	"fmt"

	"github.com/eventfn/eventfn/actions"
)

// Preview shows the exact effect a step would have, without running it.
func ExampleRegistry_Preview() {
	reg := actions.Standard(actions.Options{WaldurURL: "https://waldur.example.org/api/"})
	eff, err := reg.Preview("waldur", actions.Request{Params: map[string]any{
		"method": "post", "path": "marketplace-orders/abc/set_state_erred/",
		"body": map[string]any{"error_message": "boom"},
	}})
	if err != nil {
		fmt.Println(err)
		return
	}
	r := eff.Requests[0]
	fmt.Println(r.Method, r.URL)
	fmt.Println(r.Headers["Authorization"], r.Body)
	// Output:
	// POST https://waldur.example.org/api/marketplace-orders/abc/set_state_erred/
	// Token *** {"error_message":"boom"}
}

// Check finds at load what Run would refuse; values holding {{ }} wait
// until they are rendered.
func ExampleRegistry_Check() {
	reg := actions.Builtin()
	for _, err := range reg.Check("webhook", map[string]any{
		"url": "ftp://files.example.org", "method": "PSOT", "body": "{{ payload }}", "retries": 3,
	}) {
		fmt.Println(err)
	}
	// Output:
	// retries: unknown key "retries" for webhook (known: body, headers, hmac_secret_file, max_response, method, ok_status, url)
	// method: "PSOT" is not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS (did you mean POST?)
	// url: "ftp://files.example.org": scheme "ftp": want http or https
}
