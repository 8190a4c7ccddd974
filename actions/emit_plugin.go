package actions

import (
	"fmt"

	"go.opentelemetry.io/otel/attribute"

	"github.com/eventfn/eventfn/spec"
)

// emitParams are an emit step's parameters.
type emitParams struct {
	Type    string         `json:"type"`
	Payload map[string]any `json:"payload"`
	Key     string         `json:"key"`
}

// Definition implements Kind.
func (Emit) Definition() spec.Definition {
	return spec.Definition{
		Kind: "emit",
		Doc: "Feeds a derived event back into the runner: matched against the same rules, de-duplicated by the same journal, " +
			"counted in the same metrics, under the source emit. Chains stop at 8 emits deep.",
		Params: []spec.Param{
			{Name: "type", Type: spec.String, Required: true, Doc: "The new event's type (letters, digits, _ and -).", Example: "order"},
			{Name: "payload", Type: spec.Mapping, Doc: "The new event's payload.", Example: `{order_uuid: "{{ item.uuid }}"}`},
			{Name: "key", Type: spec.String, Doc: "Tells the events one parent emits apart; with the parent's id it makes the new id (default: a hash of type and payload).", Example: `"{{ item.uuid }}"`},
		},
		Result: []spec.Field{
			{Name: "id", Type: spec.String, Doc: "The emitted event's id."},
			{Name: "type", Type: spec.String, Doc: "Its type."},
		},
		Example: `{emit: {type: order, payload: {order_uuid: "{{ payload.order_uuid }}"}}}`,
	}
}

// Check implements Kind: a literal type must be one emit accepts.
func (Emit) Check(params map[string]any) []error {
	lit, _ := literal(params)
	var p emitParams
	if err := decode(lit, &p); err != nil {
		return []error{err}
	}
	if t, ok := lit["type"].(string); ok && !validType(t) {
		return []error{&spec.Error{Path: "type", Msg: fmt.Sprintf("type %q: want 1 to %d letters, digits, _ or -", t, maxEmitType)}}
	}
	return nil
}

// Preview implements Kind: the event that would be emitted.
func (Emit) Preview(req Request) (Effect, error) {
	var p emitParams
	if err := decode(req.Params, &p); err != nil {
		return Effect{}, err
	}
	if !validType(p.Type) {
		return Effect{}, Permanent(fmt.Errorf("emit: type %q: want 1 to %d letters, digits, _ or -", p.Type, maxEmitType))
	}
	return Effect{Emit: &EmitPreview{Type: p.Type, Payload: p.Payload, Key: p.Key}}, nil
}

// Attributes implements Kind: the emitted type and id.
func (Emit) Attributes(_ Request, res Result) []attribute.KeyValue {
	var out []attribute.KeyValue
	if t, ok := res["type"].(string); ok {
		out = append(out, attribute.String("eventfn.emit.type", t))
	}
	if id, ok := res["id"].(string); ok {
		out = append(out, attribute.String("eventfn.emit.id", id))
	}
	return out
}
