package stomp

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eventfn/eventfn/internal/coalesce"
	"github.com/eventfn/eventfn/internal/stompframe"
)

// wire sits between go-stomp and the transport (TCP, TLS or WebSocket). It
//
//   - adds headers that go-stomp's API cannot put on a frame: requeue:false
//     on the NACK that dead-letters a message, and a receipt on the last
//     SUBSCRIBE of a connection (go-stomp ignores a RECEIPT it did not ask
//     for, so it never disturbs the subscription);
//   - watches the incoming bytes for that RECEIPT: the broker has set up
//     every subscription of the connection;
//   - records when data last arrived and the first I/O error, so the
//     session learns of a dead connection without relying on go-stomp's
//     goroutines;
//   - coalesces writes (package coalesce): go-stomp writes and flushes one
//     frame at a time, so without it every ACK costs a system call (and,
//     over TLS or a WebSocket, a record or a message of its own);
//   - takes the MESSAGE frames of the source's subscriptions out of the
//     stream go-stomp reads (package stompframe; see session.take), and
//     writes their ACKs and NACKs itself (writeFrame), between go-stomp's
//     frames.
//
// go-stomp flushes exactly one frame per Write (its frames here are far
// smaller than its 4 KiB buffer, except SEND bodies, which are never
// rewritten), so a frame to rewrite is always a whole Write that starts at
// a frame boundary. Rewriting happens in Write, before coalescing.
type wire struct {
	net.Conn

	mu       sync.Mutex
	boundary bool              // the next Write starts a frame
	extra    map[string]string // command "\x00" escaped id → header lines to add
	want     [][]byte          // the RECEIPT frame awaited, as its first bytes (LF or CRLF)
	tail     []byte            // last bytes read, for a token split across reads
	got      chan struct{}     // closed when want is seen
	// While want is set, the frame commands read are followed so that an
	// ERROR frame read before the RECEIPT is known (RabbitMQ sends ERROR
	// then the RECEIPT for a subscription to a missing queue).
	atFrameStart bool   // the next non-EOL byte starts a frame
	cmd          []byte // the command being read, up to 8 bytes
	inCmd        bool
	errorSeen    atomic.Bool

	lastRead atomic.Int64 // unix nanos

	deadOnce sync.Once
	dead     chan struct{}
	deadErr  error

	// out is where frames are written: the transport itself, or a
	// coalesce.Conn over it. Whoever holds turn writes: a frame is
	// rewritten and queued before the next one is. go-stomp keeps turn
	// from a Write that leaves a frame unfinished (a SEND larger than its
	// buffer comes in several) to the Write that finishes it, so that
	// writeFrame's frames go between go-stomp's, never into one.
	out      net.Conn
	turn     chan struct{}
	midFrame bool // go-stomp holds turn mid-frame (its writer goroutine only)
	closed   bool // Close was called (mu)

	// demux is what go-stomp reads: the transport (readRaw) less the
	// MESSAGE frames taken.
	demux *stompframe.Demux
}

// newWire wraps a transport; writes are coalesced for the transports
// dialTransport makes (see coalesces).
func newWire(c net.Conn) *wire { return newWireMode(c, coalesces(c)) }

// coalesces reports whether writes to c go through a flusher goroutine:
// for TCP, TLS and WebSocket, where each Write is a system call (and a TLS
// record or a WebSocket message). RabbitMQ Web-STOMP takes a message
// holding several frames and applies each (TestCoalescedAcksOverTheBroker).
// Any other net.Conn, such as a test double reading back what was just
// written, is written synchronously, in the caller's Write.
func coalesces(c net.Conn) bool {
	switch c.(type) {
	case *net.TCPConn, *tls.Conn, *wsConn:
		return true
	}
	return false
}

// newWireMode wraps a transport, its writes coalesced (coalesce.Conn) when
// coalesce is set.
func newWireMode(c net.Conn, coalesced bool) *wire {
	w := &wire{Conn: c, boundary: true, extra: map[string]string{}, dead: make(chan struct{}),
		out: c, turn: make(chan struct{}, 1)}
	w.demux = stompframe.NewDemux(rawReader{w})
	w.lastRead.Store(time.Now().UnixNano())
	if coalesced {
		// A failed transport Write kills the wire at once; the coalescer
		// then closes the transport, so go-stomp's reader fails too (it
		// would see the error only at its next Write, which may be a
		// heart-beat seconds away).
		w.out = coalesce.New(c, w.kill)
	}
	return w
}

