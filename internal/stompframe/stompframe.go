// Package stompframe takes the MESSAGE frames out of a STOMP 1.2 byte
// stream, parsed, and passes everything else on unchanged to the STOMP
// client reading the stream (go-stomp).
//
// Why: go-stomp turns every MESSAGE into a frame, then a Message, on three
// goroutines (its reader, its processing loop, the subscription's), and
// unescapes every header name and value with a strings.Replacer that copies
// each of them; in `eventfn bench` that is about a fifth of a message's
// CPU. A Demux parses a MESSAGE once, on the goroutine reading the
// connection, and hands it to the source directly. The connection's other
// frames (CONNECTED, RECEIPT, ERROR, heart-beats) still go to go-stomp, as
// do the MESSAGEs Take declines; for those, nothing changes.
//
// The parse is go-stomp's (frame.Reader): lines end in LF or CR LF; a
// header's first occurrence wins; a body is content-length bytes and a NUL,
// or everything up to the first NUL. At anything go-stomp would refuse (an
// unknown command, a header without a name, a bad content-length, a
// missing NUL) the Demux stops parsing and passes the rest of the stream
// through untouched, so go-stomp reports the error as it always did.
package stompframe

import (
	"bytes"
	"io"
	"strings"
	"sync/atomic"
	"time"
)

// Frame is a parsed frame.
type Frame struct {
	Command string
	// Header is the frame's headers in order, unescaped: name, value,
	// name, value, …
	Header Header
	// Body is the frame's body, a copy the Frame owns.
	Body []byte

	raw []byte // the frame as read (valid only during Take; tests)
}

// Header is a frame's headers: name, value, name, value, …, in order.
type Header []string

// Len returns the number of header entries.
func (h Header) Len() int { return len(h) / 2 }

// At returns entry i.
func (h Header) At(i int) (name, value string) { return h[2*i], h[2*i+1] }

// Lookup returns the value of the first entry named name.
func (h Header) Lookup(name string) (string, bool) {
	for i := 0; i+1 < len(h); i += 2 {
		if h[i] == name {
			return h[i+1], true
		}
	}
	return "", false
}

// Get returns the value of the first entry named name, "" if none.
func (h Header) Get(name string) string {
	v, _ := h.Lookup(name)
	return v
}

// Limits of what a Demux parses itself; a larger frame goes to go-stomp.
const (
	// MaxHead bounds a frame's command and header lines. go-stomp takes
	// any length; past this the Demux passes the rest of the stream
	// through (go-stomp reads it, as it read everything before).
	MaxHead = 1 << 20
	// DefaultMaxTake bounds the frames a Demux buffers whole to parse
	// (head and body). A larger MESSAGE is streamed to go-stomp instead,
	// which delivers it as before.
	DefaultMaxTake = 4 << 20
	// KeepAlive is how often, at most, a Demux that is taking every frame
	// gives the reader a heart-beat (an LF) in their place, unless
	// SetKeepAlive says otherwise: go-stomp closes a connection it hears
	// nothing on for its heart-beat interval.
	KeepAlive = time.Second
)

// state is where the stream is.
type state uint8

const (
	atBoundary  state = iota // the next byte starts a frame or is an EOL between frames
	passCount                // passing a body of left bytes
	passNUL                  // passing a body up to its NUL
	passTerm                 // the NUL after a content-length body
	transparent              // passing everything: the stream is not one the Demux parses
)

// Demux reads a STOMP stream from R: the MESSAGE frames Take accepts go to
// it; everything else comes out of Read unchanged. A Demux is read by one
// goroutine; Take may be set from another.
type Demux struct {
	r       io.Reader
	take    atomic.Pointer[func(*Frame) bool]
	maxTake int
	// keepAlive is how often the reader gets an LF while frames are taken
	// (0: never; tests).
	keepAlive time.Duration

	buf []byte // read from r; buf[off:] is not yet handled
	off int
	out []byte // handled bytes for Read; out[outOff:] not yet returned
	// outOff is how much of out Read has returned.
	outOff int
	st     state
	need   int // bytes from off the frame being taken needs (fill makes room)
	// headSeen is how many bytes from off were searched for the end of
	// the frame's head, without finding it.
	headSeen int
	left     int   // passCount: body bytes still to pass
	err      error // r's error, returned once out is empty
	// lastOut is when bytes last went to the reader (or a keep-alive).
	lastOut time.Time
	// afterTake: the last frame was taken, so the EOLs after it are taken
	// too (RabbitMQ ends every frame with one), and the reader is kept
	// alive instead.
	afterTake bool
	frame     Frame        // the frame given to take
	emitted   int64        // bytes handed to the reader so far (tests)
	skipped   func([]byte) // called with the EOLs taken (tests)
}

// NewDemux returns a Demux reading r. Until SetTake is called it takes
// nothing.
func NewDemux(r io.Reader) *Demux {
	return &Demux{r: r, maxTake: DefaultMaxTake, keepAlive: KeepAlive}
}

// SetTake makes take receive the MESSAGE frames read from now on; a frame
// for which it returns false goes to the reader instead. take runs on the
// goroutine calling Read and must not block. The *Frame is valid only
// during the call (the next frame reuses it); its Header and Body are
// take's to keep. nil takes nothing.
func (d *Demux) SetTake(take func(*Frame) bool) {
	if take == nil {
		d.take.Store(nil)
		return
	}
	d.take.Store(&take)
}

// SetKeepAlive sets how often, at most, the reader gets an LF while frames
// are taken (KeepAlive by default): well within the reader's heart-beat
// timeout. Call it before the first Read.
func (d *Demux) SetKeepAlive(every time.Duration) { d.keepAlive = every }

// Read implements io.Reader: the stream less the frames taken.
func (d *Demux) Read(p []byte) (int, error) {
	for d.outOff == len(d.out) {
		d.out, d.outOff = d.out[:0], 0
		if d.st == transparent && d.off == len(d.buf) {
			d.buf, d.off = nil, 0
			if d.err != nil {
				return 0, d.err
			}
			return d.r.Read(p)
		}
		if d.err != nil {
			return 0, d.err
		}
		d.fill()
		d.scan()
	}
	n := copy(p, d.out[d.outOff:])
	d.outOff += n
	return n, nil
}

// fill reads once from r into buf, making room for need bytes from off
// first (the whole frame being taken, when its length is known).
func (d *Demux) fill() {
	if d.off == len(d.buf) {
		d.buf, d.off = d.buf[:0], 0
		if cap(d.buf) > 1<<20 {
			d.buf = nil // a large frame has gone: do not keep its buffer
		}
	}
	if len(d.buf) == cap(d.buf) || d.need > cap(d.buf)-d.off {
		if d.off > 0 {
			n := copy(d.buf, d.buf[d.off:])
			d.buf, d.off = d.buf[:n], 0
		}
		if len(d.buf) == cap(d.buf) || d.need > cap(d.buf) {
			// One allocation for a frame of known length, not a doubling
			// per read.
			nb := make([]byte, len(d.buf), max(2*cap(d.buf), 32<<10, d.need))
			copy(nb, d.buf)
			d.buf = nb
		}
	}
	d.need = 0
	n, err := d.r.Read(d.buf[len(d.buf):cap(d.buf)])
	d.buf = d.buf[:len(d.buf)+n]
	if err != nil {
		d.err = err
	}
}

// emit hands b to the reader.
func (d *Demux) emit(b []byte) {
	d.afterTake, d.headSeen = false, 0
	d.out = append(d.out, b...)
	d.emitted += int64(len(b))
	d.off += len(b)
	d.lastOut = time.Now()
}

