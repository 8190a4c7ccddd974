package local

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eventfn/eventfn/runner"
)

const order = `{"type": "order", "payload": {"a": 1}}`

// serve runs h on a loopback listener until the test ends and returns its
// events URL.
func serve(t *testing.T, h *HTTP, deliver runner.Deliver) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.Listener = ln
	if h.SourceName == "" {
		h.SourceName = "push"
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx, deliver) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	scheme := "http"
	if h.Config.TLS.CertFile != "" {
		scheme = "https"
	}
	return scheme + "://" + ln.Addr().String() + "/events"
}

func accept(_ context.Context, m *runner.Message) error { return nil }

func post(t *testing.T, c *http.Client, url, body string, header map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHTTPBearerToken(t *testing.T) {
	url := serve(t, &HTTP{Config: HTTPConfig{TokenFile: writeFile(t, "token", "s3cr3t/+=\n")}}, accept)
	for name, c := range map[string]struct {
		auth string
		want int
	}{
		"none":         {"", 401},
		"wrong":        {"Bearer nope", 401},
		"not bearer":   {"Basic czNjcjN0", 401},
		"right":        {"Bearer s3cr3t/+=", 202},
		"right prefix": {"Bearer s3cr3t", 401},
	} {
		resp := post(t, nil, url, order, map[string]string{"Authorization": c.auth})
		if resp.StatusCode != c.want {
			t.Errorf("%s: status %d, want %d", name, resp.StatusCode, c.want)
		}
	}
}

func TestHTTPHMACSignature(t *testing.T) {
	secret := "hook-secret"
	url := serve(t, &HTTP{Config: HTTPConfig{HMACSecretEnv: "HOOK", HMACHeader: "X-Waldur-Signature"},
		LookupEnv: func(k string) (string, bool) { return secret, k == "HOOK" }}, accept)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(order))
	good := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	for name, c := range map[string]struct {
		sig  string
		want int
	}{
		"none":        {"", 401},
		"wrong":       {"sha256=" + strings.Repeat("0", 64), 401},
		"not hex":     {"sha256=zz", 401},
		"no prefix":   {strings.TrimPrefix(good, "sha256="), 401},
		"good":        {good, 202},
		"good, other": {good, 401}, // same signature, other body below
	} {
		body := order
		if name == "good, other" {
			body = `{"type": "order", "payload": {"a": 2}}`
		}
		if resp := post(t, nil, url, body, map[string]string{"X-Waldur-Signature": c.sig}); resp.StatusCode != c.want {
			t.Errorf("%s: status %d, want %d", name, resp.StatusCode, c.want)
		}
	}
}

