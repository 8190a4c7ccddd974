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
	// hugeBody is just under the default 1 MiB limit.
	hugeBody = func() []byte {
		var b strings.Builder
		b.WriteString(`{"users":[`)
		for i := 0; b.Len() < DefaultMaxBytes-200; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`{"username":"user` + strings.Repeat("x", 8) + `","uuid":"1a2b3c4d5e6f47a8b9c0d1e2f3a4b5c6","n":12}`)
		}
		b.WriteString(`]}`)
		return []byte(b.String())
	}()
)

// BenchmarkDecodePayload measures what the runner does with every broker
// message before matching: the size check and one pass of parse (syntax,
// nesting, UTF-8 and number conversion together).
//
// Allocation budget: one allocation per object (its map; more as it grows),
// per array, per string and per key, nothing per number, and nothing per
// message beyond the parser itself: 12 for the 3-field order (it was 18
// with encoding/json, UseNumber and a conversion walk, at ~3.7 µs against
// ~0.5 µs now). Memory and time are linear in the body: the 1 MiB body
// (a list of 12,000 users) costs about 7 times its size in memory, most of
// it the maps.
func BenchmarkDecodePayload(b *testing.B) {
	for _, c := range []struct {
		name string
		body []byte
	}{{"order", orderBody}, {"resource", resourceBody}, {"large-8KiB", largeBody}, {"huge-1MiB", hugeBody}} {
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
