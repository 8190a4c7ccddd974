// Package local holds the sources that need no broker: a file of events
// (or stdin) and an HTTP endpoint that accepts pushed events.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
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

// HTTP accepts events pushed as envelopes with POST to Path: 202 when
// accepted, 400 with the reason for bad JSON or a missing type, 413 over
// the size limit.
type HTTP struct {
	SourceName string
	Addr       string
	Path       string
	Limits     event.Limits
	Logger     *slog.Logger
	// Listener, when set, is used instead of listening on Addr (tests).
	Listener net.Listener

	ready atomic.Bool
}

// Name implements runner.Source.
func (h *HTTP) Name() string { return h.SourceName }

// Ready implements runner.Readier.
func (h *HTTP) Ready() bool { return h.ready.Load() }

// Handler returns the HTTP handler that delivers pushed events.
func (h *HTTP) Handler(ctx context.Context, deliver runner.Deliver) http.Handler {
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
		body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, int64(limit)))
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, fmt.Sprintf("event larger than %d bytes", limit), http.StatusRequestEntityTooLarge)
			return
		}
		if err != nil {
			http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
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
		if err := deliver(req.Context(), m); err != nil {
			http.Error(w, "runner is stopping", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintln(w, `{"accepted":true}`)
	})
	return mux
}

// Run implements runner.Source: it serves until ctx ends.
func (h *HTTP) Run(ctx context.Context, deliver runner.Deliver) error {
	ln := h.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", h.Addr); err != nil {
			return fmt.Errorf("http source: %w", err)
		}
	}
	srv := &http.Server{Handler: h.Handler(ctx, deliver), ReadHeaderTimeout: 10 * time.Second}
	h.ready.Store(true)
	defer h.ready.Store(false)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return nil
	}
}
