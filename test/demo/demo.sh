#!/usr/bin/env bash
# make demo: start a local control plane, run kubefeed on it with a config
# that watches ConfigMaps, Deployments and a custom resource to stdout, make
# some changes, and show the events that came out.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=.devcluster
kf=bin/kubefeed
# The demo needs only the control plane (helm and promtool are for tests).
export KUBEFEED_BIN_DIR=$(bash test/tools/build.sh --control-plane)
go build -o bin/devcluster ./test/cmd/devcluster
go build -o bin/democtl ./test/cmd/democtl
go build -o bin/natsdev ./test/cmd/natsdev
bin/devcluster up "$dir" >/dev/null
# A local nats-server with JetStream for the audit sink.
natsport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 14222)
bin/natsdev serve "$dir/nats" "$natsport" &
npid=$!
export KUBECONFIG=$PWD/$dir/kubeconfig
cleanup() {
  [[ -n "${kpid:-}" ]] && kill "$kpid" 2>/dev/null && wait "$kpid" 2>/dev/null || true
  [[ -n "${npid:-}" ]] && kill "$npid" 2>/dev/null && wait "$npid" 2>/dev/null || true
  bin/devcluster down "$dir" >/dev/null
}
trap cleanup EXIT
# The demo drives the API server with a tiny kubectl stand-in, so it needs no
# kubectl on the machine.
k() { bin/democtl "$@"; }

k apply test/demo/crd.yaml
k apply test/demo/namespace.yaml

cat > "$dir/demo-config.yaml" <<YAML
apiVersion: kubefeed.io/v1alpha1
kind: Config
cluster: demo
watch:
  - resource: configmaps
    namespaces: [shop]
  - resource: deployments.apps
    namespaces: [shop]
  - resource: widgets.example.com
    namespaces: [shop]
sinks:
  - name: console
    stdout: { format: diff }
  - name: audit
    file: { path: .devcluster/events.jsonl }
  - name: stream
    jetstream:
      servers: [nats://127.0.0.1:$natsport]
      stream: KUBEFEED
      provision: { storage: file, maxAge: 24h }
YAML
rm -f "$dir/events.jsonl"
echo "== kubefeed run --config $dir/demo-config.yaml"
$kf run --config "$dir/demo-config.yaml" --log-format console --log-level warn &
kpid=$!
sleep 2

step() { echo; echo "== $*"; }
step "apply a ConfigMap, a Deployment and a Widget"
k apply test/demo/objects.yaml
sleep 1
step "scale the Deployment to 3"
k patch deployments.apps shop web '{"spec":{"replicas":3}}'
sleep 1
step "patch the Widget's status subresource"
k patch-status widgets.example.com shop gizmo '{"status":{"phase":"Ready"}}'
sleep 1
step "change the ConfigMap"
k patch configmaps shop settings '{"data":{"color":"blue","size":"L"}}'
sleep 1
step "delete everything"
k delete test/demo/objects.yaml
sleep 2
kill -TERM "$kpid"; wait "$kpid" || true; kpid=
echo
echo "== the same events as the audit sink stored them (JSON lines, one CloudEvent each):"
cut -c1-200 "$dir/events.jsonl" | sed 's/$/…/'
echo
echo "$(wc -l < "$dir/events.jsonl") events; full JSON in $dir/events.jsonl"
echo
echo "== the same events in NATS JetStream (subject kubefeed.<cluster>.<group>.<resource>.<namespace>.<change>):"
bin/natsdev count "nats://127.0.0.1:$natsport" KUBEFEED
