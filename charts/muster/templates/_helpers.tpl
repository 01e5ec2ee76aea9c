{{/*
Names, labels and the pieces every Muster pod shares. Helpers are prefixed "muster.".
*/}}

{{- define "muster.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "muster.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "<fullname>-<component>", e.g. muster-gateway. Call with (list $ "gateway"). */}}
{{- define "muster.componentName" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "muster.fullname" $root | trunc 50 | trimSuffix "-") (index . 1) }}
{{- end }}

{{- define "muster.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: name, instance and component only (they never change). */}}
{{- define "muster.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "muster.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* Standard labels of every object. Call with (list $ "component"). */}}
{{- define "muster.labels" -}}
{{- $root := index . 0 -}}
helm.sh/chart: {{ include "muster.chart" $root }}
{{ include "muster.selectorLabels" . }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: muster
{{- end }}

{{/* Image of a component: (list $ "gateway" .Values.gateway.image). */}}
{{- define "muster.image" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{- $image := index . 2 -}}
{{- $repository := $image.repository | default (printf "%s/muster-%s" $root.Values.image.registry $component) -}}
{{- $tag := $image.tag | default $root.Values.image.tag | default $root.Chart.AppVersion -}}
{{- printf "%s:%s" $repository $tag }}
{{- end }}

{{/* The Temporal frontend every component uses. */}}
{{- define "muster.temporalAddress" -}}
{{- if .Values.temporal.devServer.enabled }}
{{- printf "%s:7233" (include "muster.componentName" (list . "temporal")) }}
{{- else }}
{{- .Values.temporal.address }}
{{- end }}
{{- end }}

{{/* Environment of the Temporal connection (Temporal's standard variables). */}}
{{- define "muster.temporalEnv" -}}
- name: TEMPORAL_ADDRESS
  value: {{ include "muster.temporalAddress" . | quote }}
- name: TEMPORAL_NAMESPACE
  value: {{ .Values.temporal.namespace | quote }}
{{- with .Values.temporal.apiKey.existingSecret }}
- name: TEMPORAL_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.temporal.apiKey.key }}
{{- end }}
{{- $tls := .Values.temporal.tls -}}
{{- if and $tls.enabled (not .Values.temporal.devServer.enabled) }}
- name: TEMPORAL_TLS
  value: "true"
{{- with $tls.serverName }}
- name: TEMPORAL_TLS_SERVER_NAME
  value: {{ . | quote }}
{{- end }}
{{- if $tls.clientSecret }}
- name: TEMPORAL_TLS_CLIENT_CERT_PATH
  value: /etc/muster/temporal-tls/client/tls.crt
- name: TEMPORAL_TLS_CLIENT_KEY_PATH
  value: /etc/muster/temporal-tls/client/tls.key
{{- end }}
{{- if $tls.caSecret }}
- name: TEMPORAL_TLS_SERVER_CA_CERT_PATH
  value: /etc/muster/temporal-tls/ca/ca.crt
{{- end }}
{{- end }}
{{- end }}

{{/* Volumes and mounts of the Temporal TLS material. */}}
{{- define "muster.temporalVolumes" -}}
{{- $tls := .Values.temporal.tls -}}
{{- if and $tls.enabled (not .Values.temporal.devServer.enabled) }}
{{- with $tls.clientSecret }}
- name: temporal-tls-client
  secret:
    secretName: {{ . }}
{{- end }}
{{- with $tls.caSecret }}
- name: temporal-tls-ca
  secret:
    secretName: {{ . }}
{{- end }}
{{- end }}
{{- end }}

{{- define "muster.temporalMounts" -}}
{{- $tls := .Values.temporal.tls -}}
{{- if and $tls.enabled (not .Values.temporal.devServer.enabled) }}
{{- if $tls.clientSecret }}
- name: temporal-tls-client
  mountPath: /etc/muster/temporal-tls/client
  readOnly: true
{{- end }}
{{- if $tls.caSecret }}
- name: temporal-tls-ca
  mountPath: /etc/muster/temporal-tls/ca
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{/* Environment every Muster process gets: pod identity (trace resource attributes), the
log settings under the process's prefix, common.env and the component's env. Call with
(list $ "MUSTER_GATEWAY_" .Values.gateway.env). */}}
{{- define "muster.commonEnv" -}}
{{- $root := index . 0 -}}
{{- $prefix := index . 1 -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: POD_UID
  valueFrom:
    fieldRef:
      fieldPath: metadata.uid
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: {{ $prefix }}LOG__LEVEL
  value: {{ $root.Values.common.logLevel | quote }}
- name: {{ $prefix }}LOG__FORMAT
  value: json
- name: {{ $prefix }}HTTP__PORT
  value: "9090"
{{- range $name, $value := merge (dict) (index . 2) $root.Values.common.env }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/* Probes on the runtime's health endpoints (port "metrics"). */}}
{{- define "muster.probes" -}}
startupProbe:
  httpGet:
    path: /healthz
    port: metrics
  periodSeconds: 2
  failureThreshold: 60
livenessProbe:
  httpGet:
    path: /healthz
    port: metrics
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: metrics
  periodSeconds: 5
  timeoutSeconds: 5
  failureThreshold: 3
{{- end }}

{{/* Pod-level fields every Muster pod shares. Call with (list $ .Values.gateway). */}}
{{- define "muster.podSpecCommon" -}}
{{- $root := index . 0 -}}
{{- $values := index . 1 -}}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $root.Values.common.podSecurityContext | nindent 2 }}
{{- with $values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Pod metadata: labels and annotations. Call with (list $ "gateway"). */}}
{{- define "muster.podMetadata" -}}
{{- $root := index . 0 -}}
labels:
  {{- include "muster.labels" . | nindent 2 }}
  muster.io/metrics: "true"
  {{- with $root.Values.common.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  kubectl.kubernetes.io/default-container: {{ index . 1 }}
  {{- with $root.Values.common.podAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/* PodDisruptionBudget of a component: (list $ "gateway" .Values.gateway). */}}
{{- define "muster.pdb" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{- $values := index . 2 -}}
{{- if and $values.enabled $values.podDisruptionBudget.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "muster.componentName" (list $root $component) }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "muster.labels" (list $root $component) | nindent 4 }}
spec:
  maxUnavailable: {{ $values.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "muster.selectorLabels" (list $root $component) | nindent 6 }}
{{- end }}
{{- end }}

{{/* HorizontalPodAutoscaler of a component: (list $ "gateway" .Values.gateway). */}}
{{/* Non-empty when the workers run as WorkerDeployments (versioning.promote=operator). */}}
{{- define "muster.rollouts" -}}
{{- if and .Values.versioning.enabled (eq .Values.versioning.promote "operator") }}true{{ end }}
{{- end }}

{{- define "muster.hpa" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{- $values := index . 2 -}}
{{- if and $values.enabled $values.autoscaling.enabled }}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "muster.componentName" (list $root $component) }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "muster.labels" (list $root $component) | nindent 4 }}
spec:
  scaleTargetRef:
    {{- if and (has $component (list "approval" "fulfillment" "scheduling")) (include "muster.rollouts" $root) }}
    # The WorkerDeployment's scale subresource scales its current build.
    apiVersion: muster.io/v1alpha1
    kind: WorkerDeployment
    {{- else }}
    apiVersion: apps/v1
    kind: Deployment
    {{- end }}
    name: {{ include "muster.componentName" (list $root $component) }}
  minReplicas: {{ $values.autoscaling.minReplicas }}
  maxReplicas: {{ $values.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $values.autoscaling.targetCPUUtilizationPercentage }}
{{- end }}
{{- end }}