func TestHTTPRefusesCrossOriginAndWrongContentType(t *testing.T) {
	m := runner.NewMetrics()
	url := serve(t, &HTTP{Config: HTTPConfig{AllowedOrigins: []string{"https://waldur.example.org"}}, Metrics: m}, accept)
	for name, c := range map[string]struct {
		header map[string]string
		want   int
	}{
		"text/plain (a CSRF form)": {map[string]string{"Content-Type": "text/plain"}, 415},
		"form":                     {map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415},
		"no content type":          {map[string]string{"Content-Type": ""}, 415},
		"other origin":             {map[string]string{"Origin": "http://evil.example"}, 403},
		"cross-site fetch":         {map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		"allowed origin":           {map[string]string{"Origin": "https://waldur.example.org", "Sec-Fetch-Site": "cross-site"}, 202},
		"same origin":              {map[string]string{"Sec-Fetch-Site": "same-origin"}, 202},
		"json with charset":        {map[string]string{"Content-Type": "application/json; charset=utf-8"}, 202},
	} {
		if resp := post(t, nil, url, order, c.header); resp.StatusCode != c.want {
			t.Errorf("%s: status %d, want %d", name, resp.StatusCode, c.want)
		}
	}
	if n := counter(t, m, "cross_origin"); n != 2 {
		t.Errorf("rejected{reason=cross_origin} = %v, want 2", n)
	}
}

func counter(t *testing.T, m *runner.Metrics, reason string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "eventfn_messages_rejected_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return mt.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestHTTPFullAnswers429(t *testing.T) {
	entered, release := make(chan struct{}, 1), make(chan struct{})
	defer close(release)
	url := serve(t, &HTTP{Config: HTTPConfig{MaxConcurrent: 1}}, func(ctx context.Context, m *runner.Message) error {
		entered <- struct{}{}
		<-release
		return nil
	})
	first := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("POST", url, strings.NewReader(order))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			first <- 0
			return
		}
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	<-entered // the first request holds the only slot
	resp := post(t, nil, url, order, nil)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("second request while full: %d Retry-After %q, want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	release <- struct{}{}
	if s := <-first; s != 202 {
		t.Errorf("first request: %d, want 202", s)
	}
}

func TestHTTPBytesInFlightAreBounded(t *testing.T) {
	url := serve(t, &HTTP{Config: HTTPConfig{MaxBytesInFlight: 64}}, accept)
	big := `{"type": "order", "payload": {"pad": "` + strings.Repeat("x", 100) + `"}}`
	if resp := post(t, nil, url, big, nil); resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("a body over the bytes in flight: %d, want 429 with Retry-After", resp.StatusCode)
	}
	if resp := post(t, nil, url, `{"type": "order"}`, nil); resp.StatusCode != 202 {
		t.Errorf("a small body: %d, want 202", resp.StatusCode)
	}
}

// closedByServer reports whether the server closes conn (reads EOF) within
// the deadline; the deadline only stops a broken test.
func closedByServer(conn net.Conn) bool {
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err := io.ReadAll(conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return true
}

func TestHTTPSlowAndIdleConnectionsAreClosed(t *testing.T) {
	url := serve(t, &HTTP{Config: HTTPConfig{ReadHeaderTimeout: 100 * time.Millisecond, IdleTimeout: 100 * time.Millisecond}}, accept)
	addr := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/events")
	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := io.WriteString(slow, "POST /events HTTP/1.1\r\nHost: x\r\n"); err != nil { // never ends its headers
		t.Fatal(err)
	}
	if !closedByServer(slow) {
		t.Error("a connection that never finished its headers was kept open")
	}
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if _, err := io.WriteString(idle, "POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"type\": \"order\"}"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil || resp.StatusCode != 202 {
		t.Fatalf("request on the raw connection: %v %v", resp, err)
	}
	if !closedByServer(idle) {
		t.Error("an idle keep-alive connection was kept open")
	}
}

func TestHTTPServesTLS(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	url := serve(t, &HTTP{Config: HTTPConfig{TLS: HTTPTLS{
		CertFile: writeFile(t, "cert.pem", string(certPEM)),
		KeyFile:  writeFile(t, "key.pem", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))),
	}}}, accept)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if resp := post(t, c, url, order, nil); resp.StatusCode != 202 {
		t.Errorf("over TLS: %d, want 202", resp.StatusCode)
	}
	if resp := post(t, nil, "http://"+strings.TrimPrefix(url, "https://"), order, nil); resp.StatusCode == 202 {
		t.Error("plain HTTP accepted by a TLS source")
	}
}

func TestHTTPRespondAfterPlan(t *testing.T) {
	fate := make(chan string, 1)
	url := serve(t, &HTTP{Config: HTTPConfig{Respond: RespondAfterPlan}}, func(ctx context.Context, m *runner.Message) error {
		if !m.DeadLetterOnFailure {
			t.Error("after_plan must dead-letter failures, to tell them apart")
		}
		go func() { // settled later, as the runner does
			switch <-fate {
			case "ok":
				_ = m.Settler.Ack(context.Background())
			case "failed":
				_ = m.Settler.DeadLetter(context.Background(), "step x failed")
			default:
				_ = m.Settler.Requeue(context.Background())
			}
		}()
		return nil
	})
	for outcome, want := range map[string]int{"ok": 200, "failed": 500, "stopped": 503} {
		fate <- outcome
		if resp := post(t, nil, url, order, nil); resp.StatusCode != want {
			t.Errorf("%s: status %d, want %d", outcome, resp.StatusCode, want)
		}
	}
}