// errClosedByUs marks a connection this side closed.
var errClosedByUs = errors.New("connection closed by eventfn")

// Read implements net.Conn: the stream less the MESSAGE frames taken.
func (w *wire) Read(p []byte) (int, error) { return w.demux.Read(p) }

// take makes take receive the MESSAGE frames read from now on (see
// stompframe.Demux.SetTake).
func (w *wire) take(take func(*stompframe.Frame) bool) { w.demux.SetTake(take) }

// rawReader reads the transport for the demux.
type rawReader struct{ w *wire }

func (r rawReader) Read(p []byte) (int, error) { return r.w.readRaw(p) }

// readRaw reads the transport, noting when data arrived, watching for an
// awaited RECEIPT, and killing the wire at an error.
func (w *wire) readRaw(p []byte) (int, error) {
	n, err := w.Conn.Read(p)
	if n > 0 {
		w.lastRead.Store(time.Now().UnixNano())
		w.mu.Lock()
		if w.want != nil {
			w.follow(p[:n])
			buf := append(w.tail, p[:n]...)
			if bytes.Contains(buf, w.want[0]) || bytes.Contains(buf, w.want[1]) {
				close(w.got)
				w.want, w.tail = nil, nil
			} else {
				keep := min(len(buf), len(w.want[1])-1)
				w.tail = append(w.tail[:0:0], buf[len(buf)-keep:]...)
			}
		}
		w.mu.Unlock()
	}
	if err != nil {
		w.kill(err)
	}
	return n, err
}

// follow tracks frame commands in p, setting errorSeen on an ERROR frame.
// Called with mu held.
func (w *wire) follow(p []byte) {
	for _, b := range p {
		switch {
		case w.inCmd && b == '\n':
			w.inCmd = false
			if string(bytes.TrimSuffix(w.cmd, []byte{'\r'})) == "ERROR" {
				w.errorSeen.Store(true)
			}
		case w.inCmd:
			if len(w.cmd) < 8 {
				w.cmd = append(w.cmd, b)
			}
		case b == 0:
			w.atFrameStart = true
		case w.atFrameStart && (b == '\n' || b == '\r'):
		case w.atFrameStart:
			w.atFrameStart, w.inCmd, w.cmd = false, true, append(w.cmd[:0], b)
		}
	}
}

// sawError reports whether an ERROR frame was read while a RECEIPT was
// awaited.
func (w *wire) sawError() bool { return w.errorSeen.Load() }

// Write implements net.Conn. When writes are coalesced it returns once p
// is queued; a transport error is returned by the Writes after it (and
// kills the wire at once).
// Only go-stomp calls it (one Write at a time).
func (w *wire) Write(p []byte) (int, error) {
	if !w.midFrame {
		if err := w.acquire(); err != nil {
			return 0, err
		}
	}
	n, err := w.write(p)
	w.midFrame = err == nil && !w.boundary
	if !w.midFrame {
		<-w.turn
	}
	return n, err
}

// writeFrame writes one whole frame (a command and its headers, unescaped
// name, value pairs, no body) between go-stomp's frames.
func (w *wire) writeFrame(command string, header ...string) error {
	b := make([]byte, 0, 64)
	b = append(append(b, command...), '\n')
	for i := 0; i+1 < len(header); i += 2 {
		b = append(append(append(append(b, escapeHeader(header[i])...), ':'), escapeHeader(header[i+1])...), '\n')
	}
	b = append(b, '\n', 0)
	if err := w.acquire(); err != nil {
		return err
	}
	defer func() { <-w.turn }()
	_, err := w.write(b)
	return err
}

// acquire waits for the turn to write, or fails once the wire is dead.
func (w *wire) acquire() error {
	select {
	case <-w.dead:
		return w.deadErr
	default:
	}
	select {
	case w.turn <- struct{}{}:
		return nil
	case <-w.dead:
		return w.deadErr
	}
}

// write rewrites and writes p; the caller holds turn.
func (w *wire) write(p []byte) (int, error) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return 0, errClosedByUs
	}
	line, add, rest := w.rewrite(p)
	w.mu.Unlock()
	out := p
	if add != "" {
		out = make([]byte, 0, len(p)+len(add))
		out = append(append(append(append(out, line...), '\n'), add...), rest...)
	}
	if _, err := w.out.Write(out); err != nil {
		w.kill(err)
		return 0, err
	}
	return len(p), nil
}