{{/* Worker settings under a prefix: (list "MUSTER_APPROVAL_" .Values.approval $ "approval").
The build id is versioning.buildId, else the worker's image tag: a new image is a new
Worker Deployment version. */}}
{{- define "muster.workerEnv" -}}
{{- $prefix := index . 0 -}}
{{- $values := index . 1 -}}
{{- $root := index . 2 -}}
{{- $component := index . 3 -}}
{{- with $root.Values.versioning }}
{{- if .enabled }}
- name: {{ $prefix }}WORKER__DEPLOYMENT_NAME
  value: {{ printf "%s-%s" (include "muster.fullname" $root) $component | replace "." "-" | quote }}
- name: {{ $prefix }}WORKER__BUILD_ID
  value: {{ .buildId | default $values.image.tag | default $root.Values.image.tag | default $root.Chart.AppVersion | quote }}
- name: {{ $prefix }}WORKER__PROMOTE
  value: {{ eq .promote "operator" | ternary "external" .promote | quote }}
{{- end }}
{{- end }}
- name: {{ $prefix }}WORKER__TASK_QUEUE
  value: {{ $values.taskQueue | quote }}
- name: {{ $prefix }}WORKER__MAX_CONCURRENT_ACTIVITIES
  value: {{ $values.maxConcurrentActivities | quote }}
- name: {{ $prefix }}WORKER__MAX_CONCURRENT_WORKFLOW_TASKS
  value: {{ $values.maxConcurrentWorkflowTasks | quote }}
- name: {{ $prefix }}WORKER__MAX_CACHED_WORKFLOWS
  value: {{ $values.maxCachedWorkflows | quote }}
- name: {{ $prefix }}WORKER__GRACEFUL_SHUTDOWN_SECONDS
  value: {{ $values.gracefulShutdownSeconds | quote }}
{{- end }}

{{/* Base URL of the chart's reference backends. */}}
{{- define "muster.backendsUrl" -}}
{{- printf "http://%s:%d" (include "muster.componentName" (list . "backends")) (int .Values.backends.service.port) }}
{{- end }}

{{- define "muster.policiesConfigMap" -}}
{{- include "muster.componentName" (list . "approval-policies") }}
{{- end }}

