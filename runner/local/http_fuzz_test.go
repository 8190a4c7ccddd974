package local

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/eventfn/eventfn/event"
	"github.com/eventfn/eventfn/runner"
)

// FuzzHTTPHandler: any body, content type, origin, token and signature get
// one of the defined answers, and an event is delivered only with the right
// token and signature, as JSON, from no foreign origin.
func FuzzHTTPHandler(f *testing.F) {
	f.Add(`{"type": "order"}`, "application/json", "", "Bearer t0ken", "sha256=")
	f.Add(`{"type": "order"}`, "text/plain", "http://evil", "Bearer nope", "")
	f.Add(`{broken`, "application/json; charset=utf-8", "", "", "sha256=zz")
	f.Add(strings.Repeat("[", 100), "application/cloudevents+json", "https://ok.example", "Bearer t0ken", "x")
	f.Fuzz(func(t *testing.T, body, ctype, origin, auth, sig string) {
		delivered := 0
		h := &HTTP{SourceName: "fuzz", Limits: event.Limits{MaxBytes: 4096},
			Config:    HTTPConfig{TokenEnv: "T", HMACSecretEnv: "S", AllowedOrigins: []string{"https://ok.example"}},
			LookupEnv: func(k string) (string, bool) { return map[string]string{"T": "t0ken", "S": "s3cret"}[k], true }}
		handler := h.Handler(context.Background(), func(_ context.Context, m *runner.Message) error {
			delivered++
			return nil
		})
		req := httptest.NewRequest("POST", "/events", strings.NewReader(body))
		for k, v := range map[string]string{"Content-Type": ctype, "Origin": origin, "Authorization": auth, DefaultHMACHeader: sig} {
			if v != "" && !strings.ContainsAny(v, "\r\n") {
				req.Header.Set(k, v)
			}
		}
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusAccepted:
			if delivered != 1 {
				t.Fatalf("202 with %d deliveries", delivered)
			}
			if req.Header.Get("Authorization") != "Bearer t0ken" || !validSignature([]byte("s3cret"), []byte(body), req.Header.Get(DefaultHMACHeader)) ||
				!isJSON(req.Header.Get("Content-Type")) || (req.Header.Get("Origin") != "" && req.Header.Get("Origin") != "https://ok.example") {
				t.Fatalf("accepted a request it must refuse: %v", req.Header)
			}
		case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusRequestEntityTooLarge,
			http.StatusUnsupportedMediaType, http.StatusTooManyRequests:
			if delivered != 0 {
				t.Fatalf("status %d with a delivery", rec.Code)
			}
		default:
			t.Fatalf("undefined status %d", rec.Code)
		}
	})
}
