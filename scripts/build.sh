#!/bin/sh
# Builds the eventfn binary the one way releases and the container image are
# built: static (CGO_ENABLED=0), reproducible paths (-trimpath), stripped,
# with the version stamped in. The Dockerfile runs this script, and
# cmd/eventfn/docker_test.go builds with it too, so the tested binary is the
# shipped one.
#
#   sh scripts/build.sh [OUTPUT] [VERSION]   # defaults: bin/eventfn, $VERSION or "dev"
set -eu
cd "$(dirname "$0")/.."
out=${1:-bin/eventfn}
version=${2:-${VERSION:-dev}}
export CGO_ENABLED=0
exec go build -trimpath -ldflags "-s -w -X main.version=${version}" -o "$out" ./cmd/eventfn
