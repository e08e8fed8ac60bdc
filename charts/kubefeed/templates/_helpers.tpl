{{- define "kubefeed.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kubefeed.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kubefeed.labels" -}}
app.kubernetes.io/name: {{ include "kubefeed.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kubefeed.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubefeed.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kubefeed.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kubefeed.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The rendered config: the values' config with defaults that depend on the release. */}}
{{- define "kubefeed.config" -}}
{{- $c := deepCopy .Values.config -}}
{{- $_ := set $c "apiVersion" "kubefeed.io/v1alpha1" -}}
{{- $_ := set $c "kind" "Config" -}}
{{- $le := default dict $c.leaderElection -}}
{{- if not $le.namespace }}{{ $_ := set $le "namespace" .Release.Namespace }}{{ end -}}
{{- if not $le.name }}{{ $_ := set $le "name" (include "kubefeed.fullname" .) }}{{ end -}}
{{- $_ := set $c "leaderElection" $le -}}
{{- if hasKey $c "snapshots" }}
{{- $sn := default dict $c.snapshots -}}
{{- if not $sn.namespace }}{{ $_ := set $sn "namespace" .Release.Namespace }}{{ end -}}
{{- $_ := set $c "snapshots" $sn -}}
{{- end -}}
{{- toYaml $c -}}
{{- end -}}

{{/*
kubefeed.validate fails on values that kubefeed's config validation would
reject only once the pod runs, naming the value to change, so that helm
install fails instead.
*/}}
{{- define "kubefeed.validate" -}}
{{- $le := default dict .Values.config.leaderElection -}}
{{- $cp := default dict .Values.config.checkpoint -}}
{{- if and (gt (int .Values.replicaCount) 1) (not $le.enabled) }}
{{- fail (printf "replicaCount %d needs config.leaderElection.enabled: true (the replicas elect who runs the feed through a Lease)" (int .Values.replicaCount)) }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) $cp.file }}
{{- fail "several replicas cannot share the file checkpoint: use config.checkpoint.jetstream" }}
{{- end }}
{{- if and .Values.config.sharding (hasKey .Values.config "snapshots") }}
{{- fail "config.snapshots is not supported together with config.sharding yet (a snapshot would have to span every shard's replica)" }}
{{- end }}
{{- if .Values.config.sharding }}
{{- if not $le.enabled }}
{{- fail "config.sharding needs config.leaderElection.enabled: true (each shard has its own Lease)" }}
{{- end }}
{{- if not $cp.jetstream }}
{{- fail "config.sharding needs config.checkpoint.jetstream (a shard's checkpoint moves with it between replicas)" }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
kubefeed.leaseNames: the Leases kubefeed gets and updates, as a JSON list:
leaderElection.name without sharding; with sharding.shards N the shard
Leases name-shard-0 .. name-shard-(N-1) and the membership Lease
name-members.
*/}}
{{- define "kubefeed.leaseNames" -}}
{{- $name := (default dict .Values.config.leaderElection).name | default (include "kubefeed.fullname" .) -}}
{{- $names := list $name -}}
{{- with .Values.config.sharding -}}
{{- $names = list -}}
{{- range $i := until (int .shards) }}{{ $names = append $names (printf "%s-shard-%d" $name $i) }}{{ end -}}
{{- $names = append $names (printf "%s-members" $name) -}}
{{- end -}}
{{- toJson $names -}}
{{- end -}}

{{/*
kubefeed.readyPods: how many pods are Ready when all replicas run: every
replica with warm standbys (Ready once warm) or when each holds a shard;
with cold standbys (never Ready) only those that lead: one, or with
sharding one per shard up to replicaCount.
*/}}
{{- define "kubefeed.readyPods" -}}
{{- $replicas := int .Values.replicaCount -}}
{{- $le := default dict .Values.config.leaderElection -}}
{{- if and $le.enabled (eq ($le.standby | default "warm") "cold") -}}
{{- $shards := int ((default dict .Values.config.sharding).shards | default 1) -}}
{{- min $replicas $shards -}}
{{- else -}}
{{- $replicas -}}
{{- end -}}
{{- end -}}

{{/*
kubefeed.apiRule turns a resource name (pods, deployments.apps,
deployments.v1.apps, apps/v1/deployments, v1/pods) into "group|resource".
*/}}
{{- define "kubefeed.apiRule" -}}
{{- $r := lower . -}}
{{- if contains "/" $r -}}
{{- $p := splitList "/" $r -}}
{{- if eq (len $p) 3 -}}{{ printf "%s|%s" (index $p 0) (index $p 2) }}{{- else -}}{{ printf "|%s" (last $p) }}{{- end -}}
{{- else if contains "." $r -}}
{{- $p := splitList "." $r -}}
{{- $rest := rest $p -}}
{{- if and (gt (len $rest) 1) (regexMatch "^v[0-9]+((alpha|beta)[0-9]+)?$" (first $rest)) -}}{{ $rest = rest $rest }}{{- end -}}
{{- printf "%s|%s" (join "." $rest) (first $p) -}}
{{- else -}}
{{- printf "|%s" $r -}}
{{- end -}}
{{- end -}}

{{/* kubefeed.rbacRules renders rules for a list of "group|resource" strings. */}}
{{- define "kubefeed.rbacRules" -}}
{{- $byGroup := dict -}}
{{- range (uniq .) -}}
{{- $p := splitList "|" . -}}
{{- $g := index $p 0 -}}
{{- $_ := set $byGroup $g (append (get $byGroup $g | default list) (index $p 1)) -}}
{{- end -}}
{{- range $g := keys $byGroup | sortAlpha }}
- apiGroups: [{{ $g | quote }}]
  resources: {{ get $byGroup $g | uniq | sortAlpha | toJson }}
  verbs: [get, list, watch]
{{- end -}}
{{- end -}}

