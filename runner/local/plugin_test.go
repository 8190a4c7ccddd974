package local

import (
	"strings"
	"testing"

	"github.com/eventfn/eventfn/source"
)

func entry(k source.Kind, url string, settings any) *source.Entry {
	return &source.Entry{Name: "s", URL: url, Kind: k, Settings: settings}
}

func TestFileKind(t *testing.T) {
	k := FileKind()
	for url, want := range map[string]string{"file:events.jsonl": "/rules/events.jsonl", "file:///abs/e.json": "/abs/e.json", "file:-": "-"} {
		src, err := k.Build(entry(k, url, &FileSettings{Follow: true}), source.Deps{Dir: "/rules"})
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		if f := src.(*File); f.Path != want || !f.Follow {
			t.Errorf("%s: path %q follow %v, want %q", url, f.Path, f.Follow, want)
		}
	}
	for _, tc := range []struct {
		url  string
		s    FileSettings
		want string
	}{
		{"file:", FileSettings{}, "needs a path"},
		{"file:x", FileSettings{Format: "payload"}, `format "payload"`},
		{"file:x", FileSettings{OnFailure: "drop"}, `on_failure "drop"`},
	} {
		errs := k.Check(entry(k, tc.url, &tc.s))
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.want) {
			t.Errorf("%s %+v: %v, want %q", tc.url, tc.s, errs, tc.want)
		}
	}
}

func TestHTTPKind(t *testing.T) {
	k := HTTPKind()
	for url, want := range map[string][2]string{
		"http://127.0.0.1:8080/events": {"127.0.0.1:8080", "/events"},
		"http://127.0.0.1:8080":        {"127.0.0.1:8080", "/events"},
		"http://:9000/hook/waldur":     {":9000", "/hook/waldur"},
	} {
		src, err := k.Build(entry(k, url, &HTTPSettings{}), source.Deps{})
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		if h := src.(*HTTP); h.Addr != want[0] || h.Path != want[1] {
			t.Errorf("%s: addr %q path %q", url, h.Addr, h.Path)
		}
	}
	for url, want := range map[string]string{"http:x": "want http://ADDR", "http:///events": "missing the address"} {
		if errs := k.Check(entry(k, url, &HTTPSettings{})); len(errs) != 1 || !strings.Contains(errs[0].Error(), want) {
			t.Errorf("%s: %v, want %q", url, errs, want)
		}
	}
}
