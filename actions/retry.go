package actions

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sethvargo/go-retry"

	"github.com/eventfn/eventfn/spec"
)

// RetryPolicy says how often and how far apart a failing step is retried.
// It is defined in package spec, which the rules loader shares.
type RetryPolicy = spec.Retry

// backoff returns the policy's schedule of delays.
func backoff(p RetryPolicy) retry.Backoff {
	initial := p.Initial
	if initial <= 0 {
		initial = time.Second
	}
	var b retry.Backoff
	switch p.Backoff {
	case "constant":
		b = retry.NewConstant(initial)
	case "fibonacci":
		b = retry.NewFibonacci(initial)
	default:
		b = retry.NewExponential(initial)
	}
	if p.Jitter > 0 {
		b = retry.WithJitterPercent(uint64(p.Jitter*100), b)
	}
	if p.Max > 0 {
		b = retry.WithCappedDuration(p.Max, b)
	}
	attempts := p.Attempts
	if attempts < 1 {
		attempts = 1
	}
	return retry.WithMaxRetries(uint64(attempts-1), b)
}

// Attempt describes one try of a step, handed to the OnAttempt hook.
type Attempt struct {
	// Number counts from 1.
	Number int
	// Err is the attempt's error, nil on success.
	Err error
	// Duration is how long the attempt ran.
	Duration time.Duration
}

// Do runs fn under the policy: each attempt gets its own timeout (when
// timeout > 0); a failure is retried while Retryable(err) holds and attempts
// remain. onAttempt, when not nil, is told of every attempt.
//
// The first attempt runs fn directly, without the retry loop and its
// backoff schedule (made only when a retry is due), and a step without a
// timeout runs fn in ctx itself, without a context and timer of its own.
func Do(ctx context.Context, p RetryPolicy, timeout time.Duration, fn func(ctx context.Context, attempt int) (Result, error), onAttempt func(Attempt)) (Result, error) {
	var res Result
	n := 0
	attempt := func(ctx context.Context) error {
		n++
		actx, cancel := ctx, context.CancelFunc(nil)
		if timeout > 0 {
			actx, cancel = context.WithTimeout(ctx, timeout)
		}
		start := time.Now()
		r, err := fn(actx, n)
		if cancel != nil {
			timedOut := actx.Err() == context.DeadlineExceeded && ctx.Err() == nil
			cancel()
			if err != nil && timedOut {
				err = &TimeoutError{After: timeout, Err: err}
			}
		}
		if onAttempt != nil {
			onAttempt(Attempt{Number: n, Err: err, Duration: time.Since(start)})
		}
		res = r
		return err
	}
	// The first attempt runs before any retry machinery is made: most
	// steps succeed at once, and the backoff schedule (a few allocations)
	// is built only when a retry is due. This is what retry.Do does: stop
	// once ctx has ended, else try; on a retryable failure take the next
	// delay, wait it out (or ctx), try again.
	if err := context.Cause(ctx); err != nil {
		return res, err
	}
	err := attempt(ctx)
	if err == nil || p.Attempts <= 1 || !Retryable(err) || ctx.Err() != nil {
		return res, err
	}
	b := backoff(p)
	next, stop := b.Next()
	if stop {
		return res, err
	}
	t := time.NewTimer(next)
	select {
	case <-ctx.Done():
		t.Stop()
	case <-t.C:
	}
	err = retry.Do(ctx, b, func(ctx context.Context) error {
		err := attempt(ctx)
		if err != nil && Retryable(err) && ctx.Err() == nil {
			return retry.RetryableError(err)
		}
		return err
	})
	return res, err
}

// TimeoutError is returned when an attempt ran past its step's timeout.
// Timeouts are retryable.
type TimeoutError struct {
	After time.Duration
	Err   error
}

func (e *TimeoutError) Error() string { return fmt.Sprintf("timed out after %s: %v", e.After, e.Err) }
func (e *TimeoutError) Unwrap() error { return e.Err }

// Retryable reports whether err is worth another attempt. Errors are
// retryable unless marked permanent (see Permanent) or caused by the caller's
// context ending.
func Retryable(err error) bool {
	if err == nil {
		return false
	}
	var te *TimeoutError
	if errors.As(err, &te) {
		return true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pe *permanentError
	return !errors.As(err, &pe)
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying (a 4xx answer, a fatal exit code,
// a refused argument).
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}
