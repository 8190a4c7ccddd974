#!/usr/bin/env bash
# Collects every figure of BENCHMARKS.md: the `eventfn bench` runs against the loopback brokers
# (scripts/test-env.sh starts them) and the Go benchmarks. About 15 minutes of machine time.
#
#   bash bench/collect.sh [OUT_DIR [SECTION...]]   # default /tmp/eventfn-bench, every section
#
# Sections: drain journal rate rules concurrency go (run some again when the machine was busy).
#
# Each bench run writes OUT_DIR/NAME.txt (the report) and OUT_DIR/NAME.json; the Go benchmarks
# go to OUT_DIR/go-bench.txt. Run it on a machine that is otherwise idle: every report records
# the load average at its start and end.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/eventfn-bench}
shift || true
SECTIONS=${*:-drain journal rate rules concurrency go}
want() { [[ " $SECTIONS " == *" $1 "* ]]; }
mkdir -p "$OUT"
go build -o "$OUT/eventfn" ./cmd/eventfn
E=$OUT/eventfn
STOMP=stomp://127.0.0.1:61613
WSTOMP=stomp+ws://127.0.0.1:15674/ws
MQTT=mqtt://127.0.0.1:1884
WMQTT=mqtt+ws://127.0.0.1:15675/ws

run() { # NAME ARGS...: one `eventfn bench` run
	local name=$1
	shift
	local t0=$SECONDS
	if "$E" bench "$@" --json-file "$OUT/$name.json" >"$OUT/$name.txt" 2>"$OUT/$name.err"; then
		echo "$name: $((SECONDS - t0))s"
	else
		echo "$name: FAILED after $((SECONDS - t0))s (see $OUT/$name.err)"
	fi
}

# rules FILE N: N order rules (only the last matches the benchmark's executing orders) and N
# user_role rules, which an order must not pay for.
rules() {
	{
		echo "version: 1"
		echo "rules:"
		for ((i = 0; i < $2; i++)); do
			local when='payload.order_state == "executing" && payload.eventfn_seq < 0'
			((i == $2 - 1)) && when='payload.order_state == "executing"'
			printf '  - name: order-%d\n    on: order\n    when: %s\n    key: payload.order_uuid\n' "$i" "$when"
			printf '    steps:\n      - log: {level: debug, message: "order {{ payload.order_uuid }}"}\n'
			printf '  - name: role-%d\n    on: user_role\n    when: payload.granted\n' "$i"
			printf '    steps:\n      - log: {level: debug, message: role}\n'
		done
	} >"$1"
}

# 1. Throughput ratio per transport and prefetch (drain of 20,000 messages, 3 rounds each).
if want drain; then
	for pf in 10 100 500; do
		run drain-stomp-p$pf --to $STOMP --count 20000 --prefetch $pf --rounds 3
		run drain-stompws-p$pf --to $WSTOMP --count 20000 --prefetch $pf --rounds 3
	done
	run drain-mqtt --to $MQTT --count 20000 --rounds 3
	run drain-mqttws --to $WMQTT --count 20000 --rounds 3
fi

# 2. The durable journal (runner.state_dir): default concurrency, then more.
if want journal; then
	rm -rf "$OUT/state"
	run drain-stomp-bbolt --to $STOMP --count 20000 --rounds 3 --state-dir "$OUT/state"
	rm -rf "$OUT/state"
	run drain-stomp-bbolt-c128 --to $STOMP --count 20000 --prefetch 500 --concurrency 128 --state-dir "$OUT/state"
fi

# 3. Latency and memory at 100, 1,000 and 5,000 msg/s (10 s), on each transport at 1,000.
if want rate; then
	for r in 100 1000 5000; do
		run rate-stompws-$r --to $WSTOMP --rate $r --duration 10s
	done
	run rate-stomp-1000 --to $STOMP --rate 1000 --duration 10s
	run rate-mqtt-1000 --to $MQTT --rate 1000 --duration 10s
	run rate-mqttws-1000 --to $WMQTT --rate 1000 --duration 10s
	# Longer at 5,000 msg/s: the in-memory journal fills (100,000 ids by default), then with 10,000.
	run rate-stompws-5000-30s --to $WSTOMP --rate 5000 --duration 30s
	run rate-stompws-5000-60s --to $WSTOMP --rate 5000 --duration 60s --baseline=false
	{ cat bench/rules.yaml; printf '\nrunner:\n  journal_max_entries: 10000\n'; } >"$OUT/rules-journal10k.yaml"
	run rate-stompws-5000-60s-j10k --to $WSTOMP --rate 5000 --duration 60s --baseline=false -c "$OUT/rules-journal10k.yaml"
fi

# 4. Rules: throughput and start-up with 1, 10, 100 and 1,000 order rules.
if want rules; then
	for n in 1 10 100 1000; do
		rules "$OUT/rules-$n.yaml" $n
		run rules-$n --to $STOMP --count 5000 --rounds 3 -c "$OUT/rules-$n.yaml"
	done
fi

# 5. Concurrency: a 10 ms action (I/O-bound work), then the no-op action (CPU-bound).
if want concurrency; then
	run conc-delay-1 --to $STOMP --count 300 --prefetch 500 --concurrency 1 --action-delay 10ms --baseline=false
	for c in 8 32 64; do
		run conc-delay-$c --to $STOMP --count 3000 --prefetch 500 --concurrency $c --action-delay 10ms --baseline=false
	done
	for c in 1 8 32; do
		run conc-noop-$c --to $STOMP --count 20000 --prefetch 500 --concurrency $c --rounds 3
	done
fi

# 6. Go benchmarks of the hot paths (5 runs each; compare medians).
if want go; then
	go test -run '^$' -bench . -benchmem -count 5 ./rules/ ./event/ ./runner/ | tee "$OUT/go-bench.txt" | grep -E '^(ok|FAIL)'
fi

echo "done: $OUT"
