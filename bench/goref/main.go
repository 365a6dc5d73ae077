// Command goref is the benchmark's Go reference injector: what a Go shop would write instead
// of envoy-injector for the default sidecar, on the standard library only (net/http,
// encoding/json, crypto/tls). It makes the same decision and the same JSON Patch as
// `envoy-injector serve` with no config file and no envoy-inject.io/* annotations, and
// scripts/bench checks that its patch, applied to every bench pod, gives the same Pod as ours.
//
// It is deliberately idiomatic, not tuned: structs that name only the fields it reads (so
// encoding/json skips the rest), the patch built as Go values and marshalled once, []byte
// base64-encoded by encoding/json. It keeps no decision log and no metrics.
//
//	goref -port N -cert tls.crt -key tls.key -image IMAGE -version VERSION -namespace NS
package main

import (
	"crypto/tls"
	"encoding/json"
	"flag"
	"io"
	"log"
	"net/http"
	"strconv"
	"strings"
)

const (
	statusAnnotation = "envoy-inject.io/status"
	containerName    = "envoy-sidecar"
	volumeName       = "envoy-config-volume"
	maxBody          = 7 << 20
)

type named struct {
	Name *string `json:"name"`
}

type ownerRef struct {
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	Controller *bool  `json:"controller"`
}

type pod struct {
	Metadata struct {
		Name            string            `json:"name"`
		GenerateName    string            `json:"generateName"`
		Labels          map[string]string `json:"labels"`
		Annotations     map[string]string `json:"annotations"`
		OwnerReferences []ownerRef        `json:"ownerReferences"`
	} `json:"metadata"`
	Spec struct {
		Containers     []named `json:"containers"`
		InitContainers []named `json:"initContainers"`
		Volumes        []named `json:"volumes"`
		HostNetwork    bool    `json:"hostNetwork"`
	} `json:"spec"`
}

type review struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Request    *struct {
		UID         string                `json:"uid"`
		Kind        struct{ Kind string } `json:"kind"`
		Operation   string                `json:"operation"`
		Namespace   string                `json:"namespace"`
		SubResource string                `json:"subResource"`
		Object      *pod                  `json:"object"`
	} `json:"request"`
}

type status struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Reason  string `json:"reason,omitempty"`
}

type response struct {
	UID       string  `json:"uid"`
	Allowed   bool    `json:"allowed"`
	Status    *status `json:"status,omitempty"`
	PatchType string  `json:"patchType,omitempty"`
	Patch     []byte  `json:"patch,omitempty"` // encoding/json writes []byte as base64
}

type reply struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Response   response `json:"response"`
}

type op struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

type m = map[string]any

type injector struct {
	image, version string
	excluded       map[string]bool
}

func fieldEnv(name, path string) m {
	return m{"name": name, "valueFrom": m{"fieldRef": m{"apiVersion": "v1", "fieldPath": path}}}
}

func (in *injector) container(cluster string, native bool) m {
	c := m{
		"name":            containerName,
		"image":           in.image,
		"imagePullPolicy": "IfNotPresent",
		"command":         []string{"/usr/local/bin/envoy"},
		"args": []string{"--config-path", "/etc/envoy/envoy.yaml", "--service-cluster", cluster,
			"--service-node", "$(POD_NAME)", "--log-level", "info", "--concurrency", "2"},
		"ports": []m{{"name": "envoy-http", "containerPort": 10000, "protocol": "TCP"}},
		"env": []m{
			fieldEnv("POD_NAME", "metadata.name"),
			fieldEnv("POD_NAMESPACE", "metadata.namespace"),
			{"name": "ENVOY_ADMIN_PORT", "value": "9901"},
			{"name": "ENVOY_APP_PORT", "value": "8080"},
		},
		"resources": m{
			"requests": m{"cpu": "100m", "memory": "128Mi"},
			"limits":   m{"cpu": "500m", "memory": "256Mi"},
		},
		"volumeMounts":   []m{{"name": volumeName, "mountPath": "/etc/envoy", "readOnly": true}},
		"readinessProbe": m{"tcpSocket": m{"port": 10000}, "periodSeconds": 5, "failureThreshold": 3},
		"lifecycle":      m{"preStop": m{"sleep": m{"seconds": 5}}},
		"securityContext": m{
			"runAsNonRoot": true, "runAsUser": 101, "runAsGroup": 101,
			"allowPrivilegeEscalation": false, "privileged": false,
			"readOnlyRootFilesystem": true, "capabilities": m{"drop": []string{"ALL"}},
			"seccompProfile": m{"type": "RuntimeDefault"},
		},
		"terminationMessagePolicy": "FallbackToLogsOnError",
	}
	if native {
		c["restartPolicy"] = "Always"
		c["startupProbe"] = m{"tcpSocket": m{"port": 10000}, "periodSeconds": 1, "failureThreshold": 60}
	}
	return c
}

func (in *injector) statusValue(native bool) string {
	containers, inits := []string{containerName}, []string{}
	if native {
		containers, inits = inits, containers
	}
	b, _ := json.Marshal(m{"containers": containers, "image": in.image, "initContainers": inits,
		"version": in.version, "volumes": []string{volumeName}}) // map keys marshal sorted
	return string(b)
}

