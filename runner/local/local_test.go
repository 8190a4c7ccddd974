package local

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/eventfn/eventfn/event"
	"github.com/eventfn/eventfn/runner"
)

func collect(t *testing.T, f *File) []*runner.Message {
	t.Helper()
	var mu sync.Mutex
	var got []*runner.Message
	err := f.Run(context.Background(), func(_ context.Context, m *runner.Message) error {
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestFileReadsObjectArrayAndLines(t *testing.T) {
	for name, in := range map[string]string{
		"object": `{"type": "a", "payload": {"x": 1}}`,
		"array":  `[{"type": "a"}, {"type": "b"}]`,
		"lines":  "{\"type\": \"a\"}\n\n{\"type\": \"b\"}\n{\"type\": \"c\"}\n",
	} {
		got := collect(t, &File{SourceName: "f", Path: "-", Stdin: strings.NewReader(in)})
		want := map[string]int{"object": 1, "array": 2, "lines": 3}[name]
		if len(got) != want {
			t.Errorf("%s: %d messages, want %d", name, len(got), want)
		}
		for _, m := range got {
			if _, err := event.DecodeEnvelope(m.Body, event.Limits{}); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
}

func TestHTTPStatuses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &HTTP{SourceName: "push", Listener: ln, Limits: event.Limits{MaxBytes: 100}}
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan *runner.Message, 1)
	done := make(chan error)
	go func() {
		done <- h.Run(ctx, func(_ context.Context, m *runner.Message) error { got <- m; return nil })
	}()
	url := "http://" + ln.Addr().String() + "/events"
	for body, want := range map[string]int{
		`{"type": "order", "payload": {"a": 1}}`: 202,
		`{"payload": {}}`:                        400,
		`{broken`:                                400,
		`{"type": "x", "payload": {"pad": "` + strings.Repeat("x", 200) + `"}}`: 413,
	} {
		resp, err := http.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%.30s: status %d, want %d", body, resp.StatusCode, want)
		}
	}
	m := <-got
	if m.Event.Type != "order" || m.Event.Payload["a"] != 1 {
		t.Errorf("event = %+v", m.Event)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
