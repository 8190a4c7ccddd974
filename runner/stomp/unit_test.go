package stomp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Endpoint
		err  string
	}{
		{in: "stomp://rmq", want: Endpoint{Scheme: SchemeTCP, Addr: "rmq:61613"}},
		{in: "stomp+ssl://rmq", want: Endpoint{Scheme: SchemeTLS, Addr: "rmq:61614"}},
		{in: "stomp+ws://127.0.0.1:15674/ws", want: Endpoint{Scheme: SchemeWS, Addr: "127.0.0.1:15674", Path: "/ws"}},
		{in: "stomp+ws://rmq", want: Endpoint{Scheme: SchemeWS, Addr: "rmq:80", Path: "/ws"}},
		{in: "stomp+wss://waldur.example.org/rmqws-stomp?vhost=abc", want: Endpoint{Scheme: SchemeWSS, Addr: "waldur.example.org:443", Path: "/rmqws-stomp", VHost: "abc"}},
		{in: "stomp+wss://agent@[::1]:8443/x", want: Endpoint{Scheme: SchemeWSS, Addr: "[::1]:8443", Path: "/x", Login: "agent"}},
		{in: "stomp+wss://agent:secret@host/ws", err: "password in the URL"},
		{in: "amqp://host", err: "unsupported scheme"},
		{in: "stomp://", err: "missing host"},
		{in: "stomp://host/path", err: "path is only meaningful"},
		{in: "stomp://host?heartbeat=1", err: "unknown parameter"},
	} {
		got, err := ParseURL(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseURL(%q) error = %v, want %q", tc.in, err, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("ParseURL(%q) error shows the password: %v", tc.in, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseURL(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestBrokerFromAPI(t *testing.T) {
	for in, want := range map[string]string{
		"https://waldur.example.org/api/": "stomp+wss://waldur.example.org:443/rmqws-stomp",
		"https://waldur.example.org":      "stomp+wss://waldur.example.org:443/rmqws-stomp",
		"http://10.0.0.1:8080/api":        "stomp+ws://10.0.0.1:8080/rmqws-stomp",
		"https://[2001:db8::1]:8443/api/": "stomp+wss://[2001:db8::1]:8443/rmqws-stomp",
	} {
		e, err := BrokerFromAPI(in)
		if err != nil || e.String() != want {
			t.Errorf("BrokerFromAPI(%q) = %s, %v; want %s", in, e, err, want)
		}
	}
	if _, err := BrokerFromAPI("ftp://x"); err == nil {
		t.Error("ftp accepted")
	}
}

func TestTypeOf(t *testing.T) {
	sub, off := "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
	for dest, want := range map[string]string{
		"/amq/queue/subscription_" + sub + "_offering_" + off + "_user_role":            "user_role",
		"/queue/subscription_" + sub + "_offering_" + off + "_order":                    "order",
		"/amq/queue/subscription_" + sub + "_offering_" + off + "_importable_resources": "importable_resources",
		"/amq/queue/consumer_" + sub:                                                    "",
		"/queue/orders":                                                                 "",
	} {
		if got := TypeOf(dest); got != want {
			t.Errorf("TypeOf(%q) = %q, want %q", dest, got, want)
		}
	}
}

func TestFromSettingsChecks(t *testing.T) {
	env := func(k string) (string, bool) { return "pw", k == "PW" }
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pass"), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// spec is a source as the tests write it: a url and the STOMP
	// settings, or a Waldur source's settings when w is set.
	type spec struct {
		URL string
		Settings
		w *WaldurSettings
	}
	base := spec{URL: "stomp://h", Settings: Settings{Login: "u", PasscodeEnv: "PW", Subscribe: []string{"/amq/queue/q"}}}
	ws := func(mode string, offerings ...string) *WaldurSettings {
		return &WaldurSettings{Waldur: &WaldurSection{APIURL: "https://w/api/", TokenEnv: "PW", Offerings: offerings, Mode: mode}}
	}
	const off = "0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		name string
		edit func(*spec)
		err  string
	}{
		{"ok", func(*spec) {}, ""},
		{"passcode file relative to the rules", func(s *spec) { s.PasscodeEnv, s.PasscodeFile = "", "pass" }, ""},
		{"login without passcode", func(s *spec) { s.PasscodeEnv = "" }, "needs a passcode"},
		{"login in URL without passcode", func(s *spec) { s.URL, s.Login, s.PasscodeEnv = "stomp://u@h", "", "" }, "needs a passcode"},
		{"password in URL", func(s *spec) { s.URL = "stomp://u:pw@h" }, "password in the URL"},
		{"unset env", func(s *spec) { s.PasscodeEnv = "NOPE" }, "NOPE is not set"},
		{"no subscriptions", func(s *spec) { s.Subscribe = nil }, "subscribe"},
		{"bare queue name", func(s *spec) { s.Subscribe = []string{"q"} }, "starts with /"},
		{"vhost conflict", func(s *spec) { s.URL, s.VHost = "stomp://h?vhost=a", "b" }, "disagree"},
		{"tls on plain", func(s *spec) { s.TLS.CAFile = "ca.pem" }, "need a TLS URL"},
		{"missing CA", func(s *spec) { s.URL, s.TLS.CAFile = "stomp+wss://h/ws", "nope.pem" }, "ca_file"},
		{"negative prefetch", func(s *spec) { s.Prefetch = -1 }, "prefetch"},
		{"bad on_failure", func(s *spec) { s.OnFailure = "drop" }, "on_failure"},
		{"waldur without section", func(s *spec) { s.URL, s.w = "waldur", &WaldurSettings{} }, "waldur: section"},
		{"waldur with another url", func(s *spec) { s.URL, s.w = "stomp://h", ws("", off) }, "url waldur"},
		{"waldur bad offering", func(s *spec) { s.URL, s.w = "waldur", ws("", "x") }, "not a UUID"},
		{"waldur bad mode", func(s *spec) { s.URL, s.w = "", ws("x", off) }, "mode"},
		{"waldur ok", func(s *spec) { s.URL, s.w = "", ws("", off) }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := base
			tc.edit(&spec)
			d := Deps{LookupEnv: env, Dir: dir}
			var err error
			if spec.w != nil {
				if errs := spec.w.Check(spec.URL); len(errs) > 0 && tc.err == "" {
					t.Fatalf("Check: %v", errs)
				}
				_, err = WaldurFromSettings("w", spec.URL, *spec.w, d)
			} else {
				_, err = FromSettings("b", spec.URL, spec.Settings, d)
			}
			if tc.err == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("error = %v, want %q", err, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error shows the passcode: %v", err)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	b := Backoff{Initial: time.Second, Max: 2 * time.Minute}
	for failures, base := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 5: 16 * time.Second, 8: 2 * time.Minute, 50: 2 * time.Minute} {
		for range 20 {
			d := b.Delay(failures)
			if d < base*3/4 || d > base*5/4 {
				t.Fatalf("Delay(%d) = %s, want %s ±25%%", failures, d, base)
			}
		}
	}
	if d := (Backoff{}).Delay(1); d < 750*time.Millisecond || d > 1250*time.Millisecond {
		t.Errorf("default first delay %s, want about 1s", d)
	}
}

// pipeConn records what is written and reads from a script.
type pipeConn struct {
	net.Conn
	mu      sync.Mutex
	written bytes.Buffer
	reads   [][]byte
}

func (p *pipeConn) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.written.Write(b)
}

func (p *pipeConn) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.reads) == 0 {
		return 0, io.EOF
	}
	n := copy(b, p.reads[0])
	p.reads[0] = p.reads[0][n:]
	if len(p.reads[0]) == 0 {
		p.reads = p.reads[1:]
	}
	return n, nil
}