func cluster(p *pod) string {
	labels := p.Metadata.Labels
	for _, key := range []string{"app", "app.kubernetes.io/name"} {
		if labels[key] != "" {
			return labels[key]
		}
	}
	for _, o := range p.Metadata.OwnerReferences {
		if o.Controller != nil && *o.Controller && o.Name != "" {
			if hash, ok := labels["pod-template-hash"]; ok && o.Kind == "ReplicaSet" {
				if trimmed := strings.TrimSuffix(o.Name, "-"+hash); trimmed != "" {
					return trimmed
				}
			}
			return o.Name
		}
	}
	if p.Metadata.Name != "" {
		return p.Metadata.Name
	}
	if g := strings.TrimRight(p.Metadata.GenerateName, "-"); g != "" {
		return g
	}
	return "envoy-sidecar"
}

func has(items []named, name string) bool {
	for _, i := range items {
		if i.Name != nil && *i.Name == name {
			return true
		}
	}
	return false
}

// appendOp adds value at the end of the list at path, creating the list when it is absent.
func appendOp(ops []op, path string, items []named, value any, first bool) []op {
	switch {
	case items == nil:
		return append(ops, op{"add", path, []any{value}})
	case first:
		return append(ops, op{"add", path + "/0", value})
	default:
		return append(ops, op{"add", path + "/" + strconv.Itoa(len(items)), value})
	}
}

// patch is nil when the Pod passes unchanged; a non-empty string is a rejection.
func (in *injector) patch(namespace string, p *pod) ([]op, string) {
	meta, spec := &p.Metadata, &p.Spec
	if in.excluded[namespace] || meta.Labels["envoy-inject"] == "disabled" ||
		meta.Annotations["envoy-inject.io/inject"] == "false" || spec.HostNetwork {
		return nil, ""
	}
	if _, done := meta.Annotations[statusAnnotation]; done {
		return nil, ""
	}
	if has(spec.Containers, containerName) || has(spec.InitContainers, containerName) ||
		has(spec.Volumes, volumeName) {
		return nil, "the Pod already has our container or volume but no " + statusAnnotation
	}
	native := false
	for _, o := range meta.OwnerReferences {
		native = native || (o.Controller != nil && *o.Controller && o.Kind == "Job")
	}
	container := in.container(cluster(p), native)
	var ops []op
	if native {
		ops = appendOp(ops, "/spec/initContainers", spec.InitContainers, container, true)
	} else {
		ops = appendOp(ops, "/spec/containers", spec.Containers, container, false)
	}
	volume := m{"name": volumeName, "configMap": m{"name": "envoy-config",
		"items": []m{{"key": "envoy.yaml", "path": "envoy.yaml"}}}}
	ops = appendOp(ops, "/spec/volumes", spec.Volumes, volume, false)
	if meta.Annotations == nil {
		ops = append(ops, op{"add", "/metadata/annotations", m{statusAnnotation: in.statusValue(native)}})
	} else {
		ops = append(ops, op{"add", "/metadata/annotations/envoy-inject.io~1status", in.statusValue(native)})
	}
	return ops, ""
}

func (in *injector) mutate(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	var rev review
	if err := json.NewDecoder(io.LimitReader(r.Body, maxBody)).Decode(&rev); err != nil ||
		rev.Kind != "AdmissionReview" || rev.APIVersion != "admission.k8s.io/v1" ||
		rev.Request == nil || rev.Request.UID == "" {
		http.Error(w, "expected an AdmissionReview of apiVersion admission.k8s.io/v1", http.StatusBadRequest)
		return
	}
	req := rev.Request
	out := reply{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview",
		Response: response{UID: req.UID, Allowed: true}}
	if req.Kind.Kind == "Pod" && req.Operation == "CREATE" && req.SubResource == "" && req.Object != nil {
		ops, rejection := in.patch(req.Namespace, req.Object)
		if rejection != "" {
			out.Response.Allowed = false
			out.Response.Status = &status{Code: 400, Message: rejection, Reason: "BadRequest"}
		} else if ops != nil {
			encoded, err := json.Marshal(ops)
			if err != nil {
				http.Error(w, "internal error", http.StatusInternalServerError)
				return
			}
			out.Response.PatchType, out.Response.Patch = "JSONPatch", encoded
		}
	}
	body, err := json.Marshal(out)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

func main() {
	host := flag.String("host", "127.0.0.1", "address to bind")
	port := flag.Int("port", 8443, "port to bind")
	cert := flag.String("cert", "", "serving certificate (PEM)")
	key := flag.String("key", "", "its private key (PEM)")
	image := flag.String("image", "envoyproxy/envoy:v1.40.0", "the sidecar image")
	version := flag.String("version", "0.1.0", "the injector version recorded in the status annotation")
	own := flag.String("namespace", "envoy-injector", "the injector's own namespace, never mutated")
	flag.Parse()
	in := &injector{image: *image, version: *version, excluded: map[string]bool{
		"kube-system": true, "kube-public": true, "kube-node-lease": true, *own: true}}
	mux := http.NewServeMux()
	mux.HandleFunc("/mutate", in.mutate)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	server := &http.Server{
		Addr:    *host + ":" + strconv.Itoa(*port),
		Handler: mux,
		// HTTP/1.1 only, as kube-apiserver speaks to webhooks and as the Python server offers.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		TLSConfig:    &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}},
	}
	log.Fatal(server.ListenAndServeTLS(*cert, *key))
}
