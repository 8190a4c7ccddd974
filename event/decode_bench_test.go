package event

import (
	"strings"
	"testing"
)

// Bodies as Waldur sends them over the broker: the payload itself. An order
// message carries three fields (the agent fetches the order); a resource
// message a few more. The "large" body stands for an event whose payload
// a site enriches (limits, a list of users): 100 users, about 8 KiB.
var (
	orderBody    = []byte(`{"offering_uuid":"0f2c1e6b5d2a4c39a8e7f1b2c3d4e5f6","order_uuid":"5c1f0a9e8d7b4c3a9f2e1d0c8b7a6f51","order_state":"executing"}`)
	resourceBody = []byte(`{"offering_uuid":"0f2c1e6b5d2a4c39a8e7f1b2c3d4e5f6","resource_uuid":"4d5e6f7a8b9c40d1e2f3a4b5c6d7e8f9","resource_backend_id":"hpc_climate-sim-7f3a","paused":false,"downscaled":true,"restrict_member_access":false,"sequence_number":13}`)
	largeBody    = func() []byte {
		var b strings.Builder
		b.WriteString(`{"offering_uuid":"0f2c1e6b5d2a4c39a8e7f1b2c3d4e5f6","limits":{"cpu":1000,"mem":2048,"gpu":4},"users":[`)
		for i := range 100 {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`{"username":"user` + strings.Repeat("x", 8) + `","uuid":"1a2b3c4d5e6f47a8b9c0d1e2f3a4b5c6","role":"PROJECT.MEMBER"}`)
		}
		b.WriteString(`]}`)
		return []byte(b.String())
	}()
)

// BenchmarkDecodePayload measures what the runner does with every broker
// message before matching: size and UTF-8 checks, the nesting pre-scan,
// json decoding with UseNumber and the number normalisation.
//
// Allocation budget: encoding/json into map[string]any costs about one
// allocation per JSON value plus one per object key (the map, its strings,
// the json.Number strings, the decoder and its buffer). For the 3-field
// order that is ~20 allocations and ~1.5 KiB; it is linear in the payload
// size and there is no per-message allocation that does not scale with
// it except the decoder (~5 allocations). A hand-written decoder could
// halve this, but decoding is a minor share of a message's cost next to
// the broker round trip (see BENCHMARKS.md), so encoding/json stays.
func BenchmarkDecodePayload(b *testing.B) {
	for _, c := range []struct {
		name string
		body []byte
	}{{"order", orderBody}, {"resource", resourceBody}, {"large-8KiB", largeBody}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.body)))
			for b.Loop() {
				ev, err := DecodePayload(c.body, "order", "", Limits{})
				if err != nil || ev.Type != "order" {
					b.Fatal(err)
				}
			}
		})
	}
}
