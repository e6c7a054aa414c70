{{- define "hushchat-sync.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "hushchat-sync.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "hushchat-sync.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* repository@digest when image.digest is set (the tag is then ignored), else repository:tag. */}}
{{- define "hushchat-sync.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* "true" when the pre-install/pre-upgrade migration Job runs: database.migrateJob with
PostgreSQL. The server pods then start with AUTO_MIGRATE=false; otherwise (SQLite) they
migrate at start-up. Both templates use this one condition. */}}
{{- define "hushchat-sync.migrateJob" -}}
{{- if and .Values.database.migrateJob .Values.database.urlSecret.name -}}true{{- end -}}
{{- end -}}

{{/* Environment shared by the server pods and the migration job. */}}
{{- define "hushchat-sync.env" -}}
- name: HUSHCHAT_SYNC_SECRET_KEY_FILE
  value: /run/secrets/hushchat-sync/SECRET_KEY
- name: HUSHCHAT_SYNC_ESCROW_PUBLIC_KEY_FILE
  value: /run/secrets/hushchat-sync/ESCROW_PUBLIC_KEY
- name: HUSHCHAT_SYNC_DATA_DIR
  value: /var/lib/hushchat-sync
- name: HUSHCHAT_SYNC_HOST
  value: 0.0.0.0
- name: HUSHCHAT_SYNC_PORT
  value: "8080"
{{- if .Values.database.urlSecret.name }}
- name: HUSHCHAT_SYNC_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.urlSecret.name }}
      key: {{ .Values.database.urlSecret.key }}
{{- end }}
{{- if .Values.rateLimit.storageUrlSecret.name }}
- name: HUSHCHAT_SYNC_RATE_LIMIT_STORAGE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.rateLimit.storageUrlSecret.name }}
      key: {{ .Values.rateLimit.storageUrlSecret.key }}
{{- end }}
{{- if .Values.oidc.issuer }}
- name: HUSHCHAT_SYNC_OIDC_ISSUER
  value: {{ .Values.oidc.issuer | quote }}
- name: HUSHCHAT_SYNC_OIDC_AUDIENCE
  value: {{ .Values.oidc.audience | quote }}
- name: HUSHCHAT_SYNC_OIDC_CLIENT_ID
  value: {{ .Values.oidc.clientId | quote }}
- name: HUSHCHAT_SYNC_OIDC_SCOPES
  value: {{ .Values.oidc.scopes | quote }}
{{- end }}
{{- range $name, $value := .Values.extraEnv }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- with .Values.extraEnvFrom }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The escrow private key and its KEK: only for the escrow CronJob (never the server pods). */}}
{{- define "hushchat-sync.escrowEnv" -}}
- name: HUSHCHAT_SYNC_ESCROW_KEK_FILE
  value: /run/secrets/hushchat-sync-escrow/ESCROW_KEK
- name: HUSHCHAT_SYNC_ESCROW_PRIVATE_KEY_FILE
  value: /run/secrets/hushchat-sync-escrow/ESCROW_PRIVATE_KEY
{{- end -}}
