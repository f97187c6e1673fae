package inbound

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/meshctl/meshctl/internal/api"
)

// asWorkload makes a request look like it came over mutual TLS from the
// given SPIFFE ID.
func asWorkload(r *http.Request, id string) *http.Request {
	u, _ := url.Parse(id)
	r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{URIs: []*url.URL{u}}}}
	return r
}

func TestServerStreamsChangesAndChecksTheCaller(t *testing.T) {
	pod := testPod(nil)
	pod.Spec.ServiceAccountName = "web"
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}
	client := fake.NewClientset(pod, ns)
	factory := informers.NewSharedInformerFactory(client, 0)
	s, err := New(Config{Pods: factory.Core().V1().Pods().Informer(), Namespaces: factory.Core().V1().Namespaces().Informer(),
		TrustDomain: "cluster.local", Default: "all-unauthenticated"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())

	// Another ServiceAccount may not read this pod's policy.
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, asWorkload(httptest.NewRequest("GET", api.InboundPolicyPath+"?pod=web-1", nil), "spiffe://cluster.local/ns/shop/sa/other"))
	if rec.Code != http.StatusForbidden {
		t.Errorf("a caller of another ServiceAccount: %d, want 403", rec.Code)
	}

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.ServeHTTP(w, asWorkload(r, "spiffe://cluster.local/ns/shop/sa/web"))
	}))
	defer srv.Close()
	res, err := http.Get(srv.URL + api.InboundPolicyPath + "?pod=web-1")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	lines := bufio.NewReader(res.Body)
	next := func() api.InboundPolicy {
		t.Helper()
		got := make(chan api.InboundPolicy, 1)
		go func() {
			line, err := lines.ReadBytes('\n')
			var p api.InboundPolicy
			if err == nil && json.Unmarshal(line, &p) == nil {
				got <- p
			}
			if err == io.EOF {
				close(got)
			}
		}()
		select {
		case p := <-got:
			return p
		case <-time.After(5 * time.Second):
			t.Fatal("no policy sent")
		}
		return api.InboundPolicy{}
	}
	if p := next(); p.Default != "all-unauthenticated" {
		t.Fatalf("first policy %+v", p)
	}
	// The namespace turns to deny, then the pod to all-authenticated: each reaches the stream.
	ns.Annotations = map[string]string{"config.meshctl.io/default-inbound-policy": "deny"}
	if _, err := client.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if p := next(); p.Default != "deny" {
		t.Errorf("after the namespace changed: %+v", p)
	}
	pod.Annotations = map[string]string{"config.meshctl.io/default-inbound-policy": "all-authenticated"}
	if _, err := client.CoreV1().Pods("shop").Update(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if p := next(); p.Default != "all-authenticated" {
		t.Errorf("after the pod changed: %+v", p)
	}
}
