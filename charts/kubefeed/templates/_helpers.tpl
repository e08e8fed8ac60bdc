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
{{- toYaml $c -}}
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
