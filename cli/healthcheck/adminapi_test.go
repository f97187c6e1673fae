package healthcheck

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// TestAdminAPICheckSaysWhyItIsUnavailable: the check passes only when the
// APIService is Available and the API server answers for its group version,
// and otherwise repeats the aggregator's reason.
func TestAdminAPICheckSaysWhyItIsUnavailable(t *testing.T) {
	body, routed := "", false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if routed && r.URL.Path == "/apis/admin.meshctl.io/v1alpha1" {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"kind":"APIResourceList","groupVersion":"admin.meshctl.io/v1alpha1"}`)
			return
		}
		if body == "" || r.URL.Path != "/apis/apiregistration.k8s.io/v1/apiservices/v1alpha1.admin.meshctl.io" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, body)
	}))
	defer srv.Close()
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	check := adminAPICheck()
	env := &Env{Client: cs}
	for _, c := range []struct {
		body   string
		routed bool
		want   string
	}{
		{"", false, "does not exist"},
		{`{"status":{"conditions":[{"type":"Available","status":"False","reason":"MissingEndpoints","message":"no addresses"}]}}`, true, "MissingEndpoints: no addresses"},
		// Available, but the API server does not route to it yet.
		{`{"status":{"conditions":[{"type":"Available","status":"True"}]}}`, false, "does not answer for admin.meshctl.io/v1alpha1 yet"},
		{`{"status":{"conditions":[{"type":"Available","status":"True"}]}}`, true, ""},
	} {
		body, routed = c.body, c.routed
		err := check.Run(context.Background(), env)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("APIService %q: %v, want %q", c.body, err, c.want)
		}
	}
}
