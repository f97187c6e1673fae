package injector

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func newWebhook(prepared *[]string) *Webhook {
	return &Webhook{
		Config: testConfig,
		NamespaceAnnotations: func(_ context.Context, ns string) (map[string]string, error) {
			if ns == "meshed" {
				return map[string]string{InjectAnnotation: "enabled"}, nil
			}
			return nil, nil
		},
		BeforeInject: func(_ context.Context, ns string) error {
			*prepared = append(*prepared, ns)
			return nil
		},
	}
}

func podReview(t *testing.T, ns, fixtureName string, op admissionv1.Operation) []byte {
	t.Helper()
	var fx fixture
	data, err := os.ReadFile(filepath.Join("testdata", fixtureName+".json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &fx); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(fx.Pod)
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
		"too large":  bytes.Repeat([]byte("a"), maxReviewBytes+1),
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
