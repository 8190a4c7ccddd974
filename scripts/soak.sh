#!/usr/bin/env bash
# Soak and chaos test of eventfn against the RabbitMQ on loopback: mixed
# Waldur events at a steady rate while the broker closes eventfn's
# connections every few seconds, one eventfn is SIGKILLed and restarted every
# 20-30 s, actions fail at random and a webhook target stalls, and a toggle
# stream repeats grant/revoke of one user per project with identical payloads;
# at the end it proves by counting that every message ended exactly once in
# effect (success, on_failure or dead-letter queue), that every toggle ran and
# only exact republishes were skipped, and that memory and goroutines did not
# grow. See internal/soak/doc.go for what it does and its settings.
#
#   bash scripts/soak.sh                     # 30 minutes
#   SOAK_DURATION=2m bash scripts/soak.sh    # 2 minutes (CI)
#   SOAK_RATE=50 SOAK_KEEP=1 bash scripts/soak.sh   # faster; keep the logs
#
# It brings the services up first (scripts/test-env.sh, idempotent) unless
# SOAK_NO_ENV=1. Exit status 0 means every check passed.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${SOAK_DURATION:=30m}"
export SOAK_DURATION

if [ -z "${SOAK_NO_ENV:-}" ]; then
  echo "== preparing services (scripts/test-env.sh)"
  bash scripts/test-env.sh
fi

# go test's own deadline: the run, plus draining, stopping and building.
secs=$(awk -v d="$SOAK_DURATION" 'BEGIN {
  n = d + 0; u = substr(d, length(d));
  if (u == "h") n *= 3600; else if (u == "m") n *= 60;
  print int(n) }')
timeout=$((secs + 900))s

echo "== soak ($SOAK_DURATION)"
exec go test -tags soak -run '^TestSoak$' -count=1 -v -timeout "$timeout" ./internal/soak
