package injector

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	jsonpatch "gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// maxReviewBytes bounds an AdmissionReview body (pods are well under it).
const maxReviewBytes = 3 << 20

// Webhook serves the mutating admission webhook for pod creation.
type Webhook struct {
	// Config is the mesh's injection configuration.
	Config Config
	// NamespaceAnnotations returns a namespace's annotations.
	NamespaceAnnotations func(ctx context.Context, name string) (map[string]string, error)
	// BeforeInject runs before a pod of the namespace is meshed (the
	// controller makes sure the trust bundle is there); nil means nothing.
	BeforeInject func(ctx context.Context, namespace string) error
	// Log receives decisions. Default: discard.
	Log *slog.Logger
}

// jsonPatch is the RFC 6902 patch from one pod to another.
func jsonPatch(orig, patched *corev1.Pod) ([]jsonpatch.Operation, error) {
	a, err := json.Marshal(orig)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(patched)
	if err != nil {
		return nil, err
	}
	return jsonpatch.CreatePatch(a, b)
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
	nsAnnotations, err := h.NamespaceAnnotations(ctx, req.Namespace)
	if err != nil {
		// Without the namespace's opinion, only the pod's own counts.
		log.Warn("namespace lookup failed", "namespace", req.Namespace, "error", err)
	}
	patched, reason, err := Patch(&pod, req.Namespace, nsAnnotations, h.Config)
	name := pod.Name
	if name == "" {
		name = pod.GenerateName + "*"
	}
	if err != nil {
		log.Info("pod refused: it asked for a proxy with invalid configuration", "namespace", req.Namespace, "pod", name, "error", err)
		return refuse("meshctl: " + err.Error())
	}
	if patched == nil {
		if HasProxy(&pod) && h.BeforeInject != nil && (req.DryRun == nil || !*req.DryRun) {
			// Injected by hand (meshctl inject --manual): it needs the trust bundle too.
			if err := h.BeforeInject(ctx, req.Namespace); err != nil {
				log.Warn("could not prepare the namespace; the pod waits for its trust bundle", "namespace", req.Namespace, "error", err)
			}
		}
		log.Debug("pod not injected", "namespace", req.Namespace, "pod", name, "reason", reason)
		return allow
	}
	if h.BeforeInject != nil && (req.DryRun == nil || !*req.DryRun) { // sideEffects: NoneOnDryRun
		if err := h.BeforeInject(ctx, req.Namespace); err != nil {
			log.Warn("could not prepare the namespace; the pod waits for its trust bundle", "namespace", req.Namespace, "error", err)
		}
	}
	ops, err := jsonPatch(&pod, patched)
	if err != nil {
		return refuse("meshctl: could not build the patch: " + err.Error())
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return refuse("meshctl: could not encode the patch: " + err.Error())
	}
	pt := admissionv1.PatchTypeJSONPatch
	log.Info("pod injected", "namespace", req.Namespace, "pod", name, "workload", patched.Labels[WorkloadLabel])
	return &admissionv1.AdmissionResponse{Allowed: true, Patch: patch, PatchType: &pt}
}

func refuse(msg string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusBadRequest, Reason: metav1.StatusReasonBadRequest, Message: msg,
	}}
}