func (p *pipeConn) Close() error { return nil }

// The wire's header rewriting, shared by the tests with and without
// coalescing: addRewrites asks for requeue:false on the NACK of T_1@@s@@7
// and a receipt on SUBSCRIBE sub-1; rewriteIn are frames written after
// CONNECT and rewriteOut what the wire sends for them.
func addRewrites(w *wire) {
	w.addHeader("NACK", "T_1@@s@@7", "requeue", "false")
	w.addHeader("SUBSCRIBE", "sub-1", "receipt", "tok")
}

const connectFrame = "CONNECT\naccept-version:1.2\n\n\x00"

var rewriteIn = []string{
	"\n",                         // heart-beat
	"NACK\nid:T_1@@s@@6\n\n\x00", // another message: untouched
	"SUBSCRIBE\nid:sub-0\ndestination:/q\n\n\x00",
	"SUBSCRIBE\nid:sub-1\ndestination:/q\n\n\x00",
	"SEND\ncontent-length:30\n\nNACK\nid:T_1@@s@@7\n\n", // a body chunk split by a large frame…
	"\x00",
	"NACK\nid:T_1@@s@@7\n\n\x00",
	"NACK\nid:T_1@@s@@7\n\n\x00", // added once only
}

var rewriteOut = []string{
	"\n",
	"NACK\nid:T_1@@s@@6\n\n\x00",
	"SUBSCRIBE\nid:sub-0\ndestination:/q\n\n\x00",
	"SUBSCRIBE\nreceipt:tok\nid:sub-1\ndestination:/q\n\n\x00",
	"SEND\ncontent-length:30\n\nNACK\nid:T_1@@s@@7\n\n", "\x00",
	"NACK\nrequeue:false\nid:T_1@@s@@7\n\n\x00",
	"NACK\nid:T_1@@s@@7\n\n\x00",
}

