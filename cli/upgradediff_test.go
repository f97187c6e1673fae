package cli

import (
	"encoding/base64"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestDiffTextShowsNoSecret: a Secret's data, stringData and annotations
// (kubectl's last-applied-configuration holds the key) show as digests;
// what the API server keeps for itself is left out; other kinds are shown
// as they are.
func TestDiffTextShowsNoSecret(t *testing.T) {
	key := "-----BEGIN EC PRIVATE KEY-----\\nMHcCAQEEIB...\\n-----END EC PRIVATE KEY-----"
	secret := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{"name": "mesh-issuer", "namespace": "meshctl", "resourceVersion": "42", "uid": "u",
			"managedFields": []any{map[string]any{"manager": "meshctl"}},
			"annotations":   map[string]any{"kubectl.kubernetes.io/last-applied-configuration": `{"data":{"tls.key":"` + base64.StdEncoding.EncodeToString([]byte(key)) + `"}}`},
			"labels":        map[string]any{"app.kubernetes.io/version": "v1"}},
		"data":       map[string]any{"tls.key": base64.StdEncoding.EncodeToString([]byte(key))},
		"stringData": map[string]any{"extra": key},
	}}
	text := diffText(secret)
	for _, leak := range []string{"BEGIN", base64.StdEncoding.EncodeToString([]byte(key))[:20], "resourceVersion", "managedFields", "uid:"} {
		if strings.Contains(text, leak) {
			t.Errorf("diffText shows %q:\n%s", leak, text)
		}
	}
	if !strings.Contains(text, "sha256") || !strings.Contains(text, "app.kubernetes.io/version: v1") {
		t.Errorf("diffText lost the digests or the labels:\n%s", text)
	}
	cm := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "x"}, "data": map[string]any{"roots.pem": "CERT"}}}
	if !strings.Contains(diffText(cm), "roots.pem: CERT") {
		t.Errorf("a ConfigMap's data is hidden:\n%s", diffText(cm))
	}
}
