package actions

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// argvRecorder writes an executable that appends its argv (NUL-separated,
// one command per line) to a log, and returns both paths.
func argvRecorder(t *testing.T) (bin, log string) {
	t.Helper()
	dir := t.TempDir()
	bin, log = filepath.Join(dir, "rec"), filepath.Join(dir, "argv.log")
	script := "#!/bin/sh\n{ printf '%s\\0' \"$0\" \"$@\"; echo; } >> '" + log + "'\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, log
}

func recorded(t *testing.T, log string) [][]string {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for line := range strings.SplitSeq(strings.TrimSuffix(string(b), "\n"), "\n") {
		out = append(out, strings.Split(strings.TrimSuffix(line, "\x00"), "\x00"))
	}
	return out
}

func previewArgv(t *testing.T, k Kind, req Request) [][]string {
	t.Helper()
	eff, err := k.Preview(req)
	if err != nil {
		t.Fatalf("preview: %v", err)
	}
	var out [][]string
	for _, c := range eff.Commands {
		out = append(out, c.Argv)
	}
	return out
}

// TestPreviewIsWhatRunDoes: for every kind, the effect Preview shows is the
// one Run has, on the same rendered parameters.
func TestPreviewIsWhatRunDoes(t *testing.T) {
	ctx := context.Background()
	t.Run("exec", func(t *testing.T) {
		bin, log := argvRecorder(t)
		req := Request{Params: map[string]any{"argv": []any{bin, "a b", "$(x)", 7}}}
		k := &Exec{}
		want := previewArgv(t, k, req)
		if _, err := k.Run(ctx, req); err != nil {
			t.Fatal(err)
		}
		if got := recorded(t, log); !reflect.DeepEqual(got, want) {
			t.Errorf("ran %q, preview %q", got, want)
		}
	})
	t.Run("script", func(t *testing.T) {
		bin, log := argvRecorder(t)
		req := Request{Params: map[string]any{"path": bin, "args": []any{"x", "y z"}}, Type: "order", Rule: "r", EventJSON: []byte(`{"type":"order"}`)}
		k := &Script{}
		want := previewArgv(t, k, req)
		if _, err := k.Run(ctx, req); err != nil {
			t.Fatal(err)
		}
		if got := recorded(t, log); !reflect.DeepEqual(got, want) {
			t.Errorf("ran %q, preview %q", got, want)
		}
		eff, _ := k.Preview(req)
		if eff.Commands[0].Env["EVENTFN_RULE"] != "r" || eff.Commands[0].Stdin != `{"type":"order"}` {
			t.Errorf("preview env/stdin: %+v", eff.Commands[0])
		}
	})
	t.Run("slurm", func(t *testing.T) {
		bin, log := argvRecorder(t)
		// Creating forms read their effect back: the recorder answers as
		// slurmdbd would once a1 exists under root.
		answer := "case \"$*\" in *\" show assoc \"*) printf 'Account|User|ParentName\\na1||root\\n';; esac\n"
		if err := os.WriteFile(bin, append(must(os.ReadFile(bin)), answer...), 0o755); err != nil {
			t.Fatal(err)
		}
		k, _ := Standard(Options{Slurm: SlurmConfig{Sacctmgr: bin, Cluster: "c1"}}).Get("slurm")
		for _, params := range []map[string]any{
			{"add_account": map[string]any{"name": "a1", "parent": "root"}},
			{"args": []any{"modify", "account", "a1", "set", "fairshare=2"}},
		} {
			os.Remove(log)
			req := Request{Params: params}
			want := previewArgv(t, k, req)
			if _, err := k.Run(ctx, req); err != nil {
				t.Fatal(err)
			}
			got := recorded(t, log)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("ran %q, preview %q", got, want)
			}
			if !strings.Contains(strings.Join(want[0], " "), "--immediate") || !strings.Contains(strings.Join(want[0], " "), "cluster=c1") {
				t.Errorf("preview lacks the options run adds: %q", want)
			}
		}
	})
	t.Run("webhook", func(t *testing.T) {
		type seen struct {
			method, url, ctype, sig, auth, body string
		}
		got := make(chan seen, 1)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			got <- seen{r.Method, "http://" + r.Host + r.URL.RequestURI(), r.Header.Get("Content-Type"), r.Header.Get(SignatureHeader), r.Header.Get("Authorization"), string(b)}
		}))
		defer srv.Close()
		key := filepath.Join(t.TempDir(), "key")
		if err := os.WriteFile(key, []byte("k"), 0o600); err != nil {
			t.Fatal(err)
		}
		req := Request{Params: map[string]any{"url": srv.URL + "/hook?x=1", "method": "put",
			"headers": map[string]any{"Authorization": "Bearer tok"}, "body": map[string]any{"a": 1}, "hmac_secret_file": key}}
		k := NewWebhook()
		eff, err := k.Preview(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := k.Run(ctx, req); err != nil {
			t.Fatal(err)
		}
		s := <-got
		p := eff.Requests[0]
		if p.Method != s.method || p.URL != s.url || p.Body != s.body || p.Headers["Content-Type"] != s.ctype {
			t.Errorf("sent %+v, preview %+v", s, p)
		}
		if p.Headers["Authorization"] != "Bearer ***" || p.Headers[SignatureHeader] != "sha256=***" || !strings.HasPrefix(s.sig, "sha256=") || s.auth != "Bearer tok" {
			t.Errorf("secrets: sent %+v, preview %+v", s, p.Headers)
		}
	})
	t.Run("waldur", func(t *testing.T) {
		rec := &recordingWaldur{}
		k := waldurKind{Waldur: &Waldur{Client: rec}, apiURL: "https://waldur.example/api/"}
		req := Request{Params: map[string]any{"query": map[string]any{"state": []any{"OK", "Erred"}},
			"batch": []any{map[string]any{"path": "marketplace-orders/o1/"}, map[string]any{"path": "x/y/", "body": map[string]any{"a": "b"}}}}}
		eff, err := k.Preview(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := k.Run(ctx, req); err != nil {
			t.Fatal(err)
		}
		if len(eff.Requests) != len(rec.calls) {
			t.Fatalf("sent %v, preview %v", rec.calls, eff.Requests)
		}
		for i, c := range rec.calls {
			p := eff.Requests[i]
			if p.Method != c.method || p.URL != c.url || p.Body != c.body || p.Headers["Authorization"] != "Token ***" {
				t.Errorf("request %d: sent %+v, preview %+v", i, c, p)
			}
		}
	})
	t.Run("log", func(t *testing.T) {
		var buf bytes.Buffer
		k := &Log{Logger: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
		req := Request{Params: map[string]any{"message": "hello", "level": "WARNING", "fields": map[string]any{"n": 1}}}
		eff, err := k.Preview(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := k.Run(ctx, req); err != nil {
			t.Fatal(err)
		}
		var line map[string]any
		if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
			t.Fatal(err)
		}
		if line["msg"] != eff.Log.Message || !strings.EqualFold(line["level"].(string), eff.Log.Level) || line["n"] != float64(1) {
			t.Errorf("logged %v, preview %+v", line, eff.Log)
		}
	})
}

type waldurCall struct{ method, url, body string }

type recordingWaldur struct{ calls []waldurCall }

func (r *recordingWaldur) Call(_ context.Context, method, path string, query url.Values, body any) (int, any, error) {
	u := "https://waldur.example/api/" + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	b := ""
	if body != nil {
		js, _ := json.Marshal(body)
		b = string(js)
	}
	r.calls = append(r.calls, waldurCall{method, u, b})
	return 200, map[string]any{}, nil
}

// TestPreviewRefusesWhatRunRefuses: a refusal of Run is Preview's too, and
// both are permanent.
func TestPreviewRefusesWhatRunRefuses(t *testing.T) {
	reg := Builtin()
	for _, c := range []struct {
		kind   string
		params map[string]any
	}{
		{"exec", map[string]any{"argv": []any{}}},
		{"script", map[string]any{"path": ""}},
		{"webhook", map[string]any{"url": "http://x", "method": "PSOT"}},
		{"webhook", map[string]any{"url": "ftp://x"}},
		{"log", map[string]any{"message": "m", "level": "loud"}},
		{"waldur", map[string]any{"path": "../users/"}},
		{"waldur", map[string]any{"path": "x/", "batch": []any{}}},
		{"slurm", map[string]any{"add_account": map[string]any{"name": "-x"}}},
		{"slurm", map[string]any{"args": []any{"add", "account", "-x"}}},
	} {
		k, _ := reg.Get(c.kind)
		req := Request{Params: c.params}
		_, perr := k.Preview(req)
		_, rerr := k.Run(context.Background(), req)
		if perr == nil || rerr == nil || Retryable(perr) || Retryable(rerr) {
			t.Errorf("%s %v: preview %v, run %v: want both refused, permanently", c.kind, c.params, perr, rerr)
		}
	}
}

// TestAttributesDescribeTheRequest: spans and logs get the command line or
// method and URL from the kind.
func TestAttributesDescribeTheRequest(t *testing.T) {
	reg := Builtin()
	for _, c := range []struct {
		kind   string
		params map[string]any
		res    Result
		want   map[string]any
	}{
		{"exec", map[string]any{"argv": []any{"echo", "a b"}}, Result{"exit_code": 0}, map[string]any{"process.command_line": `echo "a b"`, "process.exit.code": int64(0)}},
		{"webhook", map[string]any{"url": "http://h/x"}, Result{"status": 201}, map[string]any{"http.request.method": "POST", "url.full": "http://h/x", "http.response.status_code": int64(201)}},
		{"waldur", map[string]any{"path": "x/", "body": map[string]any{}}, nil, map[string]any{"http.request.method": "POST", "url.path": "x/"}},
		{"slurm", map[string]any{"args": []any{"show", "assoc"}}, nil, map[string]any{"process.command_line": "sacctmgr --parsable2 --immediate show assoc"}},
	} {
		k, _ := reg.Get(c.kind)
		got := map[string]any{}
		for _, a := range k.Attributes(Request{Params: c.params}, c.res) {
			got[string(a.Key)] = a.Value.AsInterface()
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %v, want %v", c.kind, got, c.want)
		}
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
