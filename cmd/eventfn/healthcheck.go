package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// defaultHealthURL is where `eventfn run --listen :9090` (the container's
// command) answers; the Dockerfile's HEALTHCHECK relies on it.
const defaultHealthURL = "http://127.0.0.1:9090/readyz"

const healthcheckUsage = `usage: eventfn healthcheck [--url URL] [--timeout D]

Asks a running eventfn whether it is ready (GET /readyz: rules loaded and
every source connected) and exits 0 when it answers 2xx, 1 otherwise. It
needs no shell or curl, so a distroless container can use it as its
HEALTHCHECK. Use --url .../healthz to ask only whether the process is alive.
The URL defaults to $EVENTFN_HEALTHCHECK_URL, else ` + defaultHealthURL + `.

examples:
  eventfn healthcheck
  eventfn healthcheck --url http://127.0.0.1:8081/healthz
`

func cmdHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("healthcheck", healthcheckUsage, stderr)
	def := defaultHealthURL
	if v := os.Getenv("EVENTFN_HEALTHCHECK_URL"); v != "" {
		def = v
	}
	url := fs.String("url", def, "URL to GET")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	pos, code := parseFlags(fs, args)
	if code >= 0 {
		return code
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "eventfn healthcheck: unexpected argument %q\n", pos[0])
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		fmt.Fprintln(stderr, "eventfn healthcheck:", err)
		return 2
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "eventfn healthcheck: not healthy:", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		fmt.Fprintf(stderr, "eventfn healthcheck: not healthy: %s answered %s: %s\n", *url, resp.Status, strings.TrimSpace(string(body)))
		return 1
	}
	fmt.Fprintf(stdout, "%s: %s\n", *url, strings.TrimSpace(string(body)))
	return 0
}
