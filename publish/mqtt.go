package publish

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eventfn/eventfn/internal/creds"
	"github.com/eventfn/eventfn/runner/mqtt"
)

// mqttPublisher publishes over one MQTT connection.
type mqttPublisher struct {
	c       paho.Client
	every   int
	pending []paho.Token // published, PUBACK not yet awaited
}

// DialMQTT opens an MQTT publisher (mqtt://, mqtts://, mqtt+ws://,
// mqtt+wss://): MQTT 3.1.1, QoS 1, a clean session under a client id of its
// own. With a vhost, a login without ':' is sent as "vhost:login"
// (RabbitMQ's form). MQTT 3.1.1 has no headers: only the topic
// (Message.Destination) and the body travel. An eventfn MQTT source derives
// the same x-message-id from vhost, topic and body.
func DialMQTT(ctx context.Context, o Options) (Publisher, error) {
	broker, err := mqtt.BrokerURL(o.URL)
	if err != nil {
		return nil, err
	}
	id := make([]byte, 6)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	opts := paho.NewClientOptions().AddBroker(broker).
		SetClientID("eventfn-publish-" + hex.EncodeToString(id)).
		SetCleanSession(true).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectTimeout(30 * time.Second)
	if o.Login != "" {
		user, _ := mqtt.Login(o.VHost, o.Login)
		opts.SetUsername(user).SetPassword(o.Passcode)
	}
	if mqtt.IsSecure(o.URL) {
		conf, err := mqtt.TLSConfig(creds.TLSSpec{CAFile: o.CAFile, CertFile: o.CertFile, KeyFile: o.KeyFile,
			ServerName: o.ServerName, InsecureSkipVerify: o.InsecureSkipVerify})
		if err != nil {
			return nil, err
		}
		opts.SetTLSConfig(conf)
	}
	c := paho.NewClient(opts)
	if err := mqtt.WaitToken(ctx, c.Connect()); err != nil {
		c.Disconnect(0)
		return nil, fmt.Errorf("mqtt connect to %s: %w", o.URL, err)
	}
	return &mqttPublisher{c: c, every: max(o.ConfirmEvery, 1)}, nil
}

// Publish implements Publisher: PUBLISH with QoS 1 to the topic
// m.Destination, waiting for the broker's PUBACKs every ConfirmEvery
// messages. Headers are not sent (MQTT 3.1.1 has none).
func (p *mqttPublisher) Publish(ctx context.Context, m Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if m.Destination == "" || strings.ContainsAny(m.Destination, "+#") {
		return fmt.Errorf("mqtt: topic %q: want a topic without + or #", m.Destination)
	}
	p.pending = append(p.pending, p.c.Publish(m.Destination, 1, false, m.Body))
	if len(p.pending) >= p.every {
		return p.confirm(ctx)
	}
	return nil
}

// confirm waits for the PUBACKs of every message published so far.
func (p *mqttPublisher) confirm(ctx context.Context) error {
	var errs []error
	for _, t := range p.pending {
		if err := mqtt.WaitToken(ctx, t); err != nil {
			errs = append(errs, err)
		}
	}
	p.pending = p.pending[:0]
	return errors.Join(errs...)
}

// Close implements Publisher: it waits for the outstanding PUBACKs, then
// disconnects.
func (p *mqttPublisher) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := p.confirm(ctx)
	p.c.Disconnect(250)
	return err
}
