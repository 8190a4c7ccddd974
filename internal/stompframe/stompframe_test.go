package stompframe

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/go-stomp/stomp/v3/frame"
)

// chunked returns r's bytes n at a time (at least one), as a connection
// delivers a stream in pieces.
type chunked struct {
	b []byte
	n int
}

func (c *chunked) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), c.n, len(c.b))
	copy(p, c.b[:n])
	c.b = c.b[n:]
	return n, nil
}

// taken is a frame a test's Take accepted, and where it was in the
// reader's stream.
type taken struct {
	f   *Frame
	raw []byte
	at  int64 // bytes the reader had been given before it
}

// demux runs stream through a Demux, read chunk bytes at a time, taking the
// MESSAGE frames accept accepts. It returns what the reader got, the frames
// taken and the error Read ended with.
func demux(t *testing.T, stream []byte, chunk, maxTake int, accept func(*Frame) bool) ([]byte, []taken, error) {
	t.Helper()
	d := NewDemux(&chunked{b: stream, n: max(chunk, 1)})
	d.keepAlive = 0
	if maxTake > 0 {
		d.maxTake = maxTake
	}
	var got []taken // frames taken, and the EOLs after them (f nil)
	d.SetTake(func(f *Frame) bool {
		if !accept(f) {
			return false
		}
		c := *f
		got = append(got, taken{f: &c, raw: bytes.Clone(f.raw), at: d.emitted})
		return true
	})
	d.skipped = func(b []byte) {
		if len(bytes.Trim(b, "\r\n")) != 0 {
			t.Fatalf("took %q as EOLs", b)
		}
		got = append(got, taken{raw: bytes.Clone(b), at: d.emitted})
	}
	var out []byte
	p := make([]byte, 1+chunk%7*100)
	for {
		n, err := d.Read(p)
		out = append(out, p[:n]...)
		if err != nil {
			return out, got, err
		}
		if n == 0 && len(out) > 10*len(stream)+100 {
			t.Fatal("Read makes no progress")
		}
	}
}

// frames parses b as go-stomp does: every frame (heart-beats left out) and
// the error reading stopped at.
func frames(b []byte) ([]*frame.Frame, error) {
	r := frame.NewReader(bytes.NewReader(b))
	var fs []*frame.Frame
	for {
		f, err := r.Read()
		if err != nil {
			return fs, err
		}
		if f != nil {
			fs = append(fs, f)
		}
	}
}

func sameFrame(a *frame.Frame, cmd string, h Header, body []byte) bool {
	if a.Command != cmd || a.Header.Len() != h.Len() || !bytes.Equal(a.Body, body) {
		return false
	}
	for i := range h.Len() {
		k, v := a.Header.GetAt(i)
		if hk, hv := h.At(i); k != hk || v != hv {
			return false
		}
	}
	return true
}

func headerOf(f *frame.Frame) Header {
	var h Header
	for i := range f.Header.Len() {
		k, v := f.Header.GetAt(i)
		h = append(h, k, v)
	}
	return h
}

// checkDemux asserts what a Demux must do with any stream: the reader's
// bytes with the taken frames put back where they were are the stream (less
// an incomplete last frame); each taken frame is what go-stomp parses from
// its bytes; and go-stomp reads from the reader's bytes exactly the frames
// it reads from the stream, less the taken ones, in order, ending with the
// same error.
func checkDemux(t *testing.T, stream []byte, chunk, maxTake int, accept func(*Frame) bool) []taken {
	t.Helper()
	out, got, err := demux(t, stream, chunk, maxTake, accept)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("Read ended with %v, want the source's io.EOF", err)
	}
	var rebuilt []byte
	pos := int64(0)
	for _, tk := range got {
		rebuilt = append(append(rebuilt, out[pos:tk.at]...), tk.raw...)
		pos = tk.at
		if tk.f == nil {
			continue
		}
		fs, ferr := frames(tk.raw)
		if ferr != io.EOF || len(fs) != 1 || !sameFrame(fs[0], tk.f.Command, tk.f.Header, tk.f.Body) {
			t.Fatalf("taken frame %q parsed as %+v (go-stomp: %v, %v)", tk.raw, tk.f, fs, ferr)
		}
	}
	rebuilt = append(rebuilt, out[pos:]...)
	got = slices.DeleteFunc(got, func(tk taken) bool { return tk.f == nil })
	if !bytes.HasPrefix(stream, rebuilt) {
		t.Fatalf("the reader's bytes with the taken frames back:\n%q\nare not the stream's start:\n%q", rebuilt, stream)
	}
	want, wantErr := frames(stream)
	rest, restErr := frames(out)
	if restErr.Error() != wantErr.Error() && (len(rebuilt) == len(stream) || !errors.Is(restErr, io.EOF)) {
		t.Fatalf("go-stomp stops at %v through the Demux, at %v on the stream", restErr, wantErr)
	}
	j, k := 0, 0
	for _, a := range want {
		switch {
		case k < len(rest) && sameFrame(a, rest[k].Command, headerOf(rest[k]), rest[k].Body):
			k++
		case j < len(got) && sameFrame(a, got[j].f.Command, got[j].f.Header, got[j].f.Body):
			j++
		default:
			t.Fatalf("frame %d of the stream (%s %v) neither reached the reader nor was taken", j+k, a.Command, a.Header)
		}
	}
	if j != len(got) || k != len(rest) {
		t.Fatalf("%d frames taken and %d read, of which %d and %d are the stream's", len(got), len(rest), j, k)
	}
	return got
}

