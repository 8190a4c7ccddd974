package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/eventfn/eventfn/bench"
	"github.com/eventfn/eventfn/internal/creds"
)

const benchUsage = `usage: eventfn bench [--to URL] [--count N | --rate R --duration D] [-c FILE]
                     [--prefetch P] [--concurrency C] [--rounds K] [--payload-bytes B]
                     [--state-dir DIR] [--peer [--peer-ack auto|client-individual]]
                     [--output text|json]

Measures eventfn against a broker. It publishes Waldur-shaped order events to
a queue of its own (a virtual host made through RabbitMQ's management API and
deleted at the end), runs eventfn's real pipeline on them (the source, the
runner, the rules of -c, default an embedded file with a debug log step per
Waldur type, and the real actions), and in the same invocation a bare
go-stomp (or paho) consumer with the same transport, ack mode and prefetch on
an identically filled queue. Each consumer runs in a process of its own
(this executable, re-run), so CPU seconds and peak RSS are its own.

--count N (drain mode) pre-fills N messages, then drains them: throughput in
msg/s and eventfn's as a ratio of the bare consumer's. --rate R --duration D
(rate mode) starts the consumer, then publishes R msg/s for D: latency
percentiles from the publish time (header x-eventfn-published-at) to the
start of the first action. Both report CPU seconds, RSS when ready and at its
peak, and the start-up time to ready.

The login and the passcode (from --passcode-file or --passcode-env; "guest"
when neither is given) also log in to the management API.

examples:
  eventfn bench                                              # 10,000 messages over Web-STOMP on loopback
  eventfn bench --to stomp://127.0.0.1:61613 --count 20000 --prefetch 500 --rounds 3
  eventfn bench --to mqtt://127.0.0.1:1884 --rate 1000 --duration 10s
  eventfn bench --to mqtt+ws://127.0.0.1:15675/ws --count 10000 --output json
  eventfn bench -c examples/slurm-site/eventfn.yaml ...     # your rules run their real actions
`

func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("bench", benchUsage, stderr)
	to := fs.String("to", "stomp+ws://127.0.0.1:15674/ws", "broker URL the consumers read from (stomp://, stomp+ws://, stomp+ssl://, stomp+wss://, mqtt://, mqtt+ws://, mqtts://, mqtt+wss://)")
	publishTo := fs.String("publish-to", "", "broker URL the load is published to (default --to)")
	login := fs.String("login", "guest", "broker and management API login")
	passFile := fs.String("passcode-file", "", "file holding the passcode")
	passEnv := fs.String("passcode-env", "", "environment variable holding the passcode")
	mgmt := fs.String("management", "http://127.0.0.1:15672", "RabbitMQ management API (empty: no provisioning, e.g. for Mosquitto)")
	vhost := fs.String("vhost", "", "virtual host, with --management ''")
	cfg := fs.String("c", "", "rules file eventfn runs (default: the embedded bench rules)")
	count := fs.Int("count", 0, "drain mode: messages to pre-fill and drain (default 10000 without --rate)")
	perSecond := fs.Float64("rate", 0, "rate mode: messages per second")
	duration := fs.Duration("duration", 10*time.Second, "rate mode: how long to publish")
	prefetch := fs.Int("prefetch", 0, "STOMP prefetch-count (default the source's, 100)")
	concurrency := fs.Int("concurrency", 0, "runner concurrency (default the rules file's runner.concurrency, else 8)")
	payloadBytes := fs.Int("payload-bytes", 0, "grow each order's payload to about this many bytes (default ~190: Waldur's order fields)")
	actionDelay := fs.Duration("action-delay", 0, "make every action take this long (simulated I/O-bound actions)")
	stateDir := fs.String("state-dir", "", "use the durable journal in this directory (default in memory)")
	baseline := fs.Bool("baseline", true, "also run the bare consumer")
	peer := fs.Bool("peer", false, "also run a consumer like the Python site agent's (STOMP; needs Debian's python3-stomp, python3-websocket)")
	peerAck := fs.String("peer-ack", "auto", "the Python consumer's ack mode: auto (the agent's) or client-individual")
	rounds := fs.Int("rounds", 1, "runs of each consumer (alternating which goes first); summaries are medians")
	timeout := fs.Duration("timeout", 0, "bound on each consumer run (default 2m plus --duration)")
	logFile := fs.String("log-file", "", "write eventfn's log here (default: formatted, then dropped)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of eventfn's consumer process here (the bare consumer's to FILE.bare)")
	caFile := fs.String("ca-file", "", "TLS: CA bundle to trust")
	insecure := fs.Bool("insecure-skip-verify", false, "TLS: do not verify the server certificate (tests only)")
	output := fs.String("output", "text", "report format: text or json")
	jsonFile := fs.String("json-file", "", "also write the report as JSON to this file")
	verbose := fs.Bool("verbose", false, "show progress and the consumers' stderr")
	role := fs.String("role", "", "internal: run as a consumer process (child)")
	if _, code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if *role == "child" {
		return bench.RunChild(ctx, os.Getenv(bench.ChildEnv), os.Stdin, stdout, stderr)
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "eventfn bench: "+format+"\n", a...)
		return code
	}
	switch {
	case *role != "":
		return fail(2, "--role %q: only child is known", *role)
	case *output != "text" && *output != "json":
		return fail(2, "--output %q: want text or json", *output)
	case *count > 0 && *perSecond > 0:
		return fail(2, "give --count (drain mode) or --rate (rate mode), not both")
	}
	if *count == 0 && *perSecond == 0 {
		*count = 10000
	}
	passcode := "guest"
	if *passFile != "" || *passEnv != "" {
		var err error
		if passcode, err = creds.Secret(*passFile, *passEnv, nil); err != nil {
			return fail(2, "passcode: %v", err)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return fail(1, "cannot find this executable to run the consumers: %v", err)
	}
	logLevel := "warn"
	if *verbose {
		logLevel = "info"
	}
	logger, err := newLogger(stderr, "text", logLevel)
	if err != nil {
		return fail(2, "%v", err)
	}
	o := bench.Options{URL: *to, PublishURL: *publishTo, Login: *login, Passcode: passcode,
		TLS:        creds.TLSSpec{CAFile: *caFile, InsecureSkipVerify: *insecure},
		Management: *mgmt, VHost: *vhost, Rules: *cfg, Count: *count, Rate: *perSecond, Duration: *duration,
		Prefetch: *prefetch, Concurrency: *concurrency, ActionDelay: *actionDelay, PayloadBytes: *payloadBytes, StateDir: *stateDir,
		Baseline: *baseline, Peer: *peer, PeerAck: *peerAck, Rounds: *rounds, Timeout: *timeout, LogFile: *logFile, CPUProfile: *cpuProfile,
		Command: []string{exe, "bench", "--role", "child"}, Logger: logger}
	if *perSecond == 0 {
		o.Duration = 0
	}
	if *verbose {
		o.ChildStderr = stderr
	}
	rep, err := bench.Run(ctx, o)
	if err != nil {
		return fail(1, "%v", err)
	}
	if *jsonFile != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err == nil {
			err = os.WriteFile(*jsonFile, append(b, '\n'), 0o644)
		}
		if err != nil {
			return fail(1, "--json-file: %v", err)
		}
	}
	if *output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return fail(1, "%v", err)
		}
		return 0
	}
	if err := rep.WriteText(stdout); err != nil {
		return fail(1, "%v", err)
	}
	return 0
}
