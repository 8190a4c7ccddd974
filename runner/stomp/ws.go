package stomp

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// wsConn adapts a WebSocket to the byte stream go-stomp reads and writes.
//
// Reading concatenates the payloads of text and binary messages, so a STOMP
// frame split across WebSocket messages, or several frames in one message
// (both allowed by STOMP-over-WebSocket servers; RabbitMQ Web-STOMP sends
// one frame per text message), reads as the same stream. Each Write is sent
// as one binary message (binary messages carry bodies that are not valid
// UTF-8 as well). The wire's flusher writes whatever frames are pending at
// once, so a message may hold several frames; RabbitMQ Web-STOMP parses a
// message as part of the stream and applies each
// (TestCoalescedAcksOverTheBroker).
type wsConn struct {
	ws *websocket.Conn

	rmu sync.Mutex
	r   io.Reader // the current message, nil between messages

	wmu sync.Mutex

	closeOnce sync.Once
	closeErr  error
}

var _ net.Conn = (*wsConn)(nil)

func newWSConn(ws *websocket.Conn) *wsConn { return &wsConn{ws: ws} }

// Read implements net.Conn.
func (c *wsConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		if c.r == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					return 0, &wsClosedError{err: ce}
				}
				return 0, err
			}
			if typ != websocket.TextMessage && typ != websocket.BinaryMessage {
				continue
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

// wsClosedError is the peer's close frame, kept readable for logs.
type wsClosedError struct{ err *websocket.CloseError }

func (e *wsClosedError) Error() string { return "websocket closed by the server: " + e.err.Error() }
func (e *wsClosedError) Unwrap() error { return e.err }

// Write implements net.Conn.
func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close sends a close message (best effort, briefly) and closes the socket.
func (c *wsConn) Close() error {
	c.closeOnce.Do(func() {
		// WriteControl and Close may run concurrently with a Write.
		_ = c.ws.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		c.closeErr = c.ws.Close()
	})
	return c.closeErr
}

// LocalAddr implements net.Conn.
func (c *wsConn) LocalAddr() net.Addr { return c.ws.LocalAddr() }

// RemoteAddr implements net.Conn.
func (c *wsConn) RemoteAddr() net.Addr { return c.ws.RemoteAddr() }

// SetDeadline implements net.Conn.
func (c *wsConn) SetDeadline(t time.Time) error {
	if err := c.ws.SetReadDeadline(t); err != nil {
		return err
	}
	return c.ws.SetWriteDeadline(t)
}

// SetReadDeadline implements net.Conn.
func (c *wsConn) SetReadDeadline(t time.Time) error { return c.ws.SetReadDeadline(t) }

// SetWriteDeadline implements net.Conn.
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }
