// Package local holds the sources that need no broker: a file of events
// (or stdin) and an HTTP endpoint that accepts pushed events.
package local

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eventfn/eventfn/event"
	"github.com/eventfn/eventfn/runner"
)

// File reads events from a file (or stdin when Path is "-"): one JSON
// envelope, a JSON array of them, or JSON Lines. Without Follow it returns
// once everything is delivered; with Follow it keeps reading as the file
// grows.
type File struct {
	SourceName string
	Path       string
	Follow     bool
	// Poll is how often a followed file is checked for growth (default 200ms).
	Poll time.Duration
	// Stdin replaces os.Stdin for Path "-".
	Stdin io.Reader
	// DeadLetterOnFailure: failed events are logged as dead-lettered (a
	// file has nowhere to put them; the log line is their record).
	DeadLetterOnFailure bool
}

// Name implements runner.Source.
func (f *File) Name() string { return f.SourceName }

type noopSettler struct{}

func (noopSettler) Ack(context.Context) error                { return nil }
func (noopSettler) Requeue(context.Context) error            { return nil }
func (noopSettler) DeadLetter(context.Context, string) error { return nil }

// Run implements runner.Source.
func (f *File) Run(ctx context.Context, deliver runner.Deliver) error {
	var r io.Reader
	if f.Path == "-" {
		r = f.Stdin
		if r == nil {
			r = os.Stdin
		}
	} else {
		fh, err := os.Open(f.Path)
		if err != nil {
			return fmt.Errorf("file source: %w", err)
		}
		defer fh.Close()
		r = fh
		if f.Follow {
			poll := f.Poll
			if poll <= 0 {
				poll = 200 * time.Millisecond
			}
			r = &follower{ctx: ctx, r: fh, poll: poll}
		}
	}
	n := 0
	return event.ScanRaw(r, func(raw []byte, err error) error {
		n++
		if err != nil { // a stream that cannot be parsed further: report it as one rejected message
			raw = []byte(err.Error())
		}
		m := &runner.Message{
			Source: f.SourceName, Destination: f.Path, Body: raw, Envelope: true,
			DeadLetterOnFailure: f.DeadLetterOnFailure, Settler: noopSettler{},
			ID: "", Received: time.Now(),
		}
		if derr := deliver(ctx, m); derr != nil {
			return derr
		}
		if err != nil {
			return fmt.Errorf("file source %s: event %d: %w", f.Path, n, err)
		}
		return ctx.Err()
	})
}

// follower reads a growing file: at EOF it waits and tries again until its
// context ends.
type follower struct {
	ctx  context.Context
	r    io.Reader
	poll time.Duration
}

func (f *follower) Read(p []byte) (int, error) {
	for {
		n, err := f.r.Read(p)
		if n > 0 || (err != nil && err != io.EOF) {
			return n, err
		}
		select {
		case <-f.ctx.Done():
			return 0, io.EOF
		case <-time.After(f.poll):
		}
	}
}

// HTTP accepts events pushed as envelopes with POST to Path (see
// HTTPConfig for every setting): 202 when accepted (kept durably in the
// spool when SpoolDir is set), or with respond: after_plan 200/500 with the
// outcome; 400 with the reason for bad JSON or a missing type, 401 without
// the token or signature, 403 cross-origin, 413 over the size limit, 415
// not JSON, 429 with Retry-After when full, 503 while stopping.
type HTTP struct {
	SourceName string
	// Addr is host:port; an empty host means the loopback address.
	Addr   string
	Path   string
	Limits event.Limits
	Logger *slog.Logger
	// Config holds the http: settings of the source.
	Config HTTPConfig
	// Dir anchors relative secret and certificate files (the rules file's).
	Dir string
	// LookupEnv reads token_env and hmac_secret_env (default os.LookupEnv).
	LookupEnv func(string) (string, bool)
	// SpoolDir, when set, keeps every accepted event (fsynced before the
	// 202) until its plans are settled, and runs what is left there at
	// start: runner.state_dir/http-spool/<source>.
	SpoolDir string
	// Metrics, when set, count refused requests in
	// eventfn_messages_rejected_total{source,reason}.
	Metrics *runner.Metrics
	// Listener, when set, is used instead of listening on Addr (tests).
	Listener net.Listener

	ready atomic.Bool

	prepared   bool
	cfg        HTTPConfig
	token      []byte
	hmacSecret []byte
	slots      chan struct{}
	bytes      atomic.Int64
	spoolSeq   atomic.Uint64
}

// Name implements runner.Source.
func (h *HTTP) Name() string { return h.SourceName }

// Ready implements runner.Readier.
func (h *HTTP) Ready() bool { return h.ready.Load() }

func (h *HTTP) logger() *slog.Logger {
	if h.Logger == nil {
		return slog.Default()
	}
	return h.Logger
}

// prepare reads the secrets and fills defaults, once, before serving.
func (h *HTTP) prepare() error {
	if h.prepared {
		return nil
	}
	if err := h.Config.Check(); err != nil {
		return err
	}
	h.cfg = h.Config.withDefaults()
	token, secret, err := h.cfg.secrets(h.Dir, h.LookupEnv)
	if err != nil {
		return err
	}
	h.token, h.hmacSecret = token, secret
	h.slots = make(chan struct{}, h.cfg.MaxConcurrent)
	h.prepared = true
	return nil
}

func (h *HTTP) refuse(w http.ResponseWriter, status int, reason, msg string) {
	if h.Metrics != nil {
		h.Metrics.Rejected.WithLabelValues(h.SourceName, reason).Inc()
	}
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	if status == http.StatusUnauthorized && h.token != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="eventfn"`)
	}
	http.Error(w, msg, status)
}

// crossOrigin reports whether a browser sent the request from another site.
func (h *HTTP) crossOrigin(req *http.Request) bool {
	if o := req.Header.Get("Origin"); o != "" {
		return !slices.Contains(h.cfg.AllowedOrigins, o)
	}
	switch req.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
		return false
	}
	return true
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

// Handler returns the HTTP handler that delivers pushed events. It panics
// when the settings cannot be used (Run reports that as an error first).
func (h *HTTP) Handler(ctx context.Context, deliver runner.Deliver) http.Handler {
	if err := h.prepare(); err != nil {
		panic(err)
	}
	limit := h.Limits.MaxBytes
	if limit <= 0 {
		limit = event.DefaultMaxBytes
	}
	mux := http.NewServeMux()
	path := h.Path
	if path == "" {
		path = "/events"
	}
	mux.HandleFunc("POST "+path, func(w http.ResponseWriter, req *http.Request) {
		if h.crossOrigin(req) {
			h.refuse(w, http.StatusForbidden, "cross_origin", "cross-origin requests are refused")
			return
		}
		if !isJSON(req.Header.Get("Content-Type")) {
			h.refuse(w, http.StatusUnsupportedMediaType, "content_type", "Content-Type must be application/json")
			return
		}
		if h.token != nil {
			got, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), h.token) != 1 {
				h.refuse(w, http.StatusUnauthorized, "unauthorized", "missing or wrong bearer token")
				return
			}
		}
		if req.ContentLength > int64(limit) {
			h.refuse(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("event larger than %d bytes", limit))
			return
		}
		select {
		case h.slots <- struct{}{}:
			defer func() { <-h.slots }()
		default:
			h.refuse(w, http.StatusTooManyRequests, "busy", "too many requests at once; retry later")
			return
		}
		hold := int64(limit)
		if req.ContentLength >= 0 {
			hold = req.ContentLength
		}
		if h.bytes.Add(hold) > h.cfg.MaxBytesInFlight {
			h.bytes.Add(-hold)
			h.refuse(w, http.StatusTooManyRequests, "busy", "too many bytes in flight; retry later")
			return
		}
		// The bytes stay counted until the event is settled, not only
		// while the request is read: events queued in the runner are held
		// in memory too.
		release := sync.OnceFunc(func() { h.bytes.Add(-hold) })
		handedOver := false
		defer func() {
			if !handedOver {
				release()
			}
		}()
		body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, int64(min(hold, int64(limit)))))
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			h.refuse(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("event larger than %d bytes", limit))
			return
		}
		if err != nil {
			h.refuse(w, http.StatusBadRequest, "read_error", "reading body: "+err.Error())
			return
		}
		if h.hmacSecret != nil && !validSignature(h.hmacSecret, body, req.Header.Get(h.cfg.HMACHeader)) {
			h.refuse(w, http.StatusUnauthorized, "bad_signature", "missing or wrong "+h.cfg.HMACHeader)
			return
		}
		ev, err := event.DecodeEnvelope(body, h.Limits)
		if err != nil {
			status := http.StatusBadRequest
			if errors.Is(err, event.ErrTooLarge) {
				status = http.StatusRequestEntityTooLarge
			}
			http.Error(w, err.Error(), status)
			return
		}
		m := &runner.Message{Source: h.SourceName, Destination: path, Event: ev, ID: ev.ID,
			Settler: noopSettler{}, Received: time.Now()}
		if h.cfg.Respond == RespondAfterPlan {
			handedOver = h.afterPlan(w, req, m, deliver, release)
			return
		}
		durable := false
		if h.SpoolDir != "" {
			s, err := h.spool(body)
			if err != nil {
				h.logger().Error("http source: cannot keep the event in the spool", "source", h.SourceName, "error", err)
				h.refuse(w, http.StatusServiceUnavailable, "spool_error", "cannot keep the event; retry later")
				return
			}
			m.Settler = s
			if m.ID == "" {
				m.ID = "http-spool:" + filepath.Base(s.path)
			}
			durable = true
		}
		m.Settler = &releasingSettler{Settler: m.Settler, release: release}
		err = deliver(req.Context(), m)
		handedOver = err == nil
		if err != nil {
			if !durable {
				h.refuse(w, http.StatusServiceUnavailable, "stopping", "runner is stopping")
				return
			}
			// Kept in the spool: it runs after the restart.
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, "{\"accepted\":true,\"durable\":%t}\n", durable)
	})
	return mux
}

// validSignature checks header "sha256=<hex>" against HMAC-SHA256(body).
func validSignature(secret, body []byte, header string) bool {
	hexSig, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

// waitSettler lets a request wait for its message's settlement.
type waitSettler struct{ done chan int }

func (s *waitSettler) settle(status int) {
	select {
	case s.done <- status:
	default:
	}
}

func (s *waitSettler) Ack(context.Context) error { s.settle(http.StatusOK); return nil }
func (s *waitSettler) Requeue(context.Context) error {
	s.settle(http.StatusServiceUnavailable)
	return nil
}
func (s *waitSettler) DeadLetter(context.Context, string) error {
	s.settle(http.StatusInternalServerError)
	return nil
}

// releasingSettler calls release once the message is settled, whatever
// its fate.
type releasingSettler struct {
	runner.Settler
	release func()
}

func (s *releasingSettler) Ack(ctx context.Context) error {
	defer s.release()
	return s.Settler.Ack(ctx)
}

func (s *releasingSettler) Requeue(ctx context.Context) error {
	defer s.release()
	return s.Settler.Requeue(ctx)
}

func (s *releasingSettler) DeadLetter(ctx context.Context, reason string) error {
	defer s.release()
	return s.Settler.DeadLetter(ctx, reason)
}

// afterPlan delivers m and answers once its plans are settled: 200 when
// they succeeded, 500 when one failed, 503 when the runner stopped first.
// It reports whether the runner took m (and with it the call of release).
func (h *HTTP) afterPlan(w http.ResponseWriter, req *http.Request, m *runner.Message, deliver runner.Deliver, release func()) bool {
	s := &waitSettler{done: make(chan int, 1)}
	m.Settler, m.DeadLetterOnFailure = &releasingSettler{Settler: s, release: release}, true
	if err := deliver(req.Context(), m); err != nil {
		h.refuse(w, http.StatusServiceUnavailable, "stopping", "runner is stopping")
		return false
	}
	select {
	case status := <-s.done:
		outcome := map[int]string{http.StatusOK: "success", http.StatusInternalServerError: "failed", http.StatusServiceUnavailable: "interrupted"}[status]
		if status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, "{\"outcome\":%q}\n", outcome)
	case <-req.Context().Done():
		// The client left; the plan goes on.
	}
	return true
}

// spoolSettler removes a spooled event once settled (a dead-lettered one is
// moved to the spool's dead/ directory); a requeued one stays for the next
// start.
type spoolSettler struct {
	path string
	log  *slog.Logger
}

func (s *spoolSettler) Ack(context.Context) error {
	err := os.Remove(s.path)
	if err != nil && !os.IsNotExist(err) {
		s.log.Error("http source: cannot remove a settled event from the spool", "file", s.path, "error", err)
	}
	return err
}

func (s *spoolSettler) Requeue(context.Context) error { return nil }

func (s *spoolSettler) DeadLetter(context.Context, string) error {
	dead := filepath.Join(filepath.Dir(s.path), "dead")
	if err := os.MkdirAll(dead, 0o700); err != nil {
		return err
	}
	return os.Rename(s.path, filepath.Join(dead, filepath.Base(s.path)))
}

// spool writes body to a new file of the spool and syncs it and the
// directory, so that it survives a crash once this returns.
func (h *HTTP) spool(body []byte) (*spoolSettler, error) {
	name := fmt.Sprintf("%020d-%06d.json", time.Now().UnixNano(), h.spoolSeq.Add(1)%1_000_000)
	tmp := filepath.Join(h.SpoolDir, "."+name+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	_, err = f.Write(body)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	final := filepath.Join(h.SpoolDir, name)
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err == nil {
		err = syncDir(h.SpoolDir)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return nil, err
	}
	return &spoolSettler{path: final, log: h.logger()}, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// replaySpool delivers the events a previous run accepted and did not
// settle, oldest first.
func (h *HTTP) replaySpool(ctx context.Context, deliver runner.Deliver) error {
	entries, err := os.ReadDir(h.SpoolDir)
	if err != nil {
		return err
	}
	n := 0
	for _, e := range entries { // ReadDir sorts by name: by time of acceptance
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		path := filepath.Join(h.SpoolDir, e.Name())
		s := &spoolSettler{path: path, log: h.logger()}
		body, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		ev, err := event.DecodeEnvelope(body, h.Limits)
		if err != nil {
			h.logger().Error("http source: unreadable event in the spool, moved to dead/", "file", path, "error", err)
			if err := s.DeadLetter(ctx, ""); err != nil {
				return err
			}
			continue
		}
		id := ev.ID
		if id == "" {
			id = "http-spool:" + e.Name()
		}
		if err := deliver(ctx, &runner.Message{Source: h.SourceName, Destination: h.Path, Event: ev, ID: id,
			Settler: s, Received: time.Now()}); err != nil {
			return err
		}
		n++
	}
	if n > 0 {
		h.logger().Info("http source: events accepted before the restart are running again", "source", h.SourceName, "count", n)
	}
	return nil
}

// limitListener bounds the connections open at once: Accept waits for a
// free slot.
type limitListener struct {
	net.Listener
	slots chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	l.slots <- struct{}{}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// addr is h.Addr with the loopback address for an empty host.
func (h *HTTP) addr() string {
	host, port, err := net.SplitHostPort(h.Addr)
	if err != nil || host != "" {
		return h.Addr
	}
	return net.JoinHostPort("127.0.0.1", port)
}

// Run implements runner.Source: it serves until ctx ends.
func (h *HTTP) Run(ctx context.Context, deliver runner.Deliver) error {
	if err := h.prepare(); err != nil {
		return fmt.Errorf("http source %s: %w", h.SourceName, err)
	}
	if h.SpoolDir != "" {
		if err := os.MkdirAll(h.SpoolDir, 0o700); err != nil {
			return fmt.Errorf("http source %s: spool: %w", h.SourceName, err)
		}
		if err := h.replaySpool(ctx, deliver); err != nil {
			return fmt.Errorf("http source %s: spool: %w", h.SourceName, err)
		}
	} else if h.cfg.Respond == RespondAccepted {
		h.logger().Warn("http source: no runner.state_dir, so 202 means accepted in memory: events not yet run when eventfn stops are lost (set runner.state_dir, or respond: after_plan)",
			"source", h.SourceName)
	}
	ln := h.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", h.addr()); err != nil {
			return fmt.Errorf("http source: %w", err)
		}
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() && h.token == nil && h.hmacSecret == nil {
		h.logger().Warn("http source: listening beyond the loopback address without authentication (set http.token_file or http.hmac_secret_file)",
			"source", h.SourceName, "addr", ln.Addr().String())
	}
	ln = &limitListener{Listener: ln, slots: make(chan struct{}, h.cfg.MaxConnections)}
	srv := &http.Server{Handler: h.Handler(ctx, deliver),
		ReadHeaderTimeout: h.cfg.ReadHeaderTimeout, ReadTimeout: h.cfg.ReadTimeout,
		WriteTimeout: h.cfg.WriteTimeout, IdleTimeout: h.cfg.IdleTimeout, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(h.logger().Handler(), slog.LevelDebug)}
	h.ready.Store(true)
	defer h.ready.Store(false)
	scheme := "http"
	if h.cfg.TLS.CertFile != "" {
		scheme = "https"
	}
	h.logger().Info("http source listening", "source", h.SourceName, "url", scheme+"://"+ln.Addr().String()+h.Path)
	errc := make(chan error, 1)
	go func() {
		if h.cfg.TLS.CertFile != "" {
			errc <- srv.ServeTLS(ln, h.file(h.cfg.TLS.CertFile), h.file(h.cfg.TLS.KeyFile))
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("http source %s: %w", h.SourceName, err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return nil
	}
}

func (h *HTTP) file(p string) string {
	if filepath.IsAbs(p) || h.Dir == "" {
		return p
	}
	return filepath.Join(h.Dir, p)
}
