package stomp_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventfn/eventfn/internal/brokertest"
	"github.com/eventfn/eventfn/internal/creds"
	"github.com/eventfn/eventfn/runner"
	"github.com/eventfn/eventfn/runner/stomp"
)

// selfSigned returns a certificate (PEM) and key for dnsName, its own CA.
func selfSigned(t *testing.T, dnsName string) (certPEM []byte, cert tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: dnsName}, DNSNames: []string{dnsName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// oneMessage delivers one message, then waits for its context to end.
type oneMessage struct {
	m *runner.Message
}

func (s *oneMessage) Name() string { return s.m.Source }
func (s *oneMessage) Run(ctx context.Context, deliver runner.Deliver) error {
	if err := deliver(ctx, s.m); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

type ackRecorder struct{ fate chan string }

func (a ackRecorder) Ack(context.Context) error                { a.fate <- "ack"; return nil }
func (a ackRecorder) Requeue(context.Context) error            { a.fate <- "requeue"; return nil }
func (a ackRecorder) DeadLetter(context.Context, string) error { a.fate <- "dead-letter"; return nil }

// TestTLSCertificateMismatchIsAClearError is the bad-input catalogue's TLS
// row (the others: runner's TestBadInputCatalogue): a broker whose
// certificate, though signed by the configured CA, names another host. The
// source refuses it before sending anything (no credentials leave), says
// so clearly, is not ready and keeps retrying; the runner's other source
// goes on handling messages.
func TestTLSCertificateMismatchIsAClearError(t *testing.T) {
	caPEM, cert := selfSigned(t, "other.example")
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := strings.Cut(ln.Addr().String(), ":")
	var handshakes, plaintext atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := c.(*tls.Conn)
				_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
				if err := tc.Handshake(); err != nil {
					handshakes.Add(1)
					return
				}
				buf := make([]byte, 1)
				if n, _ := tc.Read(buf); n > 0 {
					plaintext.Add(1) // a CONNECT frame, credentials included
				}
			}()
		}
	}()

	logger, logs := newLogger(t)
	m := runner.NewMetrics()
	src, err := stomp.FromSettings("tls", "stomp+ssl://localhost:"+port, stomp.Settings{
		Login: "user", PasscodeEnv: "TEST_PASSCODE", Subscribe: []string{"/amq/queue/q"},
		TLS: creds.TLSSpec{CAFile: caFile}},
		stomp.Deps{Logger: logger, Metrics: m, DrainTimeout: time.Second,
			Backoff:   stomp.Backoff{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond},
			LookupEnv: func(string) (string, bool) { return "s3cret", true }})
	if err != nil {
		t.Fatal(err)
	}
	good := ackRecorder{fate: make(chan string, 1)}
	local := &oneMessage{m: &runner.Message{Source: "local", Body: []byte(`{}`), Type: "order", ID: "good-1",
		DeadLetterOnFailure: true, Settler: good}}
	rs := parseRules(t, registry(logger, newRecorder()), `
version: 1
rules:
  - {name: good, on: order, steps: [{log: "handled {{ id }}"}]}
`)
	rr := startRunner(t, runner.Config{Rules: rs, Actions: registry(logger, newRecorder()),
		Sources: []runner.Source{src, local}, Logger: logger, Metrics: m})

	select {
	case fate := <-good.fate:
		if fate != "ack" {
			t.Errorf("the other source's message: fate %q, want ack", fate)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the other source's message was not handled")
	}
	brokertest.WaitFor(t, 30*time.Second, "a few refused handshakes", func() bool { return handshakes.Load() >= 2 })
	lastErr := src.LastError()
	if lastErr == nil || !strings.Contains(lastErr.Error(), "certificate is valid for other.example, not localhost") {
		t.Errorf("LastError = %v, want the certificate's name mismatch", lastErr)
	}
	if rr.r.Ready() || src.Ready() {
		t.Error("ready with a broker whose certificate does not match")
	}
	if n := plaintext.Load(); n > 0 {
		t.Errorf("%d connections sent data past a refused certificate", n)
	}
	if l := logs.String(); !strings.Contains(l, "cannot connect to broker") || !strings.Contains(l, "certificate is valid for other.example, not localhost") {
		t.Error("no clear log line about the certificate")
	}
	if strings.Contains(logs.String(), "s3cret") {
		t.Error("the passcode was logged")
	}
}
