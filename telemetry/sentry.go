package telemetry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/getsentry/sentry-go"
	"go.opentelemetry.io/otel/trace"
)

// Failure describes a plan that failed for good (its on_failure steps ran).
type Failure struct {
	// Source, Type and MessageID identify the message.
	Source, Type, MessageID string
	// Rule and Key identify the plan.
	Rule, Key string
	// Err is why the plan failed.
	Err error
}

// Reporter is told of every plan that failed for good. Report must not
// block for long: it runs on the worker that ran the plan.
type Reporter interface {
	Report(ctx context.Context, f Failure)
}

// SentryOptions configure NewSentry.
type SentryOptions struct {
	// DSN is the Sentry project's DSN (required).
	DSN string
	// Release is reported as the release (eventfn@VERSION).
	Release string
	// Environment is reported as the environment (default
	// $SENTRY_ENVIRONMENT).
	Environment string
	// Redactor masks secrets in everything sent.
	Redactor *Redactor
	// Transport replaces Sentry's HTTP transport (tests).
	Transport sentry.Transport
}

// Sentry reports failed plans to Sentry, one event per failure, grouped by
// rule. Every text sent passes through the Redactor, once when the event is
// built and again just before it is sent.
type Sentry struct {
	client *sentry.Client
	red    *Redactor
}

// NewSentry returns a reporter sending to the DSN's project. It holds its
// own client: nothing is installed globally.
func NewSentry(opts SentryOptions) (*Sentry, error) {
	if opts.DSN == "" {
		return nil, errors.New("sentry: empty DSN")
	}
	s := &Sentry{red: opts.Redactor}
	client, err := sentry.NewClient(sentry.ClientOptions{
		Dsn:              opts.DSN,
		Release:          opts.Release,
		Environment:      opts.Environment,
		SendDefaultPII:   false,
		AttachStacktrace: false,
		Transport:        opts.Transport,
		BeforeSend: func(ev *sentry.Event, _ *sentry.EventHint) *sentry.Event {
			s.scrub(ev)
			return ev
		},
	})
	if err != nil {
		return nil, fmt.Errorf("sentry: %w", err)
	}
	s.client = client
	return s, nil
}

// Report implements Reporter.
func (s *Sentry) Report(ctx context.Context, f Failure) {
	msg := s.red.Error(f.Err)
	ev := sentry.NewEvent()
	ev.Level = sentry.LevelError
	ev.Logger = "eventfn"
	ev.Message = fmt.Sprintf("rule %s failed: %s", f.Rule, msg)
	ev.Exception = []sentry.Exception{{Type: "rule " + f.Rule + " failed", Value: msg, Module: "eventfn"}}
	ev.Fingerprint = []string{"eventfn-plan-failed", f.Rule}
	ev.Tags = map[string]string{"rule": f.Rule, "event_type": f.Type, "source": f.Source}
	ev.Contexts["eventfn"] = sentry.Context{"message_id": f.MessageID, "key": f.Key, "rule": f.Rule,
		"event_type": f.Type, "source": f.Source, "error": msg}
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		ev.Tags["trace_id"] = sc.TraceID().String()
		ev.Contexts["trace"] = sentry.Context{"trace_id": sc.TraceID().String(), "span_id": sc.SpanID().String()}
	}
	s.client.CaptureEvent(ev, nil, nil)
}

// Flush waits up to timeout for the events not yet sent; it reports
// whether all went.
func (s *Sentry) Flush(timeout time.Duration) bool { return s.client.Flush(timeout) }

// Close flushes for up to timeout, then releases the client.
func (s *Sentry) Close(timeout time.Duration) {
	s.client.Flush(timeout)
	s.client.Close()
}

// scrub masks secrets in every free-text field of an event.
func (s *Sentry) scrub(ev *sentry.Event) {
	r := s.red
	ev.Message = r.String(ev.Message)
	for i := range ev.Exception {
		ev.Exception[i].Value = r.String(ev.Exception[i].Value)
		ev.Exception[i].Type = r.String(ev.Exception[i].Type)
	}
	for k, v := range ev.Tags {
		ev.Tags[k] = r.String(v)
	}
	for _, c := range ev.Contexts {
		for k, v := range c {
			if str, ok := v.(string); ok {
				c[k] = r.String(str)
			}
		}
	}
	for _, b := range ev.Breadcrumbs {
		b.Message = r.String(b.Message)
		for k, v := range b.Data {
			if str, ok := v.(string); ok {
				b.Data[k] = r.String(str)
			}
		}
	}
	if ev.Request != nil {
		ev.Request.URL = r.URL(ev.Request.URL)
		ev.Request.QueryString = ""
		ev.Request.Cookies = ""
		ev.Request.Headers = nil
		ev.Request.Data = r.String(ev.Request.Data)
	}
}
