#!/usr/bin/env bash
# Collects every figure of BENCHMARKS.md: the `eventfn bench` runs against the loopback brokers
# (scripts/test-env.sh starts them) and the Go benchmarks. About 30 minutes of machine time.
#
#   bash bench/collect.sh [OUT_DIR [SECTION...]]   # default /tmp/eventfn-bench, every section
#
# Sections: drain rate rules concurrency payload peer go (run some again when the machine was busy).
#
# Each bench run writes OUT_DIR/NAME.txt (the report) and OUT_DIR/NAME.json; the Go benchmarks
# go to OUT_DIR/go-bench.txt. Run it on a machine that is otherwise idle: every report records
# the load average at its start and end, and OUT_DIR/load.log the load and the busiest other
# processes before each run.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/eventfn-bench}
shift || true
SECTIONS=${*:-drain rate rules concurrency payload peer go}
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
	{
		echo "== $name $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
		ps -eo pcpu=,comm= --sort=-pcpu | head -3
	} >>"$OUT/load.log"
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

# 1. Drains of 20,000 messages, 3 rounds each, on every transport × prefetch 10/100/500 × the
# in-memory and the durable journal (a fresh state directory each run). MQTT's prefetch is the
# broker's (RabbitMQ mqtt.prefetch, 10 here): --prefetch does not apply to it.
if want drain; then
	for j in mem dur; do
		for pf in 10 100 500; do
			for t in stomp stompws; do
				url=$STOMP
				[[ $t == stompws ]] && url=$WSTOMP
				state=()
				if [[ $j == dur ]]; then
					rm -rf "$OUT/state"
					state=(--state-dir "$OUT/state")
				fi
				run drain-$t-p$pf-$j --to $url --count 20000 --prefetch $pf --rounds 3 "${state[@]}"
			done
		done
		for t in mqtt mqttws; do
			url=$MQTT
			[[ $t == mqttws ]] && url=$WMQTT
			state=()
			if [[ $j == dur ]]; then
				rm -rf "$OUT/state"
				state=(--state-dir "$OUT/state")
			fi
			run drain-$t-$j --to $url --count 20000 --rounds 3 "${state[@]}"
		done
	done
fi

# 2. Latency: publish → action start at 1,000 msg/s for 10 s with the durable journal on every
# transport, the bare consumer (publish → receipt) in the same invocation.
if want rate; then
	for t in stomp stompws mqtt mqttws; do
		case $t in
		stomp) url=$STOMP ;; stompws) url=$WSTOMP ;; mqtt) url=$MQTT ;; mqttws) url=$WMQTT ;;
		esac
		rm -rf "$OUT/state"
		run rate-$t-1000-dur --to $url --rate 1000 --duration 10s --rounds 3 --state-dir "$OUT/state"
	done
	# The memory journal for comparison, on one transport of each protocol.
	run rate-stomp-1000-mem --to $STOMP --rate 1000 --duration 10s --rounds 3
	run rate-mqtt-1000-mem --to $MQTT --rate 1000 --duration 10s --rounds 3
fi

# 3. Rules: cost per message and start-up with 1, 10, 100 and 1,000 order rules.
if want rules; then
	for n in 1 10 100 1000; do
		rules "$OUT/rules-$n.yaml" $n
		run rules-$n --to $STOMP --count 5000 --rounds 3 -c "$OUT/rules-$n.yaml"
	done
fi

# 4. Concurrency: a 10 ms action (I/O-bound work), then the no-op action (CPU-bound).
if want concurrency; then
	run conc-delay-1 --to $STOMP --count 300 --prefetch 500 --concurrency 1 --action-delay 10ms --baseline=false
	for c in 8 32 64; do
		run conc-delay-$c --to $STOMP --count 3000 --prefetch 500 --concurrency $c --action-delay 10ms --baseline=false
	done
	for c in 1 8 32; do
		run conc-noop-$c --to $STOMP --count 20000 --prefetch 500 --concurrency $c --rounds 3
	done
fi

# 5. Payload size: 250 B, 10 KiB and ~1 MiB (1,000,000 B: runner.max_body is 1 MiB) orders.
if want payload; then
	run payload-250 --to $STOMP --count 20000 --rounds 3 --payload-bytes 250
	run payload-10k --to $STOMP --count 5000 --rounds 3 --payload-bytes 10240
	run payload-1m --to $STOMP --count 200 --rounds 3 --payload-bytes 1000000
fi

# 6. The peer: a Python consumer like the site agent's (stomp.py; over Web-STOMP a small
# transport on python3-websocket), ack=auto as the agent, then per-message acks.
if want peer; then
	# Debian's stomp.py and websocket client (bench/peer/agent_listener.py).
	python3 -c 'import stomp, websocket' 2>/dev/null || apt-get install -y -q python3-stomp python3-websocket >/dev/null
	run peer-stompws-auto --to $WSTOMP --count 20000 --rounds 3 --peer
	run peer-stompws-ci --to $WSTOMP --count 20000 --rounds 3 --peer --peer-ack client-individual
	run peer-stomp-auto --to $STOMP --count 20000 --rounds 3 --peer
fi

# 7. Go benchmarks of the hot paths (3 runs each; compare medians).
if want go; then
	go test -run '^$' -bench . -benchmem -count 3 ./rules/ ./event/ ./runner/ ./actions/ ./internal/stompframe/ | tee "$OUT/go-bench.txt" | grep -E '^(ok|FAIL)'
fi

echo "done: $OUT"
