{{/* Names and labels. */}}
{{- define "herald.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "herald.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "herald.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "herald.selectorLabels" -}}
app.kubernetes.io/name: {{ include "herald.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "herald.labels" -}}
helm.sh/chart: {{ include "herald.chart" . }}
{{ include "herald.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: herald
herald.io/region: {{ .Values.region | quote }}
{{- end }}

{{- define "herald.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "herald.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "herald.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Gossip seed: the headless Service, re-resolved by Herald every cluster.rejoin_interval. */}}
{{- define "herald.gossipService" -}}
{{- printf "%s-gossip" (include "herald.fullname" .) }}
{{- end }}

{{- define "herald.gossipSeed" -}}
{{- printf "%s.%s.svc.%s:%d" (include "herald.gossipService" .) .Release.Namespace .Values.clusterDomain (int .Values.ports.gossip) }}
{{- end }}

{{- define "herald.gossipSecretName" -}}
{{- if .Values.gossip.key }}
{{- printf "%s-gossip" (include "herald.fullname" .) }}
{{- else }}
{{- .Values.gossip.existingSecret }}
{{- end }}
{{- end }}

{{/*
Termination grace, in seconds. Kubernetes counts it from the start of the
preStop hook, so the node needs preStopSleep + drain window (+ the in-flight
publishes and the gossip leave, bounded by shutdown_timeout) before SIGKILL.
*/}}
{{- define "herald.gracePeriod" -}}
{{- $d := .Values.drain }}
{{- if and (kindIs "string" $d.terminationGracePeriodSeconds) (eq $d.terminationGracePeriodSeconds "") }}
{{- add (int $d.preStopSleep) (int $d.shutdownTimeout) (int $d.margin) }}
{{- else }}
{{- int $d.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/* Every refusal to render, in one place (included by the Deployment). */}}
{{- define "herald.validate" -}}
{{- if not (regexMatch "^[a-z0-9][a-z0-9-]{0,31}$" (toString .Values.region)) }}
{{- fail (printf "region %q: Herald region names are [a-z0-9][a-z0-9-]*, at most 32 characters" (toString .Values.region)) }}
{{- end }}
{{- $d := .Values.drain }}
{{- if or (lt (int $d.window) 0) (ge (int $d.window) (int $d.shutdownTimeout)) }}
{{- fail (printf "drain.window (%ds) must be at least 0 and below drain.shutdownTimeout (%ds): Herald refuses cluster.drain_window >= shutdown_timeout" (int $d.window) (int $d.shutdownTimeout)) }}
{{- end }}
{{- if lt (int $d.preStopSleep) 0 }}
{{- fail "drain.preStopSleep must not be negative" }}
{{- end }}
{{- $grace := int (include "herald.gracePeriod" .) }}
{{- $min := add (int $d.preStopSleep) (int $d.window) (int $d.margin) }}
{{- if le $grace $min }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed drain.preStopSleep + drain.window + drain.margin (%d): the kubelet would kill the pod before its streams are drained" $grace $min) }}
{{- end }}
{{- if gt (int .Values.updateStrategy.maxUnavailable) 0 }}
{{- fail "updateStrategy.maxUnavailable must be 0: a rolling update must not drain a pod before its replacement is ready" }}
{{- end }}
{{- if lt (int .Values.updateStrategy.maxSurge) 1 }}
{{- fail "updateStrategy.maxSurge must be at least 1 (with maxUnavailable 0 the rollout cannot progress otherwise)" }}
{{- end }}
{{- if and .Values.redis.url .Values.redis.existingSecret }}
{{- fail "set either redis.url or redis.existingSecret, not both" }}
{{- end }}
{{- if and (not .Values.redis.url) (not .Values.redis.existingSecret) (not .Values.dev) }}
{{- fail "redis.url or redis.existingSecret is required (the in-memory store is per pod and not durable: dev only)" }}
{{- end }}
{{- if and .Values.gossip.enabled (not .Values.dev) (not (include "herald.gossipSecretName" .)) }}
{{- fail "gossip.existingSecret is required with gossip.enabled unless dev (create it from `herald gossip-key`)" }}
{{- end }}
{{- if and .Values.auth.jwt.keys (not .Values.auth.jwt.existingSecret) }}
{{- fail "auth.jwt.keys need auth.jwt.existingSecret (the Secret holding the key files)" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas)) }}
{{- fail "autoscaling.maxReplicas must be >= autoscaling.minReplicas" }}
{{- end }}
{{- include "herald.validateMultiRegion" . }}
{{- $config := .Values.config | default dict }}
{{- $owned := list "listen" "admin_listen" "tls_cert_file" "tls_key_file" "gossip_listen" "gossip_advertise" "join" "gossip_key" "gossip_old_keys" "node_name" "region" "redis" "redis_prefix" "dev" "log_level" "shutdown_timeout" "advertise_url" "auth" "remote_redis" "region_url" "wan_listen" "wan_advertise" "wan_join" "wan_key" }}
{{- range $k := $owned }}
{{- if hasKey $config $k }}
{{- fail (printf "config.%s is set by the chart; use the chart value for it (see values.yaml)" $k) }}
{{- end }}
{{- end }}
{{- $cluster := get $config "cluster" | default dict }}
{{- range $k := list "drain_window" "connection_target" "label" }}
{{- if hasKey $cluster $k }}
{{- fail (printf "config.cluster.%s is set by the chart; use the chart value for it (see values.yaml)" $k) }}
{{- end }}
{{- end }}
{{- $admission := get (get $config "protection" | default dict) "admission" | default dict }}
{{- if hasKey $admission "max_streams" }}
{{- fail "config.protection.admission.max_streams is set by the chart; use streams.maxStreams" }}
{{- end }}
{{- end }}

{{/* Multi-region refusals (docs/multi-region.md). */}}
{{- define "herald.validateMultiRegion" -}}
{{- $m := .Values.multiRegion }}
{{- if not $m.enabled }}
{{- if or $m.remoteRedis $m.regionURL $m.wan.join $m.wan.seedService.enabled }}
{{- fail "multiRegion.* values are set but multiRegion.enabled is false: enable it or remove them" }}
{{- end }}
{{- else }}
{{- if and (not .Values.redis.url) (not .Values.redis.existingSecret) }}
{{- fail "multiRegion needs redis.url or redis.existingSecret: a region keeps its own events in its Redis primary (not the in-memory store)" }}
{{- end }}
{{- if gt (len $m.remoteRedis) 15 }}
{{- fail "multiRegion.remoteRedis: at most 15 other regions (16 origins per cursor)" }}
{{- end }}
{{- range $name, $r := $m.remoteRedis }}
{{- if not (regexMatch "^[a-z0-9][a-z0-9-]{0,31}$" $name) }}
{{- fail (printf "multiRegion.remoteRedis: region %q: names are [a-z0-9][a-z0-9-]*, at most 32 characters" $name) }}
{{- end }}
{{- if eq $name (toString $.Values.region) }}
{{- fail (printf "multiRegion.remoteRedis.%s: that is this release's own region (its events are in redis)" $name) }}
{{- end }}
{{- $url := (get ($r | default dict) "url") | default "" }}
{{- $sec := (get ($r | default dict) "existingSecret") | default "" }}
{{- if or (and $url $sec) (and (not $url) (not $sec)) }}
{{- fail (printf "multiRegion.remoteRedis.%s: set exactly one of url and existingSecret" $name) }}
{{- end }}
{{- if and $url (not (regexMatch "^rediss?(\\+sentinel|\\+cluster)?://" $url)) }}
{{- fail (printf "multiRegion.remoteRedis.%s.url: want redis://, rediss://, redis+sentinel:// or redis+cluster://" $name) }}
{{- end }}
{{- if contains "@" $url }}
{{- fail (printf "multiRegion.remoteRedis.%s.url carries credentials: put the URL in a Secret and use existingSecret" $name) }}
{{- end }}
{{- end }}
{{- if and $m.regionURL (not (regexMatch "^https?://[^/]+/?$" $m.regionURL)) }}
{{- fail (printf "multiRegion.regionURL %q: want http(s)://host[:port]" $m.regionURL) }}
{{- end }}
{{- $wp := int $m.wan.port }}
{{- if or (lt $wp 1) (gt $wp 65535) (eq $wp (int .Values.ports.http)) (eq $wp (int .Values.ports.admin)) (eq $wp (int .Values.ports.gossip)) }}
{{- fail (printf "multiRegion.wan.port %d must be a free port distinct from ports.http, ports.admin and ports.gossip" $wp) }}
{{- end }}
{{- if and (not .Values.dev) (not $m.wan.existingSecret) (not (and .Values.gossip.enabled (include "herald.gossipSecretName" .))) }}
{{- fail "multiRegion.wan.existingSecret is required (the WAN pool is encrypted) unless the gossip key, shared by every region, is used" }}
{{- end }}
{{- if and .Values.networkPolicy.enabled (not $m.wan.allowFrom) }}
{{- fail "multiRegion.wan.allowFrom is required with networkPolicy.enabled: list the other regions' pod CIDRs (ipBlock) allowed on the WAN port" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Environment variable holding one remote region's Redis URL (no HERALD_ prefix: not a config key). */}}
{{- define "herald.remoteRedisVar" -}}
{{- printf "REMOTE_REDIS_%s" (. | upper | replace "-" "_") }}
{{- end }}

{{/* herald.yaml: the free-form config plus the auth section built from values. */}}
{{- define "herald.configYAML" -}}
{{- $cfg := deepCopy (.Values.config | default dict) }}
{{- $auth := dict }}
{{- with .Values.auth.audience }}{{ $_ := set $auth "audience" . }}{{ end }}
{{- with .Values.auth.issuers }}{{ $_ := set $auth "issuers" . }}{{ end }}
{{- $keys := list }}
{{- range .Values.auth.jwt.keys }}
{{- $k := dict "algorithm" .algorithm "file" (printf "/etc/herald/jwt/%s" .secretKey) }}
{{- with (get . "id") }}{{ $_ := set $k "id" . }}{{ end }}
{{- with (get . "issuer") }}{{ $_ := set $k "issuer" . }}{{ end }}
{{- $keys = append $keys $k }}
{{- end }}
{{- with $keys }}{{ $_ := set $auth "keys" . }}{{ end }}
{{- with .Values.auth.jwks.urls }}{{ $_ := set $auth "jwks_url" . }}{{ end }}
{{- with .Values.auth.jwks.algorithms }}{{ $_ := set $auth "jwks_algorithms" . }}{{ end }}
{{- with .Values.auth.jwks.refreshInterval }}{{ $_ := set $auth "jwks_refresh_interval" . }}{{ end }}
{{- with .Values.auth.jwks.minRefreshInterval }}{{ $_ := set $auth "jwks_min_refresh_interval" . }}{{ end }}
{{- with .Values.auth.jwks.timeout }}{{ $_ := set $auth "jwks_timeout" . }}{{ end }}
{{- with .Values.auth.apiKeys.keys }}{{ $_ := set $auth "api_keys" . }}{{ end }}
{{- $_ := set $cfg "auth" $auth }}
{{- toYaml $cfg }}
{{- end }}
