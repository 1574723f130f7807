{{/* Names, labels and shared fragments of the damselfly chart. */}}

{{- define "damselfly.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "damselfly.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else if contains (include "damselfly.name" .) .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "damselfly.name" .) | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object; call with (dict "root" $ "component" "scheduler"). */}}
{{- define "damselfly.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{ include "damselfly.selectorLabels" . }}
{{- end -}}

{{- define "damselfly.selectorLabels" -}}
app.kubernetes.io/name: {{ include "damselfly.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "damselfly.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The schedulers' stable addresses: one --scheduler flag per StatefulSet Pod. */}}
{{- define "damselfly.schedulerArgs" -}}
{{- $full := include "damselfly.fullname" . -}}
{{- range $i := until (int .Values.scheduler.replicas) }}
- --scheduler
- {{ printf "%s-scheduler-%d.%s-scheduler.%s.svc.%s:%d" $full $i $full $.Release.Namespace $.Values.clusterDomain (int $.Values.scheduler.port) }}
{{- end }}
{{- end -}}

{{/* Container security context of the roles that need no root. */}}
{{- define "damselfly.restrictedContainer" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* An HTTP probe on /healthz; call with (dict "port" 8004 "scheme" "HTTP"). */}}
{{- define "damselfly.probes" -}}
livenessProbe:
  httpGet: {path: /healthz, port: {{ .port }}, scheme: {{ .scheme | default "HTTP" }}}
  initialDelaySeconds: 10
  periodSeconds: 20
  timeoutSeconds: 5
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /healthz, port: {{ .port }}, scheme: {{ .scheme | default "HTTP" }}}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 2
{{- end -}}

{{/* The mTLS volume mount and volume of one role; call with (dict "root" $ "role" "scheduler"). */}}
{{- define "damselfly.tlsMount" -}}
{{- if .root.Values.tls.enabled }}
- name: tls
  mountPath: {{ .root.Values.tls.mountPath }}
  readOnly: true
{{- end }}
{{- end -}}

{{- define "damselfly.tlsVolume" -}}
{{- if .root.Values.tls.enabled }}
- name: tls
  secret:
    secretName: {{ index .root.Values.tls.existingSecrets .role }}
    defaultMode: 0400
{{- end }}
{{- end -}}

{{/* The mTLS flag of the scheduler and dfdaemon commands (the manager has none). */}}
{{- define "damselfly.tlsArgs" -}}
{{- if .Values.tls.enabled }}
- --tls-dir
- {{ .Values.tls.mountPath | quote }}
{{- end }}
{{- end -}}

{{- define "damselfly.podEnv" -}}
- name: POD_IP
  valueFrom: {fieldRef: {fieldPath: status.podIP}}
- name: NODE_IP
  valueFrom: {fieldRef: {fieldPath: status.hostIP}}
- name: NODE_NAME
  valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
{{- end -}}