{{/* A Muster service Deployment. Call with a dict:
  root, component, values, prefix (settings prefix), and optional strings of YAML:
  env, volumes, mounts, ports (besides "metrics"); recreate (bool); grace (seconds). */}}
{{- define "muster.deployment" -}}
{{- $root := .root -}}
{{- $component := .component -}}
{{- $values := .values -}}
{{- $rollout := and .worker (include "muster.rollouts" $root) -}}
{{- if $rollout }}
{{- /* The operator owns the per-build Deployments; helm owns this resource only
(docs/architecture.md, "Rollouts"). */}}
{{- with $root.Values.versioning }}
apiVersion: muster.io/v1alpha1
kind: WorkerDeployment
metadata:
  name: {{ include "muster.componentName" (list $root $component) }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "muster.labels" (list $root $component) | nindent 4 }}
spec:
  deploymentName: {{ printf "%s-%s" (include "muster.fullname" $root) $component | replace "." "-" | quote }}
  settingsPrefix: {{ $.prefix }}
  container: {{ $component }}
  {{- with .buildId }}
  buildId: {{ . | quote }}
  {{- end }}
  {{- if not (and $values.autoscaling $values.autoscaling.enabled) }}
  replicas: {{ hasKey $values "replicaCount" | ternary $values.replicaCount 1 }}
  {{- end }}
  rollout:
    strategy: {{ .rollout.strategy }}
    {{- with .rollout.steps }}
    steps:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    replayGate:
      workflows: {{ $.gate | default list | toJson }}
      samplePerType: {{ .rollout.replayGateSamplePerType }}
      timeout: {{ .rollout.replayGateTimeout }}
    autoRollback:
      enabled: {{ .rollout.autoRollback }}
      window: {{ .rollout.autoRollbackWindow }}
  sunset:
    scaledownDelay: {{ .sunset.scaledownDelay }}
    deleteDelay: {{ .sunset.deleteDelay }}
{{- end }}
{{- else }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "muster.componentName" (list $root $component) }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "muster.labels" (list $root $component) | nindent 4 }}
spec:
  {{- if not (and $values.autoscaling $values.autoscaling.enabled) }}
  replicas: {{ hasKey $values "replicaCount" | ternary $values.replicaCount 1 }}
  {{- end }}
  {{- if .recreate }}
  strategy:
    type: Recreate
  {{- end }}
  selector:
    matchLabels:
      {{- include "muster.selectorLabels" (list $root $component) | nindent 6 }}
{{- end }}
  template:
    metadata:
      {{- include "muster.podMetadata" (list $root $component) | nindent 6 }}
    spec:
      automountServiceAccountToken: false
      {{- include "muster.podSpecCommon" (list $root $values) | nindent 6 }}
      terminationGracePeriodSeconds: {{ .grace | default 45 }}
      containers:
        - name: {{ $component }}
          image: {{ include "muster.image" (list $root $component $values.image) }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          ports:
            - name: metrics
              containerPort: 9090
            {{- with .ports }}
            {{- . | nindent 12 }}
            {{- end }}
          env:
            {{- include "muster.temporalEnv" $root | nindent 12 }}
            {{- with .env }}
            {{- . | nindent 12 }}
            {{- end }}
            {{- include "muster.commonEnv" (list $root .prefix $values.env) | nindent 12 }}
          {{- include "muster.probes" $root | nindent 10 }}
          resources:
            {{- toYaml $values.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.common.securityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- include "muster.temporalMounts" $root | nindent 12 }}
            {{- with .mounts }}
            {{- . | nindent 12 }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir: {}
        {{- include "muster.temporalVolumes" $root | nindent 8 }}
        {{- with .volumes }}
        {{- . | nindent 8 }}
        {{- end }}
{{- end }}

{{/* Volumes of the directory and the published policies (approval worker, gateway). */}}
{{- define "muster.approvalDataVolumes" -}}
- name: directory
  configMap:
    name: {{ include "muster.componentName" (list . "directory") }}
- name: policies
  configMap:
    name: {{ include "muster.policiesConfigMap" . }}
    # Written by the operator once it has published a policy; empty until then.
    optional: true
{{- end }}

{{- define "muster.approvalDataMounts" -}}
- name: directory
  mountPath: /etc/muster/directory
  readOnly: true
- name: policies
  mountPath: /etc/muster/policies
  readOnly: true
{{- end }}

{{/* The operator's admission webhook: its Service, serving-certificate Secret, and the
ValidatingWebhookConfiguration (cluster-scoped, so named after the release). */}}
{{- define "muster.webhookService" -}}
{{- include "muster.componentName" (list . "operator-webhook") }}
{{- end }}

{{- define "muster.webhookSecret" -}}
{{- include "muster.componentName" (list . "operator-webhook-tls") }}
{{- end }}

{{- define "muster.webhookConfiguration" -}}
{{- include "muster.componentName" (list . "operator") }}
{{- end }}

{{/* The names the API server may call the webhook Service by (the serving certificate's). */}}
{{- define "muster.webhookDnsNames" -}}
{{- $service := include "muster.webhookService" . -}}
{{- list $service (printf "%s.%s" $service .Release.Namespace) (printf "%s.%s.svc" $service .Release.Namespace) | toJson }}
{{- end }}

{{- define "muster.webhookEnabled" -}}
{{- if and .Values.operator.enabled .Values.operator.webhook.enabled }}true{{ end }}
{{- end }}
