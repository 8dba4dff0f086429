{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "central.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart unless overridden. Leaves room for the "-grpc"/"-https" suffixes. */}}
{{- define "central.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 57 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 57 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 57 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "central.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "central.labels" -}}
helm.sh/chart: {{ include "central.chart" . }}
{{ include "central.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: onshi-fleet
{{- end }}

{{/* Selects every pod of the release (server and migration job). */}}
{{- define "central.selectorLabels" -}}
app.kubernetes.io/name: {{ include "central.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selects the serving pods only. */}}
{{- define "central.serverSelectorLabels" -}}
{{ include "central.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "central.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "central.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "central.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* DATABASE_URL from the existing Secret: central's own role (a member of onshi_app, owning
     nothing). A reference: the value never enters the manifest. */}}
{{- define "central.databaseEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "database.existingSecret is required (an existing Secret with central's own PostgreSQL URL)" .Values.database.existingSecret }}
      key: {{ .Values.database.urlKey }}
{{- if .Values.database.allowSchemaOwner }}
- name: CENTRAL_ALLOW_SCHEMA_OWNER
  value: "true"
{{- end }}
{{- if .Values.database.requireSynchronousStandby }}
- name: CENTRAL_REQUIRE_SYNCHRONOUS_STANDBY
  value: "true"
{{- end }}
{{- with .Values.database.readReplica }}
{{- if .existingSecret }}
- name: CENTRAL_READ_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .urlKey }}
- name: CENTRAL_REPLICA_LAG_WARNING_SECS
  value: {{ .lagWarningSeconds | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* The schema owner's URL under the variable `name`: DATABASE_URL for `central migrate`,
     CENTRAL_MIGRATE_DATABASE_URL for a central that migrates at start. */}}
{{- define "central.ownerDatabaseEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ required "database.owner.existingSecret is required (an existing Secret with the schema owner's PostgreSQL URL, for migrations)" .root.Values.database.owner.existingSecret }}
      key: {{ .root.Values.database.owner.urlKey }}
{{- end }}

{{- define "central.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext }}
{{- end }}
