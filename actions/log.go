package actions

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// logParams are the parameters of a log step.
type logParams struct {
	Message string         `json:"message"`
	Level   string         `json:"level"`
	Fields  map[string]any `json:"fields"`
}

// Log writes a message through slog.
type Log struct{ Logger *slog.Logger }

// Run implements Action.
func (l *Log) Run(ctx context.Context, req Request) (Result, error) {
	var p logParams
	if err := decode(req.Params, &p); err != nil {
		return nil, err
	}
	var lvl slog.Level
	switch strings.ToLower(p.Level) {
	case "", "info":
		lvl = slog.LevelInfo
	case "debug":
		lvl = slog.LevelDebug
	case "warn", "warning":
		lvl = slog.LevelWarn
	case "error":
		lvl = slog.LevelError
	default:
		return nil, Permanent(fmt.Errorf("log: level %q: want debug, info, warn or error", p.Level))
	}
	// A level the logger drops (a debug step under an info logger) costs
	// no attributes.
	if l.Logger.Enabled(ctx, lvl) {
		attrs := make([]slog.Attr, 0, 2+len(p.Fields))
		attrs = append(attrs, slog.String("rule", req.Rule), slog.String("type", req.Type))
		for k, v := range p.Fields {
			attrs = append(attrs, slog.Any(k, v))
		}
		l.Logger.LogAttrs(ctx, lvl, p.Message, attrs...)
	}
	return Result{"message": p.Message}, nil
}
