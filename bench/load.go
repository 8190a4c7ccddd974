package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/eventfn/eventfn/publish"
)

// Fields the benchmark adds to each payload. The publish time travels in
// the payload as well as in the x-eventfn-published-at header because
// MQTT 3.1.1 carries no headers.
const (
	fieldPublishedAt = "eventfn_published_at" // unix nanoseconds
	fieldSeq         = "eventfn_seq"
)

// generator makes the order events of one run: the payload Waldur sends
// for an order (offering_uuid, order_uuid, order_state), each with an
// order_uuid of its own (so every message has its own x-message-id and
// its own dispatch key) plus the benchmark's two fields.
type generator struct {
	prefix   string // 16 hex digits, the first half of every order_uuid
	offering string
	// pad, when > 0, grows each payload to about pad bytes with an
	// "attributes" object of 64-byte string fields (an order's
	// attributes, as Waldur sends them), for the cost by payload size.
	pad int
}

func newGenerator(offering string) *generator {
	return &generator{prefix: randomHex(8), offering: offering}
}

// withPad sets the payload size (see pad) and returns g.
func (g *generator) withPad(n int) *generator {
	g.pad = n
	return g
}

// body returns message i's payload, published at now: a new slice each
// time, as publishers hold on to it until it is written.
func (g *generator) body(i int, now time.Time) []byte {
	b := make([]byte, 0, 192)
	b = append(b, `{"`+fieldPublishedAt+`":`...)
	b = strconv.AppendInt(b, now.UnixNano(), 10)
	b = append(b, `,"`+fieldSeq+`":`...)
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, `,"offering_uuid":"`...)
	b = append(b, g.offering...)
	b = append(b, `","order_uuid":"`...)
	b = append(b, g.prefix...)
	b = fmt.Appendf(b, "%016x", i)
	b = append(b, `","order_state":"executing"`...)
	if g.pad > len(b)+len(`,"attributes":{}}`) {
		b = append(b, `,"attributes":{`...)
		// Fields "a0000001":"…" of 64 bytes with their comma (10 + 1 + 52
		// + 1), the last one shorter to come to pad with the two braces.
		for n := 0; ; n++ {
			room := g.pad - len(b) - 2 // the closing braces
			if n > 0 {
				room-- // the comma
			}
			if room < 13 {
				break
			}
			if n > 0 {
				b = append(b, ',')
			}
			v := min(room-13, 50)
			b = fmt.Appendf(b, `"a%07d":"%s"`, n, strings.Repeat("x", v))
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

// publishedAt reads the publish time from a payload the generator made
// (its first field), without decoding the JSON.
func publishedAt(body []byte) (int64, bool) {
	const prefix = `{"` + fieldPublishedAt + `":`
	if !bytes.HasPrefix(body, []byte(prefix)) {
		return 0, false
	}
	rest := body[len(prefix):]
	end := bytes.IndexByte(rest, ',')
	if end < 0 {
		return 0, false
	}
	ns, err := strconv.ParseInt(string(rest[:end]), 10, 64)
	return ns, err == nil
}

// loadStats say how publishing went.
type loadStats struct {
	Sent    int
	Elapsed time.Duration
	// Behind is how late the last message left against the schedule of a
	// paced run: a publisher that cannot keep the rate.
	Behind time.Duration
}

// sendAll publishes n messages to dest through p: as fast as the broker
// confirms them (rate 0), or paced at rate per second. Each message gets
// Waldur's headers and the publish time, taken just before it is sent.
// p is closed (waiting for the last confirmations) before it returns.
func sendAll(ctx context.Context, p publish.Publisher, g *generator, vhost, dest string, n int, rate float64) (loadStats, error) {
	start := time.Now()
	var st loadStats
	var err error
	for i := range n {
		if rate > 0 {
			due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				if !sleep(ctx, d) {
					err = ctx.Err()
					break
				}
			} else if i == n-1 {
				st.Behind = -d
			}
		}
		now := time.Now()
		body := g.body(i, now)
		if err = p.Publish(ctx, publish.WaldurMessage(vhost, dest, body, nil, now)); err != nil {
			err = fmt.Errorf("publishing message %d: %w", i+1, err)
			break
		}
		st.Sent++
	}
	if cerr := p.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("publisher: %w", cerr)
	}
	st.Elapsed = time.Since(start)
	return st, err
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
