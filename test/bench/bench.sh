#!/usr/bin/env bash
# make bench: measures kubefeed against a bare informer on the local control
# plane and writes docs/benchmarks.md (with .json and .svg). Several minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
export KUBEFEED_BIN_DIR=$(bash test/tools/build.sh)
go build -o bin/benchrun ./test/cmd/benchrun
bin/benchrun "$@"