{{/*
kubefeed.shutdownSeconds: config.shutdownTimeout (a Go duration such as
"30s", "1m30s", "2500ms"; kubefeed's default 30s) in whole seconds, rounded up.
*/}}
{{- define "kubefeed.shutdownSeconds" -}}
{{- $d := .Values.config.shutdownTimeout | default "30s" -}}
{{- $unit := dict "ns" 0.000000001 "us" 0.000001 "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0 -}}
{{- $total := 0.0 -}}
{{- range regexFindAll "[0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h)" $d -1 -}}
{{- $u := regexFind "[a-z]+$" . -}}
{{- $total = addf $total (mulf (float64 (trimSuffix $u .)) (get $unit $u)) -}}
{{- end -}}
{{- ceil $total | int -}}
{{- end -}}

{{/*
kubefeed.terminationGracePeriodSeconds: the explicit value, or the config's
shutdownTimeout plus 15 s for the checkpoint flush, the Lease release and the
process exit, so that Kubernetes never SIGKILLs a pod that is still draining.
*/}}
{{- define "kubefeed.terminationGracePeriodSeconds" -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds -}}
{{- add (include "kubefeed.shutdownSeconds" . | int) 15 -}}
{{- else -}}
{{- .Values.terminationGracePeriodSeconds | int -}}
{{- end -}}
{{- end -}}

{{/*
kubefeed.egressRules renders networkPolicy.egress entries, {cidr, except,
ports} or {namespaceSelector, podSelector, ports}, as NetworkPolicy egress
rules. A port is a number (TCP) or {port, protocol, endPort}.
*/}}
{{- define "kubefeed.egressRules" -}}
{{- $rules := list -}}
{{- range . -}}
{{- $peer := dict -}}
{{- if .cidr -}}
{{- $ip := dict "cidr" .cidr -}}
{{- with .except }}{{ $_ := set $ip "except" . }}{{ end -}}
{{- $_ := set $peer "ipBlock" $ip -}}
{{- else -}}
{{- with .namespaceSelector }}{{ $_ := set $peer "namespaceSelector" . }}{{ end -}}
{{- with .podSelector }}{{ $_ := set $peer "podSelector" . }}{{ end -}}
{{- end -}}
{{- $rule := dict "to" (list $peer) -}}
{{- $ports := list -}}
{{- range .ports -}}
{{- if kindIs "map" . -}}
{{- $ports = append $ports (merge (dict) . (dict "protocol" "TCP")) -}}
{{- else -}}
{{- $ports = append $ports (dict "port" (int .) "protocol" "TCP") -}}
{{- end -}}
{{- end -}}
{{- with $ports }}{{ $_ := set $rule "ports" . }}{{ end -}}
{{- $rules = append $rules $rule -}}
{{- end -}}
{{- toYaml $rules -}}
{{- end -}}

{{/* kubefeed.clusterScoped is "true" when a "group|resource" string names a
built-in cluster-scoped resource (enrich.clusterScoped adds custom ones). */}}
{{- define "kubefeed.clusterScoped" -}}
{{- $known := list "|nodes" "|namespaces" "|persistentvolumes" "|componentstatuses"
  "storage.k8s.io|storageclasses" "storage.k8s.io|csinodes" "storage.k8s.io|csidrivers" "storage.k8s.io|volumeattachments"
  "rbac.authorization.k8s.io|clusterroles" "rbac.authorization.k8s.io|clusterrolebindings"
  "apiextensions.k8s.io|customresourcedefinitions" "apiregistration.k8s.io|apiservices"
  "scheduling.k8s.io|priorityclasses" "node.k8s.io|runtimeclasses"
  "networking.k8s.io|ingressclasses" "networking.k8s.io|ipaddresses" "networking.k8s.io|servicecidrs"
  "admissionregistration.k8s.io|validatingwebhookconfigurations" "admissionregistration.k8s.io|mutatingwebhookconfigurations"
  "admissionregistration.k8s.io|validatingadmissionpolicies" "admissionregistration.k8s.io|validatingadmissionpolicybindings"
  "certificates.k8s.io|certificatesigningrequests"
  "flowcontrol.apiserver.k8s.io|flowschemas" "flowcontrol.apiserver.k8s.io|prioritylevelconfigurations"
  "resource.k8s.io|deviceclasses" "resource.k8s.io|resourceslices" -}}
{{- if has . $known }}true{{ end -}}
{{- end -}}

{{/* kubefeed.metadataRules renders list/watch rules (metadata informers for
the enrichment of Events) for a list of "group|resource" strings. */}}
{{- define "kubefeed.metadataRules" -}}
{{- $byGroup := dict -}}
{{- range (uniq .) -}}
{{- $p := splitList "|" . -}}
{{- $g := index $p 0 -}}
{{- $_ := set $byGroup $g (append (get $byGroup $g | default list) (index $p 1)) -}}
{{- end -}}
{{- range $g := keys $byGroup | sortAlpha }}
- apiGroups: [{{ $g | quote }}]
  resources: {{ get $byGroup $g | uniq | sortAlpha | toJson }}
  verbs: [list, watch]
{{- end -}}
{{- end -}}
