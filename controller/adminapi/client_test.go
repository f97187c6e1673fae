package adminapi

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"

	"github.com/meshctl/meshctl/internal/adminclient"
	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/testpki"
)

// TestRequestAndExplainWithClientGo: Request reaches the paths the API
// server routes to the APIService (a tap through the watch path), and
// Explain turns the errors client-go makes of the answers into what to do.
func TestRequestAndExplainWithClientGo(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	answer := map[string]func(w http.ResponseWriter){}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.RequestURI())
		f := answer[r.URL.Path]
		mu.Unlock()
		if f == nil {
			status(w, http.StatusNotFound, metav1.StatusReasonNotFound, "the server could not find the requested resource", nil)
			return
		}
		f(w)
	}))
	defer srv.Close()
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	c := cs.CoreV1().RESTClient()
	ctx := context.Background()

	answer[adminclient.Path("demo", "web-1", meshnames.AdminIdentity)] = func(w http.ResponseWriter) {
		status(w, http.StatusForbidden, metav1.StatusReasonForbidden, `user "bob" cannot get`, &metav1.StatusDetails{Group: meshnames.AdminGroup, Kind: meshnames.AdminResource, Name: "web-1"})
	}
	answer[adminclient.Path("demo", "web-1", meshnames.AdminRenew)] = answer[adminclient.Path("demo", "web-1", meshnames.AdminIdentity)]
	answer[adminclient.Path("demo", "web-1", meshnames.AdminTap)] = func(w http.ResponseWriter) {
		status(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, "service unavailable", nil)
	}
	answer[adminclient.Path("demo", "gone", meshnames.AdminIdentity)] = func(w http.ResponseWriter) {
		status(w, http.StatusNotFound, metav1.StatusReasonNotFound, "pod demo/gone not found", &metav1.StatusDetails{Group: meshnames.AdminGroup, Kind: meshnames.AdminResource, Name: "gone"})
	}

	_, err = adminclient.Do(ctx, c, "demo", "web-1", meshnames.AdminIdentity)
	if got := adminclient.Explain(err, meshnames.AdminIdentity); got == nil || !strings.Contains(got.Error(), "ClusterRole "+meshnames.AdminViewerClusterRole) || !strings.Contains(got.Error(), `user "bob" cannot get`) {
		t.Errorf("403 on identity: %v", got)
	}
	_, err = adminclient.Do(ctx, c, "demo", "web-1", meshnames.AdminRenew)
	if got := adminclient.Explain(err, meshnames.AdminRenew); got == nil || !strings.Contains(got.Error(), "ClusterRole "+meshnames.AdminOperatorClusterRole) {
		t.Errorf("403 on renew: %v", got)
	}
	_, err = adminclient.Request(c, "demo", "web-1", meshnames.AdminTap).Param("max_rps", "2").Stream(ctx)
	if got := adminclient.Explain(err, meshnames.AdminTap); got == nil || !strings.Contains(got.Error(), "meshctl check") || !strings.Contains(got.Error(), meshnames.AdminAPIServiceName) {
		t.Errorf("503 on tap: %v", got)
	}
	_, err = adminclient.Do(ctx, c, "demo", "gone", meshnames.AdminIdentity)
	if got := adminclient.Explain(err, meshnames.AdminIdentity); got == nil || !strings.Contains(got.Error(), "the pod is gone") {
		t.Errorf("a missing pod: %v", got)
	}
	_, err = adminclient.Do(ctx, c, "demo", "web-1", meshnames.AdminDestinations)
	if got := adminclient.Explain(err, meshnames.AdminDestinations); got == nil || !strings.Contains(got.Error(), "does not serve "+meshnames.AdminGroupVersion) {
		t.Errorf("no APIService: %v", got)
	}
	want := []string{
		"GET /apis/admin.meshctl.io/v1alpha1/namespaces/demo/pods/web-1/identity",
		"POST /apis/admin.meshctl.io/v1alpha1/namespaces/demo/pods/web-1/renew",
		"GET /apis/admin.meshctl.io/v1alpha1/watch/namespaces/demo/pods/web-1/tap?max_rps=2",
		"GET /apis/admin.meshctl.io/v1alpha1/namespaces/demo/pods/gone/identity",
		"GET /apis/admin.meshctl.io/v1alpha1/namespaces/demo/pods/web-1/destinations",
	}
	if strings.Join(seen, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
	}
}

// TestSubjectAccessReviewsAskAboutThePodsSubresource: the review names the
// user exactly as the front proxy did, and the subresource of the pod in
// admin.meshctl.io; a denial carries the authorizer's reason.
func TestSubjectAccessReviewsAskAboutThePodsSubresource(t *testing.T) {
	cs := kubefake.NewClientset()
	var got *authorizationv1.SubjectAccessReview
	cs.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		got = a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SubjectAccessReview).DeepCopy()
		out := got.DeepCopy()
		out.Status = authorizationv1.SubjectAccessReviewStatus{Allowed: got.Spec.User == "alice", Reason: "RBAC says so"}
		return true, out, nil
	})
	sar := SubjectAccessReviews{Client: cs}
	u := User{Name: "alice", UID: "42", Groups: []string{"dev"}, Extra: map[string][]string{"scopes": {"a"}}}
	ok, _, err := sar.Authorize(context.Background(), u, Attributes{Namespace: "demo", Pod: "web-1", Subresource: meshnames.AdminTap, Verb: meshnames.VerbWatch})
	if err != nil || !ok {
		t.Fatalf("alice: %v, %v", ok, err)
	}
	ra := got.Spec.ResourceAttributes
	if got.Spec.User != "alice" || got.Spec.UID != "42" || got.Spec.Groups[0] != "dev" || got.Spec.Extra["scopes"][0] != "a" ||
		*ra != (authorizationv1.ResourceAttributes{Namespace: "demo", Verb: "watch", Group: meshnames.AdminGroup, Version: meshnames.AdminVersion, Resource: "pods", Subresource: "tap", Name: "web-1"}) {
		t.Errorf("review %+v %+v", got.Spec, ra)
	}
	ok, reason, err := sar.Authorize(context.Background(), User{Name: "bob"}, Attributes{Namespace: "demo", Pod: "web-1", Subresource: meshnames.AdminRenew, Verb: meshnames.VerbCreate})
	if err != nil || ok || reason != "RBAC says so" {
		t.Errorf("bob: %v %q %v", ok, reason, err)
	}
}

