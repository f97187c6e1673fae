package injector

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshctl/meshctl/install/podpatch"
	"github.com/meshctl/meshctl/internal/meshnames"
)

// maxReviewBytes bounds an AdmissionReview body (pods are well under it).
const maxReviewBytes = 3 << 20

// Webhook serves the mutating admission webhook for pod creation.
//
// Anyone who can reach it can send it a review, so it acts only on reviews
// the API server could have sent: for a namespace that exists (in the
// controller's cache) and a pod that asks for the mesh (its own or its
// namespace's inject annotation). Anything else is answered with no side
// effect: "allowed, as it is", except a pod of a namespace the cache does
// not know (yet), which is refused unless it clearly does not want the
// mesh (created now, it could start without a proxy it should have).
type Webhook struct {
	// Config is the mesh's injection configuration.
	Config podpatch.Config
	// NamespaceAnnotations returns a namespace's annotations, or an error
	// when the namespace is not known (not in the cache).
	NamespaceAnnotations func(ctx context.Context, name string) (map[string]string, error)
	// NamespaceWait is how long a review waits for an unknown namespace to
	// appear (a namespace created just before its first pod may reach the
	// cache a moment after the pod's review); after it, a pod that may want
	// the mesh is refused, to be retried. Default: 2s.
	NamespaceWait time.Duration
	// BeforeInject runs before a pod of the namespace is meshed (the
	// controller makes sure the trust bundle is there); nil means nothing.
	BeforeInject func(ctx context.Context, namespace string) error
	// Log receives decisions. Default: discard.
	Log *slog.Logger
}

// namespace returns a namespace's annotations, waiting up to NamespaceWait
// for one the cache does not know yet.
func (h *Webhook) namespace(ctx context.Context, name string) (map[string]string, error) {
	wait := h.NamespaceWait
	if wait == 0 {
		wait = 2 * time.Second
	}
	deadline := time.Now().Add(wait)
	for {
		a, err := h.NamespaceAnnotations(ctx, name)
		if err == nil || time.Now().After(deadline) {
			return a, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(min(50*time.Millisecond, wait)):
		}
	}
}

