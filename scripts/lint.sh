#!/usr/bin/env bash
# Runs golangci-lint (configuration: .golangci.yml) at the pinned version,
# installing it with `go install` from the module proxy when it is missing.
#
#   bash scripts/lint.sh            # the whole tree
#   bash scripts/lint.sh ./rules/...
set -euo pipefail
cd "$(dirname "$0")/.."

GOLANGCI_LINT_VERSION=v2.15.0
bin_dir=${GOLANGCI_LINT_BIN:-$(go env GOPATH)/bin/golangci-lint-$GOLANGCI_LINT_VERSION}
lint=$bin_dir/golangci-lint
if [ ! -x "$lint" ] || ! "$lint" version 2>/dev/null | grep -q "version ${GOLANGCI_LINT_VERSION#v} "; then
  echo "installing golangci-lint $GOLANGCI_LINT_VERSION into $bin_dir"
  GOBIN=$bin_dir go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$GOLANGCI_LINT_VERSION"
fi
if [ $# -eq 0 ]; then
  set -- ./...
fi
exec "$lint" run "$@"
