package actions

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
)

// Emitted is a derived event an emit step feeds back into the runner.
type Emitted struct {
	// Type is the new event's type.
	Type string
	// Payload is its payload.
	Payload map[string]any
	// Key tells the event apart from the other events its parent emits;
	// with the parent's id it makes the new event's id.
	Key string
}

// EmitFunc accepts an emitted event: it returns once the runner has taken
// it (queued it for matching and execution), with the id it gave it.
type EmitFunc func(ctx context.Context, e Emitted) (id string, err error)

type emitKey struct{}

// WithEmitter returns ctx carrying the function emit steps run through.
// The runner sets it around every plan.
func WithEmitter(ctx context.Context, f EmitFunc) context.Context {
	return context.WithValue(ctx, emitKey{}, f)
}

// ErrNoEmitter is the error of an emit step run without a runner to take
// the event.
var ErrNoEmitter = errors.New("emit: no runner to take the event (emit steps run under eventfn run)")

// maxEmitType bounds an emitted type: it labels metrics.
const maxEmitType = 64

// Emit feeds a derived event back into the runner, through the same rules,
// journal and metrics as a delivered one. Result: id, type.
type Emit struct{}

// Run implements Action.
func (Emit) Run(ctx context.Context, req Request) (Result, error) {
	var p struct {
		Type    string         `json:"type"`
		Payload map[string]any `json:"payload"`
		Key     string         `json:"key"`
	}
	if err := decode(req.Params, &p); err != nil {
		return nil, err
	}
	if !validType(p.Type) {
		return nil, Permanent(fmt.Errorf("emit: type %q: want 1 to %d letters, digits, _ or -", p.Type, maxEmitType))
	}
	if p.Payload == nil {
		p.Payload = map[string]any{}
	}
	if p.Key == "" { // the content names it: the same event emitted twice is one
		b, err := json.Marshal(map[string]any{"type": p.Type, "payload": p.Payload})
		if err != nil {
			return nil, Permanent(fmt.Errorf("emit: payload: %w", err))
		}
		sum := sha256.Sum256(b)
		p.Key = hex.EncodeToString(sum[:8])
	}
	f, _ := ctx.Value(emitKey{}).(EmitFunc)
	if f == nil {
		return nil, Permanent(ErrNoEmitter)
	}
	id, err := f(ctx, Emitted{Type: p.Type, Payload: p.Payload, Key: p.Key})
	if err != nil {
		return nil, err
	}
	return Result{"id": id, "type": p.Type}, nil
}

func validType(t string) bool {
	if t == "" || len(t) > maxEmitType {
		return false
	}
	for _, c := range t {
		if !(c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