func TestWireAddsHeadersToTheRightFrames(t *testing.T) {
	pc := &pipeConn{}
	w := newWire(pc)
	addRewrites(w)
	for _, f := range append([]string{connectFrame}, rewriteIn...) {
		if n, err := w.Write([]byte(f)); err != nil || n != len(f) {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	want := connectFrame + strings.Join(rewriteOut, "")
	if got := pc.written.String(); got != want {
		t.Errorf("wire wrote\n%q\nwant\n%q", got, want)
	}
}

// An ERROR caused by the receipted SUBSCRIBE carries its receipt-id, and
// RabbitMQ sends the RECEIPT after it (a missing queue): the ERROR is no
// receipt, and the wire says it saw one.
func TestWireSeesAnErrorBeforeTheReceipt(t *testing.T) {
	read := func(frames ...string) *wire {
		pc := &pipeConn{}
		for _, f := range frames {
			pc.reads = append(pc.reads, []byte(f))
		}
		w := newWire(pc)
		return w
	}
	drain := func(w *wire) {
		buf := make([]byte, 5)
		for {
			if _, err := w.Read(buf); err != nil {
				return
			}
		}
	}
	errFrame := "ERROR\nmessage:not_found\nreceipt-id:eventfn-subscribed-xyz\n\nNOT_FOUND - no queue 'q'\x00\n"
	w := read(errFrame)
	got := w.expect("eventfn-subscribed-xyz")
	drain(w)
	select {
	case <-got:
		t.Fatal("an ERROR frame taken for the RECEIPT")
	default:
	}
	if !w.sawError() {
		t.Error("the ERROR frame was not seen")
	}
	w = read(errFrame, "RECEIPT\nreceipt-id:eventfn-subscribed-xyz\n\n\x00")
	got = w.expect("eventfn-subscribed-xyz")
	drain(w)
	select {
	case <-got:
	default:
		t.Fatal("the RECEIPT after the ERROR not seen")
	}
	if !w.sawError() {
		t.Error("the ERROR before the RECEIPT was not seen")
	}
	w = read("\nMESSAGE\ndestination:/q\n\nERROR\n in a body\x00\nRECEIPT\nreceipt-id:eventfn-subscribed-xyz\n\n\x00")
	got = w.expect("eventfn-subscribed-xyz")
	drain(w)
	select {
	case <-got:
	default:
		t.Fatal("receipt not seen")
	}
	if w.sawError() {
		t.Error("ERROR in a message body taken for an ERROR frame")
	}
}

func TestWireSeesReceiptSplitAcrossReads(t *testing.T) {
	pc := &pipeConn{reads: [][]byte{[]byte("MESSAGE\n\nbody\x00RECEIPT\nreceipt-id:eventfn-sub"), []byte("scribed-xyz\n\n\x00")}}
	w := newWire(pc)
	got := w.expect("eventfn-subscribed-xyz")
	buf := make([]byte, 7)
	for {
		if _, err := w.Read(buf); err != nil {
			break
		}
	}
	select {
	case <-got:
	default:
		t.Fatal("receipt not seen")
	}
	select {
	case <-w.dead:
		if !errors.Is(w.err(), io.EOF) {
			t.Errorf("dead with %v, want EOF", w.err())
		}
	default:
		t.Error("a read error did not mark the wire dead")
	}
}

// TestWebSocketStream: frames split across WebSocket messages and several
// frames in one message read as one byte stream; writes go out as binary
// messages.
func TestWebSocketStream(t *testing.T) {
	received := make(chan []byte, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up := websocket.Upgrader{Subprotocols: []string{"v12.stomp"}}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		_ = ws.WriteMessage(websocket.TextMessage, []byte("CONNEC"))
		_ = ws.WriteMessage(websocket.TextMessage, []byte("TED\nversion:1.2\n\n\x00MESSAGE\n\na\x00"))
		_ = ws.WriteMessage(websocket.PingMessage, nil)
		_ = ws.WriteMessage(websocket.BinaryMessage, []byte("MESSAGE\n\nb\x00"))
		typ, msg, err := ws.ReadMessage()
		if err == nil && typ == websocket.BinaryMessage {
			received <- msg
		}
		_ = ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "bye"))
	}))
	defer srv.Close()
	e, err := ParseURL("stomp+ws://" + strings.TrimPrefix(srv.URL, "http://") + "/ws")
	if err != nil {
		t.Fatal(err)
	}
	c, err := dialTransport(context.Background(), e, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := "CONNECTED\nversion:1.2\n\n\x00MESSAGE\n\na\x00MESSAGE\n\nb\x00"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
		t.Fatalf("read %q, %v; want %q", got, err, want)
	}
	if _, err := c.Write([]byte("SEND\n\n\xff\x00")); err != nil {
		t.Fatal(err)
	}
	if msg := <-received; string(msg) != "SEND\n\n\xff\x00" {
		t.Errorf("server got %q", msg)
	}
	_, err = c.Read(make([]byte, 1))
	if err == nil || !strings.Contains(err.Error(), "closed by the server") {
		t.Errorf("after close: %v", err)
	}
}