func all(*Frame) bool { return true }

const (
	msg1 = "MESSAGE\nsubscription:sub-0\nmessage-id:T_1\nack:T_sub-0@@s@@1\ndestination:/amq/queue/q\ncontent-length:13\n\n{\"a\":\"b\\u00\"}\x00"
	msg2 = "MESSAGE\r\nsubscription:sub-0\r\nack:2\r\nx-es\\ccaped:a\\nb\\\\c\\t\r\n\r\n{\"no\":\"length\"}\x00\n"
	rcpt = "RECEIPT\nreceipt-id:77\n\n\x00"
)

func TestDemuxTakesMessagesAndPassesTheRest(t *testing.T) {
	stream := "CONNECTED\nversion:1.2\nheart-beat:0,0\n\n\x00\n\n" + msg1 + "\r\n" + rcpt + msg2 + "ERROR\nmessage:x\ncontent-length:3\n\nabc\x00"
	for _, chunk := range []int{1, 2, 3, 7, 64, 4096} {
		got := checkDemux(t, []byte(stream), chunk, 0, all)
		if len(got) != 2 {
			t.Fatalf("chunk %d: %d frames taken, want the 2 MESSAGEs", chunk, len(got))
		}
		if v := got[1].f.Header.Get("x-es:caped"); v != "a\nb\\c\\t" {
			t.Fatalf("escaped header: %q", v)
		}
		if got[0].f.Header.Get("ack") != "T_sub-0@@s@@1" || string(got[0].f.Body) != `{"a":"b\u00"}` {
			t.Fatalf("first message: %+v", got[0].f)
		}
	}
}

func TestDemuxDeclinedAndLargeMessagesGoToTheReader(t *testing.T) {
	big := "MESSAGE\nsubscription:sub-1\ncontent-length:5000\n\n" + strings.Repeat("x", 5000) + "\x00"
	bigNUL := "MESSAGE\nsubscription:sub-1\n\n" + strings.Repeat("y", 5000) + "\x00"
	stream := []byte(msg1 + big + bigNUL + msg1 + rcpt)
	for _, chunk := range []int{1, 100, 4096} {
		got := checkDemux(t, stream, chunk, 1024, func(f *Frame) bool { return f.Header.Get("subscription") == "sub-0" })
		if len(got) != 2 {
			t.Fatalf("chunk %d: %d taken, want the two small sub-0 messages", chunk, len(got))
		}
		out, _, _ := demux(t, stream, chunk, 1024, all)
		if fs, _ := frames(out); len(fs) != 3 || fs[0].Header.Get("content-length") != "5000" || len(fs[1].Body) != 5000 {
			t.Fatalf("chunk %d: the reader got %d frames, want the two larger than maxTake and the RECEIPT", chunk, len(fs))
		}
	}
}

func TestDemuxPassesWhatGoStompRefuses(t *testing.T) {
	for _, bad := range []string{
		"MESSAGE\nno-colon\n\nx\x00",
		"MESSAGE\n:empty-name\n\nx\x00",
		"MESSAGE\ncontent-length:x\n\nx\x00",
		"MESSAGE\ncontent-length:1\n\nxy\x00",
		"BOGUS\n\n\x00",
		"\rMESSAGE\n\n\x00",
		"MESSAGE\ncontent-length:99999999999\n\n\x00",
	} {
		got := checkDemux(t, []byte(msg1+bad+msg1), 5, 0, all)
		if len(got) != 1 {
			t.Fatalf("%q: %d taken, want only the message before it", bad, len(got))
		}
	}
}

func TestDemuxKeepsTheReaderAlive(t *testing.T) {
	d := NewDemux(&chunked{b: []byte(msg1 + "\n\r\n" + msg1 + "\n"), n: 4096})
	d.SetTake(all)
	p := make([]byte, 100)
	n, err := d.Read(p)
	if err != nil || string(p[:n]) != "\n" {
		t.Fatalf("Read = %q, %v: want one LF in place of the taken frames and the EOLs after them", p[:n], err)
	}
	if _, err := d.Read(p); !errors.Is(err, io.EOF) {
		t.Fatalf("second Read: %v, want io.EOF (the second frame within KeepAlive of the first)", err)
	}
}

