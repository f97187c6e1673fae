package injector

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/meshctl/meshctl/controller/trustbundle"
	"github.com/meshctl/meshctl/install/podpatch"
	"github.com/meshctl/meshctl/internal/meshnames"
)

// testConfig is the injection configuration of the webhook's tests.
var testConfig = podpatch.Config{ProxyImage: "meshctl/proxy:dev", ProxyVersion: "dev"}

// fixtureDir holds the fixture pods, shared with podpatch's golden tests.
var fixtureDir = filepath.Join("..", "..", "install", "podpatch", "testdata")

// fixture is a pod on its way to creation, with its namespace.
type fixture struct {
	Namespace     string            `json:"namespace"`
	NSAnnotations map[string]string `json:"nsAnnotations"`
	Pod           corev1.Pod        `json:"pod"`
}

func newWebhook(prepared *[]string) *Webhook {
	return &Webhook{
		Config:        testConfig,
		NamespaceWait: 20 * time.Millisecond,
		NamespaceAnnotations: func(_ context.Context, ns string) (map[string]string, error) {
			switch ns {
			case "meshed":
				return map[string]string{meshnames.InjectAnnotation: "enabled"}, nil
			case "plain", "shop":
				return nil, nil
			}
			return nil, apierrors.NewNotFound(corev1.Resource("namespaces"), ns)
		},
		BeforeInject: func(_ context.Context, ns string) error {
			*prepared = append(*prepared, ns)
			return nil
		},
	}
}

func podReview(t *testing.T, ns, fixtureName string, op admissionv1.Operation) []byte {
	t.Helper()
	return review(t, ns, fixturePod(t, fixtureName), op)
}

func fixturePod(t *testing.T, fixtureName string) *corev1.Pod {
	t.Helper()
	var fx fixture
	data, err := os.ReadFile(filepath.Join(fixtureDir, fixtureName+".json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &fx); err != nil {
		t.Fatal(err)
	}
	return &fx.Pod
}

func review(t *testing.T, ns string, pod *corev1.Pod, op admissionv1.Operation) []byte {
	t.Helper()
	raw, _ := json.Marshal(pod)
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "42", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Operation: op,
			Namespace: ns, Object: runtime.RawExtension{Raw: raw},
		},
	}
	b, _ := json.Marshal(review)
	return b
}

func call(t *testing.T, h http.Handler, body []byte) (int, admissionv1.AdmissionReview, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/inject", bytes.NewReader(body)))
	var out admissionv1.AdmissionReview
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return rec.Code, out, rec.Body.String()
}

func TestWebhookInjectsPodsOfMeshedNamespaces(t *testing.T) {
	var prepared []string
	h := newWebhook(&prepared)
	code, out, _ := call(t, h, podReview(t, "meshed", "not-enabled", admissionv1.Create))
	if code != 200 || out.Response == nil || !out.Response.Allowed || out.Response.UID != "42" || out.Response.PatchType == nil {
		t.Fatalf("code %d response %+v", code, out.Response)
	}
	if !strings.Contains(string(out.Response.Patch), "mesh-proxy") || len(prepared) != 1 || prepared[0] != "meshed" {
		t.Errorf("patch %s, prepared %v", out.Response.Patch, prepared)
	}
	// Other namespaces, updates: allowed untouched.
	for _, tc := range []struct {
		ns string
		op admissionv1.Operation
	}{{"plain", admissionv1.Create}, {"meshed", admissionv1.Update}} {
		_, out, _ := call(t, h, podReview(t, tc.ns, "not-enabled", tc.op))
		if !out.Response.Allowed || out.Response.Patch != nil {
			t.Errorf("%s %s: %+v", tc.ns, tc.op, out.Response)
		}
	}
}

func TestWebhookRefusesInvalidConfigurationWithTheReason(t *testing.T) {
	var prepared []string
	_, out, _ := call(t, newWebhook(&prepared), podReview(t, "shop", "invalid-resources", admissionv1.Create))
	if out.Response.Allowed || !strings.Contains(out.Response.Result.Message, "proxy-memory-limit") {
		t.Errorf("response %+v", out.Response)
	}
}

func TestWebhookAnswersGarbageWithA400(t *testing.T) {
	var prepared []string
	h := newWebhook(&prepared)
	for name, body := range map[string][]byte{
		"not JSON":   []byte("{{{"),
		"no request": []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`),
	} {
		code, _, text := call(t, h, body)
		if code < 400 || code >= 500 || text == "" {
			t.Errorf("%s: %d %q", name, code, text)
		}
	}
	// A pod object that does not decode is refused, not a panic.
	bad := []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"meshed","object":{"spec":{"containers":"nope"}}}}`)
	_, out, _ := call(t, h, bad)
	if out.Response == nil || out.Response.Allowed {
		t.Errorf("undecodable pod: %+v", out.Response)
	}
}