// rewrite returns the headers to add to frame p (NACK or SUBSCRIBE) and
// where they go, after line; add is "" when p is written as it is. It
// tracks frame boundaries. Called with mu held.
func (w *wire) rewrite(p []byte) (line []byte, add string, rest []byte) {
	atStart := w.boundary
	w.boundary = endsFrame(p, atStart)
	if !atStart || len(w.extra) == 0 {
		return nil, "", nil
	}
	line, rest, ok := bytes.Cut(p, []byte{'\n'})
	if !ok {
		return nil, "", nil
	}
	cmd := string(bytes.TrimSuffix(line, []byte{'\r'}))
	if cmd != "NACK" && cmd != "SUBSCRIBE" {
		return nil, "", nil
	}
	key := cmd + "\x00" + headerValue(rest, "id")
	add, ok = w.extra[key]
	if !ok {
		return nil, "", nil
	}
	delete(w.extra, key)
	return line, add, rest
}

// Close implements net.Conn. Nothing pending is written any more (a
// coalescer's flusher stops; a transport Write in progress fails as the
// transport closes), and later Writes fail.
func (w *wire) Close() error {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.kill(errClosedByUs)
	return w.out.Close()
}

// coalesced reports whether the wire's writes are coalesced.
func (w *wire) coalesced() bool {
	_, ok := w.out.(*coalesce.Conn)
	return ok
}

// flushed is closed once nothing more will be written: at once for a
// synchronous wire, when the coalescer's flusher has returned otherwise.
func (w *wire) flushed() <-chan struct{} {
	if c, ok := w.out.(*coalesce.Conn); ok {
		return c.Flushed()
	}
	done := make(chan struct{})
	close(done)
	return done
}

// addHeader makes the next frame cmd (NACK or SUBSCRIBE) whose id header
// is id carry the header key:value.
func (w *wire) addHeader(cmd, id, key, value string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	k := cmd + "\x00" + escapeHeader(id)
	w.extra[k] += escapeHeader(key) + ":" + escapeHeader(value) + "\n"
}

// expect returns a channel closed once the RECEIPT frame for token has
// been read. Only a RECEIPT counts: an ERROR caused by the receipted frame
// carries the token too (receipt-id), and means the opposite.
func (w *wire) expect(token string) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.want = [][]byte{[]byte("RECEIPT\nreceipt-id:" + token), []byte("RECEIPT\r\nreceipt-id:" + token)}
	w.tail, w.got = nil, make(chan struct{})
	w.atFrameStart, w.inCmd = true, false
	return w.got
}

// idle returns how long no data has arrived.
func (w *wire) idle() time.Duration {
	return time.Since(time.Unix(0, w.lastRead.Load()))
}

func (w *wire) kill(err error) {
	w.deadOnce.Do(func() {
		w.deadErr = err
		close(w.dead)
	})
}

// err returns why the connection died (after dead is closed).
func (w *wire) err() error {
	<-w.dead
	return w.deadErr
}

// endsFrame reports whether, after writing p, the stream is at a frame
// boundary: p ends a frame with its NUL, or is a heart-beat (EOLs only)
// written at a boundary.
func endsFrame(p []byte, before bool) bool {
	if len(p) == 0 {
		return before
	}
	if p[len(p)-1] == 0 {
		return true
	}
	if len(bytes.Trim(p, "\r\n")) == 0 {
		return before
	}
	return false
}

// headerValue returns the (escaped) value of header name in the header
// block at the start of b, "" when absent.
func headerValue(b []byte, name string) string {
	for len(b) > 0 {
		line, rest, _ := bytes.Cut(b, []byte{'\n'})
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) == 0 {
			return ""
		}
		if k, v, ok := bytes.Cut(line, []byte{':'}); ok && string(k) == name {
			return string(v)
		}
		b = rest
	}
	return ""
}

var headerEscaper = strings.NewReplacer("\\", "\\\\", "\r", "\\r", "\n", "\\n", ":", "\\c")

// escapeHeader encodes a header key or value as STOMP 1.2 (and go-stomp) do.
func escapeHeader(s string) string { return headerEscaper.Replace(s) }