// TestFrontProxyFollowsTheConfigMap: the settings come from
// kube-system/extension-apiserver-authentication and follow its changes.
func TestFrontProxyFollowsTheConfigMap(t *testing.T) {
	frontCA := testpki.NewRoot(t, "front-proxy-ca")
	cm := (&world{frontCA: frontCA}).authConfigMap(`["front-proxy-client"]`)
	cs := kubefake.NewClientset(cm)
	f := NewFrontProxy(nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Follow(ctx, cs) }()
	defer func() { cancel(); <-done }()

	cert := frontCA.IssueClient(t, "aggregator")
	req := httptest.NewRequest("GET", "/apis", nil)
	req.TLS = &tls.ConnectionState{}
	req.TLS.PeerCertificates = append(req.TLS.PeerCertificates, cert.Cert)
	req.Header.Set("X-Remote-User", "alice")
	waitFor(t, func() bool {
		_, err := f.Authenticate(req)
		return err != nil && strings.Contains(err.Error(), "not among the allowed")
	})
	cm = cm.DeepCopy()
	cm.Data["requestheader-allowed-names"] = `["front-proxy-client","aggregator"]`
	if _, err := cs.CoreV1().ConfigMaps(cm.Namespace).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		u, err := f.Authenticate(req)
		return err == nil && u.Name == "alice"
	})
	// Another ConfigMap in kube-system changes nothing.
	other := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: meshnames.AuthConfigMapNamespace, Name: "something-else"}}
	if _, err := cs.CoreV1().ConfigMaps(other.Namespace).Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if _, err := f.Authenticate(req); err != nil {
		t.Errorf("after an unrelated ConfigMap: %v", err)
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAvailableReadsTheAPIServicesCondition: Available is the APIService's
// Available condition, with the aggregator's reason when it is not, and
// holds until the API server answers for the group version.
func TestAvailableReadsTheAPIServicesCondition(t *testing.T) {
	var body string
	routed := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if routed && r.URL.Path == "/apis/"+meshnames.AdminGroupVersion {
			writeJSON(w, http.StatusOK, discovery(r.URL.Path))
			return
		}
		if r.URL.Path != "/apis/apiregistration.k8s.io/v1/apiservices/v1alpha1.admin.meshctl.io" || body == "" {
			status(w, http.StatusNotFound, metav1.StatusReasonNotFound, "not found", nil)
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
	c := cs.Discovery().RESTClient()
	if _, _, err := adminclient.Available(context.Background(), c); !apierrors.IsNotFound(err) {
		t.Errorf("no APIService: %v, want NotFound", err)
	}
	body = `{"kind":"APIService","status":{"conditions":[{"type":"Available","status":"False","reason":"FailedDiscoveryCheck","message":"failing or missing response from https://10.244.0.5:8089/apis/admin.meshctl.io/v1alpha1: bad status from https://10.244.0.5:8089/apis/admin.meshctl.io/v1alpha1: 401"}]}}`
	if ok, why, err := adminclient.Available(context.Background(), c); ok || err != nil || !strings.Contains(why, "FailedDiscoveryCheck") || !strings.Contains(why, "401") {
		t.Errorf("unavailable: %v %q %v", ok, why, err)
	}
	body = `{"kind":"APIService","status":{"conditions":[{"type":"Available","status":"True","reason":"Passed"}]}}`
	if ok, why, err := adminclient.Available(context.Background(), c); ok || err != nil || !strings.Contains(why, "does not answer for "+meshnames.AdminGroupVersion+" yet") {
		t.Errorf("available but not routed yet: %v %q %v", ok, why, err)
	}
	routed = true
	if ok, _, err := adminclient.Available(context.Background(), c); !ok || err != nil {
		t.Errorf("available: %v %v", ok, err)
	}
}

// TestTheClientUsesTheServersMethods: adminclient.Method, which the CLI
// sends, is the method the server takes for every subresource, and
// adminclient.Path is a path the server parses as that subresource.
func TestTheClientUsesTheServersMethods(t *testing.T) {
	for _, s := range subresources {
		if got := adminclient.Method(s.name); got != s.method {
			t.Errorf("%s: the client sends %s, the server takes %s", s.name, got, s.method)
		}
		tg, ok, err := parsePath(s.method, adminclient.Path("demo", "web-1", s.name))
		if !ok || err != nil || tg.sub.name != s.name || tg.namespace != "demo" || tg.pod != "web-1" {
			t.Errorf("%s: the server parses the client's path as %+v, %v, %v", s.name, tg, ok, err)
		}
	}
}
