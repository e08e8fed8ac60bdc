#!/usr/bin/env bash
# Builds govulncheck and an offline copy of the Go vulnerability database into
# a cache outside the clone, keyed by the versions, the Go version and the
# generator's source, and prints the directory: DIR/govulncheck, DIR/db (the
# v1 layout that `govulncheck -db file://DIR/db` reads). Nothing is rebuilt
# when the directory is up to date; `make vulncheck` runs
#
#   "$DIR/govulncheck" -db "file://$DIR/db" ./...
#
# govulncheck's version is pinned in test/tools/vulncheck/gendb/go.mod. The
# database comes from the golang.org/x/vulndb module (its data/osv entries),
# fetched through the Go module proxy like any module, so no other host is
# needed; bump vulndb_version for newer reports.
#
#   test/tools/vulncheck.sh              build what is missing, print the dir
#   test/tools/vulncheck.sh --print-dir  print the dir only (no build)
#
# KUBEFEED_CACHE overrides the cache root (default: $XDG_CACHE_HOME/kubefeed or
# ~/.cache/kubefeed).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
gen="$here/vulncheck/gendb"
vulndb_version=v0.0.0-20261105234957-e22db6528018
cache_root=${KUBEFEED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubefeed}
log() { echo "vulncheck.sh: $*" >&2; }

key=$( { go env GOVERSION GOOS GOARCH; echo "$vulndb_version";
         cat "$gen"/go.mod "$gen"/go.sum "$gen"/*.go; } | sha256sum | cut -c1-16)
dir="$cache_root/vulncheck/$key"
if [[ "${1:-}" == "--print-dir" || ( -x "$dir/govulncheck" && -f "$dir/db/index/modules.json" ) ]]; then
  echo "$dir"
  exit 0
fi

log "building govulncheck and the vulnerability database ($vulndb_version) into $dir"
start=$SECONDS
mkdir -p "$cache_root/vulncheck"
tmp=$(mktemp -d "$cache_root/vulncheck/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
(cd "$gen" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$tmp/govulncheck" golang.org/x/vuln/cmd/govulncheck \
            && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$tmp/gendb" .)
log "built govulncheck and gendb in $((SECONDS - start))s"
# `go mod download` outside any module: the vulndb module is data here, not a
# dependency of anything.
info=$(cd "$tmp" && GOFLAGS= go mod download -json "golang.org/x/vulndb@$vulndb_version")
src=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$info")
meta=$(sed -n 's/^[[:space:]]*"Info": "\(.*\)",\{0,1\}$/\1/p' <<<"$info")
modified=$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$meta")
if [[ -z "$src" || ! -d "$src/data/osv" || -z "$modified" ]]; then
  log "golang.org/x/vulndb@$vulndb_version: no data/osv or time in: $info"
  exit 1
fi
"$tmp/gendb" -osv "$src/data/osv" -out "$tmp/db" -modified "$modified"
rm "$tmp/gendb"
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
log "ready in $((SECONDS - start))s"
echo "$dir"