// TestAReviewOverTheLimitIs413: a valid review of a meshed pod, padded
// (an annotation) to one byte over maxReviewBytes, gets the limit's own
// answer, 413; the same review one byte under the limit is injected.
func TestAReviewOverTheLimitIs413(t *testing.T) {
	var prepared []string
	h := newWebhook(&prepared)
	sized := func(n int) []byte {
		t.Helper()
		pod := fixturePod(t, "not-enabled")
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		pod.Annotations["example.org/padding"] = ""
		base := len(review(t, "meshed", pod, admissionv1.Create))
		pod.Annotations["example.org/padding"] = strings.Repeat("p", n-base)
		body := review(t, "meshed", pod, admissionv1.Create)
		if len(body) != n {
			t.Fatalf("padded review is %d bytes, want %d", len(body), n)
		}
		return body
	}
	if code, out, _ := call(t, h, sized(maxReviewBytes-1)); code != 200 || out.Response == nil || !out.Response.Allowed || out.Response.Patch == nil {
		t.Fatalf("a review one byte under the limit: %d %+v, want 200 with a patch", code, out.Response)
	}
	if code, _, text := call(t, h, sized(maxReviewBytes+1)); code != http.StatusRequestEntityTooLarge {
		t.Errorf("a valid review one byte over the limit: %d %.100q…, want 413", code, text)
	}
}