func TestHTTPSpoolKeepsAcceptedEventsAcrossARestart(t *testing.T) {
	spool := t.TempDir()
	got := make(chan *runner.Message, 10)
	keep := func(_ context.Context, m *runner.Message) error { got <- m; return nil }
	func() {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		h := &HTTP{SourceName: "push", SpoolDir: spool, Listener: ln}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- h.Run(ctx, keep) }()
		for i := range 3 {
			body := `{"type": "order", "payload": {"n": ` + string(rune('0'+i)) + `}}`
			if resp := post(t, nil, "http://"+ln.Addr().String()+"/events", body, nil); resp.StatusCode != 202 {
				t.Fatalf("push %d: %d", i, resp.StatusCode)
			}
		}
		m := <-got
		if err := m.Settler.Ack(context.Background()); err != nil { // the first one ran
			t.Fatal(err)
		}
		<-got
		<-got // the other two never settle: eventfn stops
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}()
	files, _ := filepath.Glob(filepath.Join(spool, "*.json"))
	if len(files) != 2 {
		t.Fatalf("spool holds %d events after the stop, want the 2 unsettled", len(files))
	}
	serve(t, &HTTP{SourceName: "push", SpoolDir: spool}, keep)
	for _, want := range []any{1, 2} {
		m := <-got
		if m.Event.Payload["n"] != want || !strings.HasPrefix(m.ID, "http-spool:") {
			t.Errorf("replayed %v id %q, want n=%v with a spool id", m.Event.Payload, m.ID, want)
		}
		if err := m.Settler.Ack(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if files, _ := filepath.Glob(filepath.Join(spool, "*.json")); len(files) != 0 {
		t.Errorf("spool holds %v after every event settled", files)
	}
}

func TestHTTPDefaultsToLoopback(t *testing.T) {
	for in, want := range map[string]string{":8080": "127.0.0.1:8080", "0.0.0.0:80": "0.0.0.0:80", "[::1]:9": "[::1]:9"} {
		if got := (&HTTP{Addr: in}).addr(); got != want {
			t.Errorf("addr(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDecodeHTTPConfig(t *testing.T) {
	c, err := DecodeHTTPConfig(map[string]any{"token_file": "/t", "read_timeout": "3s", "respond": "after_plan"})
	if err != nil || c.TokenFile != "/t" || c.ReadTimeout != 3*time.Second || c.Respond != RespondAfterPlan {
		t.Fatalf("decoded %+v, %v", c, err)
	}
	for _, bad := range []map[string]any{{"tokn_file": "/t"}, {"respond": "later"}, {"tls": map[string]any{"cert_file": "c"}}} {
		if _, err := DecodeHTTPConfig(bad); err == nil {
			t.Errorf("DecodeHTTPConfig(%v) accepted", bad)
		}
	}
}

func TestHTTPBytesStayCountedUntilSettled(t *testing.T) {
	got := make(chan *runner.Message, 4)
	url := serve(t, &HTTP{Config: HTTPConfig{MaxBytesInFlight: 100}}, func(_ context.Context, m *runner.Message) error {
		got <- m
		return nil
	})
	body := `{"type": "order", "payload": {"pad": "` + strings.Repeat("x", 20) + `"}}` // 60 bytes
	if resp := post(t, nil, url, body, nil); resp.StatusCode != 202 {
		t.Fatalf("first: %d", resp.StatusCode)
	}
	first := <-got
	if resp := post(t, nil, url, body, nil); resp.StatusCode != 429 {
		t.Errorf("second while the first is queued, not settled: %d, want 429", resp.StatusCode)
	}
	if err := first.Settler.Ack(context.Background()); err != nil {
		t.Fatal(err)
	}
	if resp := post(t, nil, url, body, nil); resp.StatusCode != 202 {
		t.Errorf("after the first settled: %d, want 202", resp.StatusCode)
	}
}