// scan handles what buf holds: it returns when it needs more bytes.
func (d *Demux) scan() {
	for d.off < len(d.buf) {
		b := d.buf[d.off:]
		switch d.st {
		case transparent:
			d.emit(b)
			return
		case passCount:
			n := min(d.left, len(b))
			d.emit(b[:n])
			if d.left -= n; d.left == 0 {
				d.st = passTerm
			}
			continue
		case passNUL:
			i := bytes.IndexByte(b, 0)
			if i < 0 {
				d.emit(b)
				return
			}
			d.emit(b[:i+1])
			d.st = atBoundary
			continue
		case passTerm:
			if b[0] != 0 {
				d.st = transparent // go-stomp refuses the frame
				continue
			}
			d.emit(b[:1])
			d.st = atBoundary
			continue
		}
		// At a frame boundary: heart-beats, then a frame's head.
		if n := eol(b); n != 0 {
			if n < 0 {
				return
			}
			if d.afterTake {
				d.skip(b[:n])
				continue
			}
			d.emit(b[:n])
			continue
		}
		if b[0] == '\r' {
			d.st = transparent // a command starting with CR: invalid
			continue
		}
		if !d.headEnded(b) {
			// Refuse early what can never become a frame go-stomp takes:
			// a first line that is no command (the longest command is 11
			// bytes and a CR).
			line, _, ok := cutLine(b)
			if len(b) > MaxHead || (ok && !commands[string(line)]) || (!ok && len(b) > 16) {
				d.st = transparent
				continue
			}
			return
		}
		h, ok := parseHead(b)
		if !ok {
			d.st = transparent
			continue
		}
		if h.n == 0 { // incomplete
			if len(b) > MaxHead {
				d.st = transparent
				continue
			}
			return
		}
		take := d.take.Load()
		if h.command == "MESSAGE" && take != nil && (h.length < 0 || h.n+h.length+1 <= d.maxTake) {
			total := 0
			if h.length >= 0 {
				total = h.n + h.length + 1
				if len(b) < total {
					d.need = total
					return
				}
				if b[total-1] != 0 {
					d.st = transparent
					continue
				}
			} else if i := bytes.IndexByte(b[h.n:], 0); i >= 0 {
				total = h.n + i + 1
			} else if len(b) < d.maxTake {
				return
			}
			if total > 0 {
				h.frame(&d.frame, b[:total])
				if (*take)(&d.frame) {
					d.off, d.headSeen = d.off+total, 0
					d.keepReaderAlive()
					d.afterTake = true
					continue
				}
				d.emit(b[:total])
				continue
			}
			// An unterminated body past maxTake: go-stomp's to read.
		}
		d.emit(b[:h.n])
		switch {
		case h.length > 0:
			d.st, d.left = passCount, h.length
		case h.length == 0:
			d.st = passTerm
		default:
			d.st = passNUL
		}
	}
}

// headEnded reports whether b, a frame's start, holds the blank line that
// ends its head. The bytes searched before are not searched again, so that
// a large head arriving in many reads costs its length once, not once per
// read.
func (d *Demux) headEnded(b []byte) bool {
	from := max(0, d.headSeen-2)
	if bytes.Contains(b[from:], []byte("\n\n")) || bytes.Contains(b[from:], []byte("\n\r\n")) {
		return true
	}
	d.headSeen = len(b)
	return false
}

// eol returns the length of the EOL (LF or CR LF) at the start of b: 0
// when b does not start with one, -1 when b is a lone CR (more to read).
func eol(b []byte) int {
	switch {
	case b[0] == '\n':
		return 1
	case b[0] != '\r':
		return 0
	case len(b) < 2:
		return -1
	case b[1] == '\n':
		return 2
	}
	return 0
}

// skip takes the EOLs b after a taken frame.
func (d *Demux) skip(b []byte) {
	if d.skipped != nil {
		d.skipped(b)
	}
	d.off += len(b)
	d.headSeen = 0
	d.keepReaderAlive()
}

// keepReaderAlive gives the reader an LF, at a frame boundary, when it has
// had nothing for keepAlive.
func (d *Demux) keepReaderAlive() {
	if d.keepAlive <= 0 || time.Since(d.lastOut) < d.keepAlive {
		return
	}
	d.out = append(d.out, '\n')
	d.lastOut = time.Now()
}

// head is a parsed command and header block.
type head struct {
	n       int // bytes of the command and headers, up to the blank line's end; 0: incomplete
	command string
	length  int    // content-length, -1 when absent
	lines   []byte // the header lines (after the command line), raw
	entries int    // how many
}

