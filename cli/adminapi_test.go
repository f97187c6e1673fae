package cli

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshctl/meshctl/cli/tapstream"
)

// TestProxyEndpointsGoThroughTheAdminAPI: tap, identity and renew reach a
// pod through admin.meshctl.io (a tap as a watch), never pods/proxy, and a
// refusal names the ClusterRole to ask for.
func TestProxyEndpointsGoThroughTheAdminAPI(t *testing.T) {
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.Method+" "+r.URL.RequestURI())
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasSuffix(r.URL.Path, "/identity"):
			io.WriteString(w, `{"spiffe_id":"spiffe://cluster.local/ns/demo/sa/web","serial":"01"}`)
		case strings.HasSuffix(r.URL.Path, "/renew"):
			w.WriteHeader(http.StatusAccepted)
		default:
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403,`+
				`"message":"pods \"web-1\" is forbidden: User \"bob\" cannot watch resource \"pods/tap\" in API group \"admin.meshctl.io\""}`)
		}
	}))
	defer srv.Close()
	client, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web-1"}}
	id, err := readProxyIdentity(ctx, client, pod)
	if err != nil || id.SPIFFEID != "spiffe://cluster.local/ns/demo/sa/web" {
		t.Errorf("identity: %+v, %v", id, err)
	}
	if err := renewProxy(ctx, client, pod); err != nil {
		t.Errorf("renew: %v", err)
	}
	_, err = openTap(client)(ctx, tapstream.Pod{Namespace: "demo", Name: "web-1"}, url.Values{"max_rps": {"5"}})
	if err == nil || !strings.Contains(err.Error(), "meshctl-admin-viewer") || !strings.Contains(err.Error(), `User "bob" cannot watch`) {
		t.Errorf("a refused tap: %v", err)
	}
	want := "GET /apis/admin.meshctl.io/v1alpha1/namespaces/demo/pods/web-1/identity\n" +
		"POST /apis/admin.meshctl.io/v1alpha1/namespaces/demo/pods/web-1/renew\n" +
		"GET /apis/admin.meshctl.io/v1alpha1/watch/namespaces/demo/pods/web-1/tap?max_rps=5"
	if got := strings.Join(seen, "\n"); got != want {
		t.Errorf("requests:\n%s\nwant:\n%s", got, want)
	}
}