func TestFIFO(t *testing.T) {
	q := newFIFO[int]()
	for i := range 3000 {
		q.push(i)
	}
	ctx, cancel := context.WithCancel(context.Background())
	for i := range 3000 {
		v, ok := q.pop(ctx)
		if !ok || v != i {
			t.Fatalf("pop = %d, %v; want %d", v, ok, i)
		}
	}
	cancel()
	if _, ok := q.pop(ctx); ok {
		t.Fatal("pop on an empty queue with a cancelled context")
	}
}

func TestBrokerErrorClassification(t *testing.T) {
	refused := &BrokerError{Message: "Bad CONNECT", Detail: "Access refused for user 'x'"}
	notFound := &BrokerError{Message: "not_found", Detail: "NOT_FOUND - no queue 'q' in vhost 'v'"}
	if !refused.AccessRefused() || refused.NotFound() {
		t.Errorf("refused: %v %v", refused.AccessRefused(), refused.NotFound())
	}
	if !notFound.NotFound() || notFound.AccessRefused() {
		t.Errorf("not found: %v, access refused: %v (its message names the vhost)", notFound.NotFound(), notFound.AccessRefused())
	}
	if got := notFound.Missing(); got != "queue 'q' in vhost 'v'" {
		t.Errorf("Missing = %q", got)
	}
	if got := refused.Missing(); got != "" {
		t.Errorf("Missing of a refusal = %q", got)
	}
}

