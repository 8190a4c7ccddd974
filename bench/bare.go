package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	gostomp "github.com/go-stomp/stomp/v3"
	"github.com/gorilla/websocket"

	"github.com/eventfn/eventfn/publish"
	"github.com/eventfn/eventfn/runner/mqtt"
	"github.com/eventfn/eventfn/runner/stomp"
)

// runBare runs the baseline consumer: the least a client of the same
// library must do with each message (receive it, acknowledge it), with the
// same transport, acknowledgement mode, prefetch and heart-beats as
// eventfn's source. It reads the publish time like eventfn's hook does, so
// its latency is the broker's and the transport's share.
func runBare(ctx context.Context, j job, passcode string, m *meter, ready func()) error {
	family, err := familyOf(j.URL)
	if err != nil {
		return err
	}
	if family == familyMQTT {
		return bareMQTT(ctx, j, j.conn(passcode), m, ready)
	}
	return bareSTOMP(ctx, j, j.conn(passcode), m, ready)
}

// bareSTOMP consumes with go-stomp: client-individual acks, the job's
// prefetch-count, an ACK per message as it arrives.
func bareSTOMP(ctx context.Context, j job, c connInfo, m *meter, ready func()) error {
	e, err := stomp.ParseURL(c.url)
	if err != nil {
		return err
	}
	var conf *tls.Config
	if e.Secure() {
		if conf, err = c.tlsConfig(); err != nil {
			return err
		}
	}
	raw, err := dialRaw(ctx, e, conf)
	if err != nil {
		return err
	}
	vhost := c.vhost
	if vhost == "" {
		vhost = e.VHost
	}
	if vhost == "" {
		vhost = "/"
	}
	opts := []func(*gostomp.Conn) error{
		gostomp.ConnOpt.Host(vhost),
		gostomp.ConnOpt.AcceptVersion(gostomp.V12),
		gostomp.ConnOpt.HeartBeat(stomp.DefaultHeartbeat, stomp.DefaultHeartbeat),
		gostomp.ConnOpt.DisconnectReceiptTimeout(5 * time.Second),
	}
	if c.login != "" {
		opts = append(opts, gostomp.ConnOpt.Login(c.login, c.passcode))
	}
	conn, err := gostomp.Connect(raw, opts...)
	if err != nil {
		raw.Close()
		return fmt.Errorf("connect to %s: %w", e, err)
	}
	defer func() { _ = conn.Disconnect() }()
	prefetch := j.Prefetch
	if prefetch <= 0 {
		prefetch = stomp.DefaultPrefetch
	}
	sub, err := conn.Subscribe(j.Destination, gostomp.AckClientIndividual,
		gostomp.SubscribeOpt.Header("prefetch-count", strconv.Itoa(prefetch)))
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", j.Destination, err)
	}
	ready()
	for {
		select {
		case msg, ok := <-sub.C:
			if !ok {
				return errors.New("subscription closed")
			}
			if msg.Err != nil {
				return fmt.Errorf("subscription: %w", msg.Err)
			}
			now := time.Now()
			m.received(now)
			if j.Latency {
				if ns, err := strconv.ParseInt(msg.Header.Get(publish.HeaderPublishedAt), 10, 64); err == nil {
					m.lat.record(time.Duration(now.UnixNano() - ns))
				}
			}
			m.settle(conn.Ack(msg) == nil)
		case <-m.done:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// dialRaw opens the byte stream go-stomp runs over: TCP, TLS or a
// WebSocket offering the STOMP subprotocols.
func dialRaw(ctx context.Context, e stomp.Endpoint, conf *tls.Config) (io.ReadWriteCloser, error) {
	d := &net.Dialer{Timeout: 30 * time.Second}
	switch e.Scheme {
	case stomp.SchemeTCP:
		return d.DialContext(ctx, "tcp", e.Addr)
	case stomp.SchemeTLS:
		return (&tls.Dialer{NetDialer: d, Config: conf}).DialContext(ctx, "tcp", e.Addr)
	}
	scheme := "ws"
	if e.Scheme == stomp.SchemeWSS {
		scheme = "wss"
	}
	wd := &websocket.Dialer{NetDialContext: d.DialContext, TLSClientConfig: conf,
		HandshakeTimeout: 30 * time.Second, Subprotocols: []string{"v12.stomp"}}
	ws, _, err := wd.DialContext(ctx, scheme+"://"+e.Addr+e.Path, nil)
	if err != nil {
		return nil, fmt.Errorf("websocket %s: %w", e, err)
	}
	return &wsStream{ws: ws}, nil
}

// wsStream is the least adapter from a WebSocket to the byte stream
// go-stomp wants: reads concatenate messages, each write is one message.
type wsStream struct {
	ws *websocket.Conn
	r  io.Reader
	wm sync.Mutex
}

func (s *wsStream) Read(p []byte) (int, error) {
	for {
		if s.r == nil {
			_, r, err := s.ws.NextReader()
			if err != nil {
				return 0, err
			}
			s.r = r
		}
		n, err := s.r.Read(p)
		if err == io.EOF {
			s.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (s *wsStream) Write(p []byte) (int, error) {
	s.wm.Lock()
	defer s.wm.Unlock()
	if err := s.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (s *wsStream) Close() error { return s.ws.Close() }

// bareMQTT consumes with paho as eventfn's source configures it (MQTT
// 3.1.1, persistent session, QoS 1, manual acks, ordered delivery), and
// acknowledges each message in the handler. Prefetch is the broker's
// (RabbitMQ: mqtt.prefetch).
func bareMQTT(ctx context.Context, j job, c connInfo, m *meter, ready func()) error {
	broker, err := mqtt.BrokerURL(c.url)
	if err != nil {
		return err
	}
	opts := paho.NewClientOptions().AddBroker(broker).SetClientID(j.ClientID).
		SetCleanSession(false).SetProtocolVersion(4).SetAutoAckDisabled(true).SetOrderMatters(true).
		SetAutoReconnect(false).SetKeepAlive(mqtt.DefaultKeepAlive).SetConnectTimeout(30 * time.Second).
		SetDefaultPublishHandler(func(_ paho.Client, msg paho.Message) {
			now := time.Now()
			m.received(now)
			if j.Latency {
				if ns, ok := publishedAt(msg.Payload()); ok {
					m.lat.record(time.Duration(now.UnixNano() - ns))
				}
			}
			msg.Ack()
			m.settle(true)
		})
	lost := make(chan error, 1)
	opts.SetConnectionLostHandler(func(_ paho.Client, err error) {
		select {
		case lost <- fmt.Errorf("connection lost: %w", err):
		default:
		}
	})
	if c.login != "" {
		user, _ := mqtt.Login(c.vhost, c.login)
		opts.SetUsername(user).SetPassword(c.passcode)
	}
	if mqtt.IsSecure(c.url) {
		conf, err := c.tlsConfig()
		if err != nil {
			return err
		}
		opts.SetTLSConfig(conf)
	}
	cl := paho.NewClient(opts)
	if err := mqtt.WaitToken(ctx, cl.Connect()); err != nil {
		return fmt.Errorf("mqtt connect to %s: %w", c.url, err)
	}
	defer cl.Disconnect(250)
	if err := mqtt.WaitToken(ctx, cl.SubscribeMultiple(map[string]byte{j.Destination: 1}, nil)); err != nil {
		return fmt.Errorf("mqtt subscribe %s: %w", j.Destination, err)
	}
	ready()
	return waitDone(ctx, m, lost)
}
