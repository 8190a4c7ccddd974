package publish

import (
	"bufio"
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// silentBroker accepts one STOMP connection, answers CONNECT and then reads
// every frame without answering: no receipt ever comes. It closes the
// connection when told to.
func silentBroker(t *testing.T) (url string, gotSend <-chan struct{}, hangUp chan<- struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	sent, hang := make(chan struct{}, 16), make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		frames := make(chan string)
		go func() {
			defer close(frames)
			for {
				f, err := r.ReadString(0)
				if err != nil {
					return
				}
				frames <- f
			}
		}()
		for {
			select {
			case f, ok := <-frames:
				if !ok {
					return
				}
				switch {
				case len(f) >= 7 && (f[:7] == "CONNECT" || f[:5] == "STOMP"):
					_, _ = c.Write([]byte("CONNECTED\nversion:1.2\nheart-beat:0,0\n\n\x00"))
				case len(f) >= 4 && f[:4] == "SEND":
					sent <- struct{}{}
				}
			case <-hang:
				return
			}
		}
	}()
	return "stomp://" + ln.Addr().String(), sent, hang
}

// TestSTOMPPublishHonoursContext: a broker that never confirms (go-stomp
// then waits 2 minutes for the receipt; found by the soak test, where the
// broker's close of the connection raced the SEND) no longer holds Publish
// past its context.
func TestSTOMPPublishHonoursContext(t *testing.T) {
	url, gotSend, _ := silentBroker(t)
	p, err := Dial(context.Background(), Options{URL: url, ConfirmEvery: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = p.Publish(ctx, Message{Destination: "/queue/q", Body: []byte(`{}`)})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Publish = %v, want the context's deadline", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Publish returned after %s", d)
	}
	<-gotSend
}

// TestSTOMPPublishEndsWhenTheConnectionDies: the broker closes the
// connection while a SEND waits for its receipt: Publish fails at once.
func TestSTOMPPublishEndsWhenTheConnectionDies(t *testing.T) {
	url, gotSend, hangUp := silentBroker(t)
	p, err := Dial(context.Background(), Options{URL: url, ConfirmEvery: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	res := make(chan error, 1)
	go func() { res <- p.Publish(context.Background(), Message{Destination: "/queue/q", Body: []byte(`{}`)}) }()
	<-gotSend
	close(hangUp)
	select {
	case err := <-res:
		if err == nil {
			t.Error("Publish succeeded without a receipt")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Publish still waiting 30s after the connection closed")
	}
}