// commands are the frames go-stomp's reader accepts.
var commands = map[string]bool{
	"CONNECT": true, "STOMP": true, "SEND": true, "SUBSCRIBE": true, "UNSUBSCRIBE": true,
	"ACK": true, "NACK": true, "BEGIN": true, "COMMIT": true, "ABORT": true, "DISCONNECT": true,
	"CONNECTED": true, "MESSAGE": true, "RECEIPT": true, "ERROR": true,
}

// parseHead parses the command and header lines at the start of b. ok is
// false for what go-stomp refuses; h.n is 0 when b ends before the blank
// line.
func parseHead(b []byte) (h head, ok bool) {
	line, rest, found := cutLine(b)
	if !found {
		// The command line is incomplete: refuse early only what can
		// never become a command (the longest is 11 bytes and a CR).
		return head{}, len(b) <= 16
	}
	if !commands[string(line)] {
		return head{}, false
	}
	h.command = commandName(line)
	h.length = -1
	start := len(b) - len(rest)
	for pos := start; ; {
		line, _, found := cutLine(b[pos:])
		if !found {
			return head{command: h.command}, true
		}
		next := pos + lineLen(b[pos:])
		if len(line) == 0 {
			h.n, h.lines = next, b[start:pos]
			return h, true
		}
		i := bytes.IndexByte(line, ':')
		if i <= 0 {
			return head{}, false
		}
		h.entries++
		if h.length < 0 && string(line[:i]) == "content-length" {
			n, ok := parseLength(line[i+1:])
			if !ok {
				return head{}, false
			}
			h.length = n
		}
		pos = next
	}
}

// commandName returns the command as a constant string (no allocation).
func commandName(line []byte) string {
	switch string(line) {
	case "MESSAGE":
		return "MESSAGE"
	case "RECEIPT":
		return "RECEIPT"
	case "ERROR":
		return "ERROR"
	}
	return string(line)
}

// cutLine returns the line at the start of b without its LF or CR LF, and
// the bytes after it; found is false when b holds no LF.
func cutLine(b []byte) (line, rest []byte, found bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil, b, false
	}
	line = b[:i]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, b[i+1:], true
}

// lineLen is the length of the line at the start of b with its LF.
func lineLen(b []byte) int { return bytes.IndexByte(b, '\n') + 1 }

// parseLength parses a content-length as go-stomp does
// (strconv.ParseUint(v, 10, 32) of the unescaped value). A value with an
// escape is refused here and left to go-stomp.
func parseLength(v []byte) (int, bool) {
	if len(v) == 0 || len(v) > 10 {
		return 0, false
	}
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n <= 1<<32-1
}

// frame sets f to the frame raw (whose head is h): its headers unescaped,
// its body copied.
func (h *head) frame(f *Frame, raw []byte) {
	end := len(raw) - 1 // the NUL
	body := make([]byte, end-h.n)
	copy(body, raw[h.n:end])
	// One string for every header name and value without an escape.
	all := string(h.lines)
	hdr := make(Header, 0, 2*h.entries)
	for pos := 0; pos < len(all); {
		i := pos + strings.IndexByte(all[pos:], '\n')
		line := all[pos:i]
		pos = i + 1
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		c := strings.IndexByte(line, ':')
		hdr = append(hdr, unescape(line[:c]), unescape(line[c+1:]))
	}
	*f = Frame{Command: h.command, Header: hdr, Body: body, raw: raw}
}

// unescape decodes a STOMP 1.2 header name or value as go-stomp does:
// \r, \n, \c and \\ are decoded, any other backslash is kept as it is.
func unescape(s string) string {
	i := strings.IndexByte(s, '\\')
	if i < 0 {
		return s
	}
	out := make([]byte, 0, len(s))
	out = append(out, s[:i]...)
	for ; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) {
			switch s[i+1] {
			case 'r':
				c = '\r'
			case 'n':
				c = '\n'
			case 'c':
				c = ':'
			case '\\':
				c = '\\'
			default:
				out = append(out, c)
				continue
			}
			i++
		}
		out = append(out, c)
	}
	return string(out)
}
