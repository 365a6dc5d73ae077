{{/*
Labels of every object: the three the kustomize install sets, plus Helm's two standard ones.
Call with (dict "root" $ "component" "webhook"); an empty component leaves that label out.
*/}}
{{- define "envoy-injector.labels" -}}
app.kubernetes.io/name: envoy-injector
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
app.kubernetes.io/part-of: envoy-injector
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{/* Labels of the Pods (and selectors): the kustomize ones only, so selectors never change. */}}
{{- define "envoy-injector.podLabels" -}}
app.kubernetes.io/name: envoy-injector
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: envoy-injector
{{- end }}

{{/* The injector's image: repository@digest when a digest is given, else repository:tag. */}}
{{- define "envoy-injector.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}
{{- end }}

{{/* Pod-level scheduling and pull secrets for a workload's values (webhook, certs). */}}
{{- define "envoy-injector.scheduling" -}}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The namespaces the server never mutates besides its own: the system ones and the extra ones. */}}
{{- define "envoy-injector.systemNamespaces" -}}
{{- toJson (concat (list "kube-system" "kube-public" "kube-node-lease") .Values.webhook.excludedNamespaces) -}}
{{- end }}

{{/* The cert job's Pod spec, shared by the install/upgrade Job and the CronJob. */}}
{{- define "envoy-injector.certsPod" -}}
metadata:
  labels:
    {{- include "envoy-injector.podLabels" (dict "component" "certs") | nindent 4 }}
spec:
  serviceAccountName: envoy-injector-certs
  # No Docker-link variables for the namespace's Services: nothing we run reads them, and
  # Service "envoy-injector" would otherwise give every container ENVOY_INJECTOR_PORT.
  enableServiceLinks: false
  automountServiceAccountToken: true   # the job talks to the API server
  restartPolicy: Never
  {{- with include "envoy-injector.scheduling" (dict "root" . "values" .Values.certs) | trim }}
  {{- . | nindent 2 }}
  {{- end }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 10001
    runAsGroup: 10001
    seccompProfile:
      type: RuntimeDefault
  containers:
    - name: certs
      image: {{ include "envoy-injector.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - certs
        - --namespace
        - {{ .Release.Namespace }}
        - --service
        - envoy-injector
        - --secret
        - envoy-injector-tls
        - --ca-secret
        - envoy-injector-ca
        - --webhook-config
        - envoy-injector
        {{- with .Values.certs.caTTL }}
        - --ca-ttl
        - {{ . | quote }}
        {{- end }}
        {{- with .Values.certs.certTTL }}
        - --cert-ttl
        - {{ . | quote }}
        {{- end }}
        {{- with .Values.certs.renewBefore }}
        - --renew-before
        - {{ . | quote }}
        {{- end }}
      resources:
        {{- toYaml .Values.certs.resources | nindent 8 }}
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        runAsGroup: 10001
        readOnlyRootFilesystem: true
        allowPrivilegeEscalation: false
        privileged: false
        capabilities:
          drop: [ALL]
        seccompProfile:
          type: RuntimeDefault
      volumeMounts:
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: 16Mi
{{- end }}

{{/* The server's config.yaml (see webhook/settings.py for the keys it accepts). */}}
{{- define "envoy-injector.config" -}}
{{- dict "sidecar" .Values.sidecar "policy" .Values.policy "excludedNamespaces" (include "envoy-injector.systemNamespaces" . | fromJsonArray) "bootstrap" .Values.bootstrap | toYaml }}
{{- end }}

{{/* The install Job's name: envoy-injector-certs-<hash of its (immutable) Pod template>. */}}
{{- define "envoy-injector.certsJobName" -}}
envoy-injector-certs-{{ include "envoy-injector.certsPod" . | sha256sum | trunc 8 }}
{{- end }}
