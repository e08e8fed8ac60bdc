#!/usr/bin/env bash
# Builds the local control plane (kube-apiserver, etcd), kubectl, helm, promtool,
# an OpenTelemetry Collector (otelcol) and nats-server (and, through
# vulncheck.sh, govulncheck and its database) from
# the Go module proxy into a cache outside the clone, keyed by the versions,
# the wrapper modules and the Go version, so a fresh clone on the same machine
# (what CI runs in) reuses them. Up-to-date binaries are not rebuilt.
#
# nats-server (the 3-node JetStream cluster of test/natstest) is built inside
# kubefeed's own module, so it is the version go.mod requires, linked with the
# dependency versions go.sum fixes; the second part of the directory's name
# hashes those versions. When only that part changes, the other binaries are
# linked from the directory of the same first part instead of being rebuilt.
#
#   test/tools/build.sh              build what is missing, print the bin dir
#   test/tools/build.sh --print-dir  print the bin dir only (no build)
#   test/tools/build.sh --control-plane  build only etcd and kube-apiserver (the demo)
#
# KUBEFEED_CACHE overrides the cache root (default: $XDG_CACHE_HOME/kubefeed or
# ~/.cache/kubefeed).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
kube_version=v1.37.2
etcd_version=v3.7.3
helm_version=v3.22.0
prometheus_version=v0.316.0 # promtool, for `promtool check metrics|rules`
# Bump recipe when the build flags below change, so cached binaries are rebuilt.
recipe=1
cache_root=${KUBEFEED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubefeed}

nats_ldflags="-s -w"
base=$( { go env GOVERSION GOOS GOARCH; echo "$kube_version $etcd_version $helm_version $recipe";
          cat "$here"/kube-apiserver/go.mod "$here"/kube-apiserver/go.sum \
              "$here"/etcd/go.mod "$here"/etcd/go.sum; } | sha256sum | cut -c1-16)
# Every module linked into nats-server, at the version kubefeed's build uses.
nats_modules=$(cd "$root" && go list -deps -f '{{with .Module}}{{.Path}} {{.Version}}{{end}}' github.com/nats-io/nats-server/v2 | sort -u)
nats_key=$( { echo "$nats_ldflags"; echo "$nats_modules"; } | sha256sum | cut -c1-8)
bin="$cache_root/bin/$base-$nats_key"

if [[ "${1:-}" == "--print-dir" ]]; then
  echo "$bin"
  exit 0
fi

mkdir -p "$bin"
log() { echo "build.sh: $*" >&2; }

# reuse NAME: links NAME (not nats-server) from a directory with the same
# first part of the key (it differs in nats-server's part, or predates it).
reuse() {
  local name=$1 d
  for d in "$cache_root/bin/$base" "$cache_root/bin/$base"-*; do
    if [[ "$d" != "$bin" && -x "$d/$name" ]]; then
      if ! ln "$d/$name" "$bin/$name" 2>/dev/null; then
        cp -p "$d/$name" "$bin/$name.tmp.$$" && mv "$bin/$name.tmp.$$" "$bin/$name"
      fi
      log "reusing $name from $d"
      return 0
    fi
  done
  return 1
}

# build NAME DIR PKG LDFLAGS: builds PKG inside the module DIR (relative to
# test/tools).
build() {
  local name=$1 dir=$2 pkg=$3 ldflags=$4
  if [[ -x "$bin/$name" ]] || { [[ "$name" != nats-server ]] && reuse "$name"; }; then
    return 0
  fi
  log "building $name into $bin (once per machine; kube-apiserver takes ~9 min cold)"
  local start=$SECONDS
  (cd "$here/$dir" && CGO_ENABLED=0 go build -o "$bin/$name.tmp.$$" -ldflags "$ldflags" "$pkg")
  mv "$bin/$name.tmp.$$" "$bin/$name"
  log "built $name in $((SECONDS - start))s"
}

stamp=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  stamp+=" -X $p.gitVersion=$kube_version -X $p.gitMajor=1 -X $p.gitMinor=37 -X $p.gitTreeState=clean"
done

GOFLAGS=-mod=mod build etcd etcd go.etcd.io/etcd/server/v3 "-s -w"
GOFLAGS=-mod=mod build kube-apiserver kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "-s -w$stamp"
if [[ "${1:-}" == "--control-plane" ]]; then
  echo "$bin"
  exit 0
fi
# In kubefeed's module, read-only: the versions go.mod and go.sum fix.
GOFLAGS=-mod=readonly build nats-server ../.. github.com/nats-io/nats-server/v2 "$nats_ldflags"
# kubectl, which the e2e tests drive (attribution names its field managers),
# from a wrapper module of its own with the same pins as kube-apiserver's.
GOFLAGS=-mod=readonly build kubectl kubectl k8s.io/kubernetes/cmd/kubectl "-s -w$stamp"
# The OpenTelemetry Collector of the OTLP sink's tests and benchmark (OTLP
# receiver, file exporter, k8sobjects receiver), from the module
# test/tools/otelcol. Its key (otelcol.key beside it) hashes that module and
# the Go version, so that changing it rebuilds the Collector alone; a
# directory with another nats-server part lends its binary when the key
# matches. About 6 minutes cold on 2 busy cores, once.
otel_key=$( { go env GOVERSION GOOS GOARCH; cat "$here"/otelcol/go.mod "$here"/otelcol/go.sum "$here"/otelcol/*.go; } | sha256sum | cut -c1-16)
build_otelcol() {
  local d
  [[ -x "$bin/otelcol" && "$(cat "$bin/otelcol.key" 2>/dev/null)" == "$otel_key" ]] && return 0
  for d in "$cache_root"/bin/*; do
    if [[ "$d" != "$bin" && -x "$d/otelcol" && "$(cat "$d/otelcol.key" 2>/dev/null)" == "$otel_key" ]]; then
      cp -p "$d/otelcol" "$bin/otelcol.tmp.$$" && mv "$bin/otelcol.tmp.$$" "$bin/otelcol"
      echo "$otel_key" > "$bin/otelcol.key"
      log "reusing otelcol from $d"
      return 0
    fi
  done
  log "building otelcol (OpenTelemetry Collector v0.152.0) into $bin (once per machine)"
  local start=$SECONDS
  (cd "$here/otelcol" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -o "$bin/otelcol.tmp.$$" -ldflags "-s -w" .)
  mv "$bin/otelcol.tmp.$$" "$bin/otelcol"
  echo "$otel_key" > "$bin/otelcol.key"
  log "built otelcol in $((SECONDS - start))s"
}
build_otelcol
if [[ ! -x "$bin/helm" ]] && ! reuse helm; then
  log "building helm $helm_version"
  GOBIN="$bin" CGO_ENABLED=0 go install "helm.sh/helm/v3/cmd/helm@$helm_version"
fi
if [[ ! -x "$bin/promtool" ]] && ! reuse promtool; then
  log "building promtool $prometheus_version (about 5 minutes, once)"
  GOBIN="$bin" CGO_ENABLED=0 go install "github.com/prometheus/prometheus/cmd/promtool@$prometheus_version"
fi
# govulncheck and the offline vulnerability database (`make vulncheck`),
# cached in a directory of their own.
bash "$here/vulncheck.sh" >/dev/null
echo "$bin"