// TestHeartbeatsAreSent: Dial negotiates heart-beats and eventfn sends them
// on an otherwise idle connection.
func TestHeartbeatsAreSent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	beats := make(chan int, 1)
	connectFrame := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 4096)
		n, _ := c.Read(buf) // the CONNECT frame
		connectFrame <- string(buf[:n])
		_, _ = c.Write([]byte("CONNECTED\nversion:1.2\nheart-beat:100,100\n\n\x00"))
		count := 0
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, err := c.Read(buf)
			count += strings.Count(string(buf[:n]), "\n")
			if err != nil {
				break
			}
		}
		beats <- count
	}()
	e, _ := ParseURL("stomp://" + ln.Addr().String())
	c, err := Dial(context.Background(), DialOptions{Endpoint: e, VHost: "vh", Login: "u", Passcode: "p", Heartbeat: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cf := <-connectFrame
	for _, want := range []string{"CONNECT\n", "heart-beat:100,100\n", "host:vh\n", "login:u\n", "accept-version:1.2\n"} {
		if !strings.Contains(cf, want) {
			t.Errorf("CONNECT frame lacks %q:\n%q", want, cf)
		}
	}
	if n := <-beats; n < 5 {
		t.Errorf("%d heart-beats in 1s at 100ms, want about 10", n)
	}
}

// TestWireFramesGoBetweenGoStompsFrames: an ACK written by the wire while
// go-stomp is in the middle of a frame (a SEND larger than its buffer comes
// in several Writes) waits for that frame's end, so it never lands inside
// it; once the wire is dead, a waiting writeFrame fails instead of waiting
// for ever.
func TestWireFramesGoBetweenGoStompsFrames(t *testing.T) {
	pc := &pipeConn{}
	w := newWire(pc)
	head, body := "SEND\ndestination:/q\ncontent-length:5\n\n", "hello\x00"
	if _, err := w.Write([]byte(head)); err != nil {
		t.Fatal(err)
	}
	acked := make(chan error, 1)
	go func() { acked <- w.writeFrame("ACK", "id", "T_1") }()
	select {
	case err := <-acked:
		t.Fatalf("writeFrame returned (%v) while go-stomp was mid-frame: %q", err, pc.written.String())
	case <-time.After(50 * time.Millisecond): // the wait under test: nothing signals "still waiting"
	}
	if _, err := w.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := <-acked; err != nil {
		t.Fatal(err)
	}
	if got, want := pc.written.String(), head+body+"ACK\nid:T_1\n\n\x00"; got != want {
		t.Fatalf("wire wrote %q, want %q", got, want)
	}

	w = newWire(&pipeConn{})
	if _, err := w.Write([]byte(head)); err != nil {
		t.Fatal(err)
	}
	go func() { acked <- w.writeFrame("NACK", "id", "T:2", "requeue", "false") }()
	w.kill(errors.New("transport failed"))
	if err := <-acked; err == nil || err.Error() != "transport failed" {
		t.Fatalf("writeFrame on a dead wire: %v, want the transport's error", err)
	}
}

// TestSubIndex: subIndex inverts subID and nothing else (a MESSAGE whose
// subscription header is not one of ours goes to go-stomp), without an
// allocation per message.
func TestSubIndex(t *testing.T) {
	for _, i := range []int{0, 1, 9, 10, 99, 100, 12345} {
		if got, ok := subIndex(subID(i)); !ok || got != i {
			t.Errorf("subIndex(%q) = %d, %v", subID(i), got, ok)
		}
	}
	for _, id := range []string{"", "sub-", "sub-01", "sub--1", "sub-+1", "sub-1 ", "x-1", "SUB-1"} {
		if i, ok := subIndex(id); ok {
			t.Errorf("subIndex(%q) = %d, true: not an id subID makes", id, i)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = subIndex("sub-7") }); n != 0 {
		t.Errorf("subIndex allocates %v times per call", n)
	}
}