// TestAForgedReviewHasNoSideEffect: anyone who can reach the webhook can
// send it a review. One naming a namespace that does not exist must create
// nothing there (the trust bundle copy is the webhook's only side effect)
// and be answered without a patch; so must one for a pod that does not ask
// for the mesh. The webhook is wired to the real copier and a namespace
// cache, as the controller wires it.
func TestAForgedReviewHasNoSideEffect(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	client := fake.NewClientset(
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "mesh-trust-roots", Namespace: "meshctl"}, Data: map[string]string{"roots.pem": "ROOTS"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "meshed", Annotations: map[string]string{meshnames.InjectAnnotation: "enabled"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "plain"}},
	)
	copies := trustbundle.NewFactory(client, "mesh-trust-roots", 0)
	copier, err := trustbundle.New(client, copies, "meshctl", "mesh-trust-roots", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	cluster := informers.NewSharedInformerFactory(client, 0)
	namespaces := cluster.Core().V1().Namespaces()
	namespaces.Informer()
	copies.Start(ctx.Done())
	cluster.Start(ctx.Done())
	defer func() { cancel(); copies.Shutdown(); cluster.Shutdown() }()
	copies.WaitForCacheSync(ctx.Done())
	cluster.WaitForCacheSync(ctx.Done())
	h := &Webhook{
		Config: testConfig, NamespaceWait: 50 * time.Millisecond, BeforeInject: copier.Ensure,
		NamespaceAnnotations: func(_ context.Context, name string) (map[string]string, error) {
			ns, err := namespaces.Lister().Get(name)
			if err != nil {
				return nil, err
			}
			return ns.Annotations, nil
		},
	}
	creates := func() []string {
		var out []string
		for _, a := range client.Actions() {
			if a.GetVerb() == "create" || a.GetVerb() == "update" {
				out = append(out, a.GetNamespace()+"/"+a.GetResource().Resource)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name, ns, fixture string
		allowed           bool
	}{
		// Refused (it may be a namespace created a moment ago), but with nothing done.
		{"a namespace that does not exist", "ghost", "pod-enabled", false},
		{"an existing namespace, a pod that does not ask", "plain", "already-injected", true},
		{"an existing namespace, a pod that does not ask (not injected)", "plain", "not-enabled", true},
	} {
		code, out, body := call(t, h, podReview(t, tc.ns, tc.fixture, admissionv1.Create))
		if code != 200 || out.Response == nil || out.Response.Allowed != tc.allowed || out.Response.Patch != nil || out.Response.UID != "42" {
			t.Errorf("%s: %d %s, want allowed=%v without a patch", tc.name, code, body, tc.allowed)
		}
		if got := creates(); len(got) != 0 {
			t.Errorf("%s: the webhook wrote %v", tc.name, got)
		}
	}
	if _, err := client.CoreV1().ConfigMaps("ghost").Get(ctx, "mesh-trust-roots", metav1.GetOptions{}); err == nil {
		t.Error("a trust bundle ConfigMap was made in a namespace that does not exist")
	}
	// The same pod in a real, meshed namespace: patched, and the copy made.
	_, out, _ := call(t, h, podReview(t, "meshed", "pod-enabled", admissionv1.Create))
	if out.Response == nil || out.Response.Patch == nil {
		t.Fatalf("a pod in a meshed namespace was not injected: %+v", out.Response)
	}
	if cm, err := client.CoreV1().ConfigMaps("meshed").Get(ctx, "mesh-trust-roots", metav1.GetOptions{}); err != nil || cm.Data["roots.pem"] != "ROOTS" {
		t.Errorf("no trust bundle copy in the meshed namespace: %v", err)
	}
}

func TestWebhookWaitsBrieflyForANewNamespace(t *testing.T) {
	var prepared []string
	h := newWebhook(&prepared)
	h.NamespaceWait = 5 * time.Second
	known := time.Now().Add(100 * time.Millisecond)
	inner := h.NamespaceAnnotations
	h.NamespaceAnnotations = func(ctx context.Context, ns string) (map[string]string, error) {
		if ns == "fresh" && time.Now().After(known) {
			return map[string]string{meshnames.InjectAnnotation: "enabled"}, nil
		}
		return inner(ctx, ns)
	}
	_, out, _ := call(t, h, podReview(t, "fresh", "not-enabled", admissionv1.Create))
	if out.Response == nil || out.Response.Patch == nil || len(prepared) != 1 {
		t.Errorf("a pod of a namespace the cache learnt of 100ms late: %+v, prepared %v", out.Response, prepared)
	}
}

// TestAPodOfANamespaceNotKnownYetIsRefusedUnlessItOptsOut: a namespace
// created just before its pods may reach the controller's cache after them.
// Allowing such a pod unmodified would start it without the proxy it asks
// for; it is refused with a message to retry (a ReplicaSet retries by
// itself), unless it clearly does not want the mesh.
func TestAPodOfANamespaceNotKnownYetIsRefusedUnlessItOptsOut(t *testing.T) {
	var prepared []string
	h := newWebhook(&prepared)
	for _, tc := range []struct {
		name, fixture string
		change        func(*corev1.Pod)
		allowed       bool
	}{
		{"asks for the mesh", "pod-enabled", nil, false},
		{"already injected by hand", "already-injected", nil, false},
		{"says nothing: its namespace decides", "not-enabled", nil, false},
		{"an invalid inject value", "invalid-inject-value", nil, false},
		{"opts out", "pod-disabled-in-enabled-namespace", nil, true},
		{"on the host network", "host-network", nil, true},
		{"labelled disabled", "not-enabled", func(p *corev1.Pod) { p.Labels = map[string]string{meshnames.DisabledLabel: "disabled"} }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := fixturePod(t, tc.fixture)
			if tc.change != nil {
				tc.change(pod)
			}
			_, out, body := call(t, h, review(t, "brand-new", pod, admissionv1.Create))
			if out.Response == nil || out.Response.Allowed != tc.allowed || out.Response.Patch != nil {
				t.Fatalf("%s, want allowed=%v without a patch", body, tc.allowed)
			}
			if !tc.allowed {
				msg := out.Response.Result.Message
				if !strings.Contains(msg, `namespace "brand-new" is not known to the mesh yet`) || !strings.Contains(msg, "retry") {
					t.Errorf("message %q does not say the namespace is not known yet and to retry", msg)
				}
			}
		})
	}
	if len(prepared) != 0 {
		t.Errorf("namespaces prepared: %v", prepared)
	}
	// The control plane's namespace is never meshed.
	_, out, _ := call(t, h, podReview(t, "meshctl", "pod-enabled", admissionv1.Create))
	if out.Response == nil || !out.Response.Allowed {
		t.Errorf("a control-plane pod: %+v", out.Response)
	}
}

// TestAnIgnoredAnnotationIsWarnedAbout: an invalid cluster-networks
// annotation does not stop the injection (the cluster's networks apply);
// the API server passes the webhook's warning on to whoever created the pod.
func TestAnIgnoredAnnotationIsWarnedAbout(t *testing.T) {
	var prepared []string
	pod := fixturePod(t, "invalid-cluster-networks")
	_, out, body := call(t, newWebhook(&prepared), review(t, "shop", pod, admissionv1.Create))
	if out.Response == nil || !out.Response.Allowed || out.Response.Patch == nil {
		t.Fatalf("%s, want injected", body)
	}
	if len(out.Response.Warnings) != 1 || !strings.Contains(out.Response.Warnings[0], meshnames.ClusterNetworks) || !strings.Contains(out.Response.Warnings[0], "not-a-cidr") {
		t.Errorf("warnings %q, want one naming the annotation and the bad value", out.Response.Warnings)
	}
	_, out, _ = call(t, newWebhook(&prepared), podReview(t, "shop", "cluster-networks", admissionv1.Create))
	if out.Response == nil || out.Response.Patch == nil || len(out.Response.Warnings) != 0 {
		t.Errorf("a valid annotation: %+v", out.Response)
	}
}

func TestPodsLabelledDisabledAreLeftAlone(t *testing.T) {
	var prepared []string
	pod := fixturePod(t, "pod-enabled")
	pod.Labels = map[string]string{meshnames.DisabledLabel: "disabled"}
	_, out, _ := call(t, newWebhook(&prepared), review(t, "meshed", pod, admissionv1.Create))
	if out.Response == nil || !out.Response.Allowed || out.Response.Patch != nil || len(prepared) != 0 {
		t.Errorf("a pod labelled %s=disabled: %+v, prepared %v", meshnames.DisabledLabel, out.Response, prepared)
	}
}

func FuzzWebhook(f *testing.F) {
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"meshed","object":{"metadata":{"annotations":{"meshctl.io/inject":"enabled"}},"spec":{"containers":[{"name":"a","image":"b"}]}}}}`))
	var prepared []string
	h := newWebhook(&prepared)
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/inject", bytes.NewReader(body)))
		if rec.Code == 200 {
			var out admissionv1.AdmissionReview
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
				t.Fatalf("200 without a response: %s", rec.Body)
			}
		}
	})
}