// ServeHTTP answers an AdmissionReview. Malformed input gets a 400 with
// what was wrong; a pod that cannot be meshed as asked is refused with the
// reason; any other pod is allowed, injected or as it was.
func (h *Webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := h.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if r.Method != http.MethodPost {
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxReviewBytes))
	if err != nil {
		http.Error(w, "read the AdmissionReview: "+err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		http.Error(w, "decode the AdmissionReview: "+err.Error(), http.StatusBadRequest)
		return
	}
	req := review.Request
	if req == nil {
		http.Error(w, "the AdmissionReview has no request", http.StatusBadRequest)
		return
	}
	resp := h.review(r.Context(), req, log)
	resp.UID = req.UID
	out := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Response: resp,
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func (h *Webhook) review(ctx context.Context, req *admissionv1.AdmissionRequest, log *slog.Logger) *admissionv1.AdmissionResponse {
	allow := &admissionv1.AdmissionResponse{Allowed: true}
	if req.Kind.Kind != "Pod" || req.Kind.Group != "" || req.Operation != admissionv1.Create {
		return allow
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return refuse(fmt.Sprintf("meshctl: the pod could not be decoded: %v", err))
	}
	name := pod.Name
	if name == "" {
		name = pod.GenerateName + "*"
	}
	if pod.Labels[meshnames.DisabledLabel] == "disabled" {
		log.Debug("pod not injected", "namespace", req.Namespace, "pod", name, "reason", "labelled "+meshnames.DisabledLabel+"=disabled")
		return allow
	}
	if req.Namespace == "" {
		return allow
	}
	nsAnnotations, err := h.namespace(ctx, req.Namespace)
	if err != nil {
		// Not in the cache: a namespace created a moment ago, or a review
		// the API server did not send. Nothing is done for it. A pod that
		// may want the mesh is refused rather than created without a proxy
		// (a namespace's inject annotation could not be read); whoever
		// creates it retries (a ReplicaSet by itself). A pod that clearly
		// does not want the mesh is let through.
		if !mayWantMesh(&pod, req.Namespace, h.Config) {
			log.Debug("pod of a namespace not known yet let through: it does not ask for the mesh", "namespace", req.Namespace, "pod", name, "error", err)
			return allow
		}
		log.Warn("pod refused: its namespace is not known to the mesh yet", "namespace", req.Namespace, "pod", name, "error", err)
		return unknownNamespace(req.Namespace)
	}
	patched, reason, err := podpatch.Patch(&pod, req.Namespace, nsAnnotations, h.Config)
	if err != nil {
		log.Info("pod refused: it asked for a proxy with invalid configuration", "namespace", req.Namespace, "pod", name, "error", err)
		return refuse("meshctl: " + err.Error())
	}
	sideEffects := h.BeforeInject != nil && (req.DryRun == nil || !*req.DryRun) // sideEffects: NoneOnDryRun
	if patched == nil {
		// Injected by hand (meshctl inject --manual, which adds the inject
		// annotation): it needs the trust bundle too.
		if want, _ := podpatch.Wanted(pod.Annotations[meshnames.InjectAnnotation], nsAnnotations[meshnames.InjectAnnotation]); want && podpatch.HasProxy(&pod) && sideEffects {
			if err := h.BeforeInject(ctx, req.Namespace); err != nil {
				log.Warn("could not prepare the namespace; the pod waits for its trust bundle", "namespace", req.Namespace, "error", err)
			}
		}
		log.Debug("pod not injected", "namespace", req.Namespace, "pod", name, "reason", reason)
		return allow
	}
	if sideEffects {
		if err := h.BeforeInject(ctx, req.Namespace); err != nil {
			log.Warn("could not prepare the namespace; the pod waits for its trust bundle", "namespace", req.Namespace, "error", err)
		}
	}
	ops, err := podpatch.JSONPatch(&pod, patched)
	if err != nil {
		return refuse("meshctl: could not build the patch: " + err.Error())
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return refuse("meshctl: could not encode the patch: " + err.Error())
	}
	pt := admissionv1.PatchTypeJSONPatch
	warnings := podpatch.Warnings(&pod, h.Config)
	for _, w := range warnings {
		log.Warn("pod injected with part of its configuration ignored", "namespace", req.Namespace, "pod", name, "warning", w)
	}
	log.Info("pod injected", "namespace", req.Namespace, "pod", name, "workload", patched.Labels[meshnames.WorkloadLabel])
	return &admissionv1.AdmissionResponse{Allowed: true, Patch: patch, PatchType: &pt, Warnings: warnings}
}

// mayWantMesh reports whether a pod may be meshed when its namespace's
// annotations are not known: only a pod that opts out itself, runs on the
// host network, or lives in the control plane's namespace clearly is not.
func mayWantMesh(pod *corev1.Pod, namespace string, cfg podpatch.Config) bool {
	cfg = cfg.WithDefaults()
	return pod.Annotations[meshnames.InjectAnnotation] != "disabled" && !pod.Spec.HostNetwork && namespace != cfg.ControlPlaneNamespace
}

// unknownNamespace refuses a pod whose namespace the mesh does not know
// yet. The status is 503: the condition passes, and the message says to retry.
func unknownNamespace(ns string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusServiceUnavailable, Reason: metav1.StatusReasonServiceUnavailable,
		Message: fmt.Sprintf("meshctl: namespace %q is not known to the mesh yet (it was created a moment ago), so whether the pod gets a proxy "+
			"cannot be decided; retry in a few seconds (ReplicaSets, Jobs and other controllers retry by themselves)", ns),
	}}
}

func refuse(msg string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusBadRequest, Reason: metav1.StatusReasonBadRequest, Message: msg,
	}}
}