func TestUnescapeIsGoStomps(t *testing.T) {
	for _, s := range []string{"", "plain", `a\cb`, `\\n`, `\\\n`, `\t`, `x\`, `\r\n\c\\`, `\\\\`} {
		raw := "MESSAGE\nk:" + s + "\n\n\x00"
		fs, _ := frames([]byte(raw))
		if got := unescape(s); got != fs[0].Header.Get("k") {
			t.Fatalf("unescape(%q) = %q, go-stomp %q", s, got, fs[0].Header.Get("k"))
		}
	}
}

// FuzzDemux: for any stream, read in any chunks, with any take limit, a
// Demux loses, adds and reorders nothing, parses what it takes as go-stomp
// does, and leaves go-stomp reading the same frames and error from the
// rest.
func FuzzDemux(f *testing.F) {
	for _, s := range []string{msg1, msg2, rcpt + msg1 + "\n" + msg2, "MESSAGE\ncontent-length:0\n\n\x00",
		"MESSAGE\ncontent-length:2\ncontent-length:x\n\nab\x00MESSAGE\n\n\x00", "\r\n\n" + msg1[:40]} {
		f.Add([]byte(s), uint8(3), uint16(0), true)
	}
	f.Fuzz(func(t *testing.T, stream []byte, chunk uint8, maxTake uint16, declineOdd bool) {
		n := 0
		accept := func(*Frame) bool { n++; return !declineOdd || n%2 == 0 }
		checkDemux(t, stream, int(chunk), int(maxTake), accept)
	})
}

// benchStream is 100 MESSAGE frames as RabbitMQ sends a Waldur order
// event: its 10 headers, a 185-byte body, the LF after the NUL.
func benchStream(b *testing.B) []byte { return benchFrames(b, 185, 100) }

// benchFrames is n such frames with a body of size bytes.
func benchFrames(b *testing.B, size, n int) []byte {
	one := "MESSAGE\nsubscription:sub-0\ndestination:/amq/queue/subscription_0123_offering_4567_order\n" +
		"message-id:T_sub-0@@session-abc@@1\nredelivered:false\nack:T_sub-0@@session-abc@@1\n" +
		"x-message-id:5f3c0e2d9a1b4c6d8e0f1a2b3c4d5e6f\npersistent:true\ncontent-type:application/json\n" +
		"content-length:" + strconv.Itoa(size) + "\n\n" + strings.Repeat("x", size) + "\x00\n"
	stream := []byte(strings.Repeat(one, n))
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	return stream
}

func BenchmarkDemux(b *testing.B) {
	stream := benchStream(b)
	p := make([]byte, 4096)
	for b.Loop() {
		d := NewDemux(bytes.NewReader(stream))
		d.SetTake(all)
		for {
			if _, err := d.Read(p); err != nil {
				break
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/frame")
}

func BenchmarkGoStompReader(b *testing.B) {
	stream := benchStream(b)
	for b.Loop() {
		r := frame.NewReader(bytes.NewReader(stream))
		for {
			if _, err := r.Read(); err != nil {
				break
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/frame")
}

// BenchmarkDemuxLarge: 10 frames of 1,000,000-byte bodies, read 64 KiB at
// a time as a connection delivers them; the Demux buffers each whole
// (below DefaultMaxTake) and copies its body out once.
func BenchmarkDemuxLarge(b *testing.B) {
	stream := benchFrames(b, 1_000_000, 10)
	p := make([]byte, 4096)
	for b.Loop() {
		d := NewDemux(&chunked{b: stream, n: 64 << 10})
		d.SetTake(all)
		for {
			if _, err := d.Read(p); err != nil {
				break
			}
		}
	}
}

// BenchmarkGoStompReaderLarge is BenchmarkDemuxLarge's stream through
// go-stomp's frame.Reader.
func BenchmarkGoStompReaderLarge(b *testing.B) {
	stream := benchFrames(b, 1_000_000, 10)
	for b.Loop() {
		r := frame.NewReader(&chunked{b: stream, n: 64 << 10})
		for {
			if _, err := r.Read(); err != nil {
				break
			}
		}
	}
}

// TestDemuxLargeHeadInSmallReads: a head of 100 KB arriving 7 bytes at a
// time is taken as go-stomp parses it (the Demux searches each byte of a
// head for its end once, not once per read).
func TestDemuxLargeHeadInSmallReads(t *testing.T) {
	head := "MESSAGE\nsubscription:sub-0\n" + strings.Repeat("x-pad:"+strings.Repeat("p", 94)+"\n", 1000)
	got := checkDemux(t, []byte(head+"\n{}\x00"+msg1), 7, 0, all)
	if len(got) != 2 || got[0].f.Header.Len() != 1001 {
		t.Fatalf("%d frames taken, the first with %d headers: want 2, 1001", len(got), got[0].f.Header.Len())
	}
}
