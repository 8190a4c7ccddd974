package runner

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	gostomp "github.com/go-stomp/stomp/v3"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/internal/brokertest"
	"github.com/eventfn/eventfn/rules"
)

// stompSettler settles a go-stomp message and reports the fate.
type stompSettler struct {
	c    *gostomp.Conn
	msg  *gostomp.Message
	name string
	fate chan<- string
}

func (s stompSettler) Ack(context.Context) error {
	err := s.c.Ack(s.msg)
	s.fate <- s.name + ":ack"
	return err
}

func (s stompSettler) Requeue(context.Context) error {
	err := s.c.Nack(s.msg)
	s.fate <- s.name + ":requeue"
	return err
}

func (s stompSettler) DeadLetter(context.Context, string) error {
	err := s.c.Nack(s.msg)
	s.fate <- s.name + ":dead-letter"
	return err
}

// TestCopyOfInFlightMessageDoesNotBlockOthers, against the real RabbitMQ:
// Waldur publishes order o1 twice (the same x-message-id: a retry) and
// then order o2. While o1's plan runs, its copy is parked, and o2 is
// delivered, run and acknowledged; when o1 finishes, the copy is settled
// with o1's fate without running, and the queue is empty.
func TestCopyOfInFlightMessageDoesNotBlockOthers(t *testing.T) {
	b := brokertest.New(t)
	vhost := b.VHost(brokertest.Unique("park"))
	queue := "orders"
	b.Queue(vhost, queue, nil)

	logger := slog.New(slog.DiscardHandler)
	g := newGate()
	g.release = make(chan struct{})
	reg := actions.Standard(actions.Options{Logger: logger})
	reg.Register(actions.FromSpec("gate", actions.Spec{Keys: []string{"name"}, Shorthand: "name"}, g))
	reg.Register(actions.FromSpec("quick", actions.Spec{Keys: []string{"n"}, Shorthand: "n"}, &counter{}))
	rs, err := rules.Parse("park.yaml", []byte(`
version: 1
rules:
  - name: slow
    on: order
    when: payload.order_uuid == "o1"
    key: payload.order_uuid
    steps: [{gate: wait, retry: {attempts: 1}, timeout: 1h}]
  - name: fast
    on: order
    when: payload.order_uuid == "o2"
    key: payload.order_uuid
    steps: [{quick: x}]
`), rules.Options{Actions: reg})
	if err != nil {
		t.Fatal(err)
	}
	r := New(Config{Rules: rs, Actions: reg, Logger: logger, Concurrency: 4})

	o1 := []byte(`{"order_uuid": "o1", "order_state": "executing"}`)
	id1 := b.Publish(vhost, queue, o1)
	if id := b.Publish(vhost, queue, o1); id != id1 {
		t.Fatalf("Waldur's ids of identical payloads differ: %s %s", id1, id)
	}
	b.Publish(vhost, queue, []byte(`{"order_uuid": "o2", "order_state": "executing"}`))

	c, err := gostomp.Dial("tcp", brokertest.STOMPAddr, gostomp.ConnOpt.Host(vhost),
		gostomp.ConnOpt.Login(brokertest.AdminUser, brokertest.AdminPass))
	if err != nil {
		t.Fatalf("STOMP: %v", err)
	}
	defer c.Disconnect()
	sub, err := c.Subscribe("/amq/queue/"+queue, gostomp.AckClientIndividual, gostomp.SubscribeOpt.Header("prefetch-count", "10"))
	if err != nil {
		t.Fatal(err)
	}
	fates := make(chan string, 8)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	delivered := make(chan string, 3)
	go func() {
		for i := range 3 {
			var msg *gostomp.Message
			select {
			case msg = <-sub.C:
			case <-ctx.Done():
				return
			}
			if msg.Err != nil {
				t.Error(msg.Err)
				return
			}
			name := fmt.Sprint("m", i)
			m := &Message{Source: "stomp", Destination: queue, Body: msg.Body, Type: "order",
				ID: msg.Header.Get("x-message-id"), Settler: stompSettler{c: c, msg: msg, name: name, fate: fates}}
			if err := r.Deliver(ctx, m); err != nil { // returns without waiting for the copy's original
				t.Error(err)
			}
			delivered <- name
		}
	}()
	if id := <-g.started; id != id1 {
		t.Fatalf("gate started for %s", id)
	}
	// o1 is in flight; its copy (m1) and o2 (m2) must get through.
	<-delivered
	<-delivered
	<-delivered
	if f := <-fates; f != "m2:ack" {
		t.Fatalf("first settlement %q, want o2 (m2) acked while o1 is in flight", f)
	}
	if n := testCounter(r.m.Parked.WithLabelValues("stomp")); n != 1 {
		t.Errorf("parked = %v, want 1", n)
	}
	close(g.release)
	got := map[string]bool{<-fates: true, <-fates: true}
	if !got["m0:ack"] || !got["m1:ack"] {
		t.Errorf("after o1 finished: %v, want o1 and its copy acked", got)
	}
	select {
	case id := <-g.started:
		t.Errorf("the copy ran its plan (%s)", id)
	default:
	}
	brokertest.WaitFor(t, 30*time.Second, "the queue to be empty", func() bool {
		ready, unacked := b.Depth(vhost, queue)
		return ready == 0 && unacked == 0
	})
}
