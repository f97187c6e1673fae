package adminapi

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/meshctl/meshctl/internal/adminclient"
	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/certs"
	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/spiffeid"
	"github.com/meshctl/meshctl/internal/testpki"
	"github.com/meshctl/meshctl/proxy"
	"github.com/meshctl/meshctl/proxy/admin"
	"github.com/meshctl/meshctl/proxy/tap"
)

const (
	controllerSPIFFE = "spiffe://cluster.local/ns/meshctl/sa/mesh-controller"
	webSPIFFE        = "spiffe://cluster.local/ns/demo/sa/web"
)

type staticSource struct{ b *certs.Bundle }

func (s staticSource) Bundle() *certs.Bundle { return s.b }

func source(t *testing.T, ca *testpki.CA, id string) staticSource {
	t.Helper()
	leaf := ca.Issue(t, id, -time.Minute, time.Hour)
	b, err := certs.NewBundle(leaf.CertPEM(), leaf.KeyPEM(t), testpki.CertPEM(ca.Cert))
	if err != nil {
		t.Fatal(err)
	}
	return staticSource{b}
}

// fakeAuthorizer decides as told and remembers what it was asked.
type fakeAuthorizer struct {
	mu    sync.Mutex
	allow bool
	asked []Attributes
	users []User
}

func (f *fakeAuthorizer) Authorize(_ context.Context, u User, a Attributes) (bool, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked, f.users = append(f.asked, a), append(f.users, u)
	if !f.allow {
		return false, "no RBAC rule allows it", nil
	}
	return true, "", nil
}

func (f *fakeAuthorizer) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.asked)
}

// world is the controller's admin API in front of one real proxy admin
// server, with the API server's front-proxy PKI.
type world struct {
	api       *httptest.Server
	authz     *fakeAuthorizer
	frontCA   *testpki.CA
	hub       *tap.Hub
	renewed   atomic.Int32
	pods      map[string]*corev1.Pod
	proxyPort int
}

func newWorld(t *testing.T) *world {
	t.Helper()
	mesh := testpki.NewRoot(t, "mesh root")
	w := &world{authz: &fakeAuthorizer{allow: true}, frontCA: testpki.NewRoot(t, "front-proxy-ca"), hub: tap.NewHub(), pods: map[string]*corev1.Pod{}}

	// The pod's proxy: its admin port, as the proxy serves it.
	ctrl, _ := spiffeid.Parse(controllerSPIFFE)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w.proxyPort = ln.Addr().(*net.TCPAddr).Port
	srv := admin.NewServer(admin.Config{
		Metrics: func(io.Writer) {}, Identity: source(t, mesh, webSPIFFE), ControllerID: ctrl,
		Tap: w.hub, Renew: func() { w.renewed.Add(1) },
	})
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	w.addPod("demo", "web-1", "web", true)

	front := NewFrontProxy(nil)
	front.Set(w.authConfigMap(`["front-proxy-client"]`))
	h, err := New(Config{
		Pods: func(ns, name string) (*corev1.Pod, error) {
			if p, ok := w.pods[ns+"/"+name]; ok {
				return p, nil
			}
			return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, name)
		},
		Identity: source(t, mesh, controllerSPIFFE), ProxyPort: w.proxyPort,
		Authorizer: w.authz, FrontProxy: front,
	})
	if err != nil {
		t.Fatal(err)
	}
	w.api = httptest.NewUnstartedServer(h)
	w.api.TLS = ServerTLS(nil) // httptest's own serving certificate
	w.api.EnableHTTP2 = true
	w.api.StartTLS()
	t.Cleanup(w.api.Close)
	return w
}

func (w *world) authConfigMap(allowedNames string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: meshnames.AuthConfigMapNamespace, Name: meshnames.AuthConfigMap},
		Data: map[string]string{
			"client-ca-file":                     "(the cluster's client CA, not the front proxy's)",
			"requestheader-client-ca-file":       string(testpki.CertPEM(w.frontCA.Cert)),
			"requestheader-allowed-names":        allowedNames,
			"requestheader-username-headers":     `["X-Remote-User"]`,
			"requestheader-group-headers":        `["X-Remote-Group"]`,
			"requestheader-extra-headers-prefix": `["X-Remote-Extra-"]`,
		},
	}
}

func (w *world) addPod(ns, name, sa string, meshed bool) {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{}},
		Spec:       corev1.PodSpec{ServiceAccountName: sa},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "127.0.0.1"},
	}
	if meshed {
		p.Labels["meshctl.io/proxy-version"] = "v1"
	}
	w.pods[ns+"/"+name] = p
}

// client is the aggregator: the API's client with a client certificate
// (none when cert is nil) and the user it speaks for.
func (w *world) client(cert *testpki.Leaf) *http.Client {
	tr := w.api.Client().Transport.(*http.Transport).Clone()
	if cert != nil {
		tr.TLSClientConfig.Certificates = []tls.Certificate{cert.TLSCertificate()}
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func (w *world) aggregator(t *testing.T) *http.Client {
	return w.client(w.frontCA.IssueClient(t, "front-proxy-client"))
}

type call struct {
	method, path string
	user         string
	groups       []string
	extra        map[string]string
}

func (w *world) do(t *testing.T, c *http.Client, k call) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(k.method, w.api.URL+k.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if k.user != "" {
		req.Header.Set("X-Remote-User", k.user)
	}
	for _, g := range k.groups {
		req.Header.Add("X-Remote-Group", g)
	}
	for key, v := range k.extra {
		req.Header.Add("X-Remote-Extra-"+key, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// TestDiscoveryDocuments: /apis, the group and the version describe
// admin.meshctl.io/v1alpha1 and its four namespaced pod subresources, as the
// aggregator's availability check and kubectl read them.
func TestDiscoveryDocuments(t *testing.T) {
	w := newWorld(t)
	c := w.client(w.frontCA.IssueClient(t, "front-proxy-client"))
	var groups metav1.APIGroupList
	var group metav1.APIGroup
	var resources metav1.APIResourceList
	for path, into := range map[string]any{"/apis": &groups, "/apis/admin.meshctl.io": &group, "/apis/admin.meshctl.io/v1alpha1": &resources} {
		resp, body := w.do(t, c, call{method: "GET", path: path, user: "system:kube-aggregator"})
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("GET %s: %s %s", path, resp.Status, body)
		}
		if err := json.Unmarshal([]byte(body), into); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	if groups.Kind != "APIGroupList" || len(groups.Groups) != 1 || groups.Groups[0].Name != meshnames.AdminGroup {
		t.Errorf("/apis: %+v", groups)
	}
	if group.Kind != "APIGroup" || group.PreferredVersion.GroupVersion != "admin.meshctl.io/v1alpha1" || len(group.Versions) != 1 {
		t.Errorf("the group: %+v", group)
	}
	if resources.Kind != "APIResourceList" || resources.GroupVersion != "admin.meshctl.io/v1alpha1" {
		t.Errorf("the version: %+v", resources)
	}
	want := map[string]string{"pods/tap": "get,watch", "pods/identity": "get", "pods/destinations": "get", "pods/policy": "get", "pods/renew": "create"}
	for _, r := range resources.APIResources {
		if !r.Namespaced || strings.Join(r.Verbs, ",") != want[r.Name] {
			t.Errorf("resource %+v", r)
		}
		delete(want, r.Name)
	}
	if len(want) > 0 {
		t.Errorf("missing resources %v", want)
	}
	if w.authz.calls() != 0 {
		t.Errorf("discovery asked the authorizer %d times", w.authz.calls())
	}
}

// TestRequestsNotFromTheFrontProxyAreUnauthorized: without the front
// proxy's client certificate (none, another CA's, a name not allowed) a
// request gets 401, and the user headers it carries are never believed.
func TestRequestsNotFromTheFrontProxyAreUnauthorized(t *testing.T) {
	w := newWorld(t)
	elsewhere := testpki.NewRoot(t, "a cluster client CA")
	for name, c := range map[string]*http.Client{
		"no client certificate":                  w.client(nil),
		"a client certificate from another CA":   w.client(elsewhere.IssueClient(t, "front-proxy-client")),
		"the front-proxy CA, a name not allowed": w.client(w.frontCA.IssueClient(t, "someone-else")),
		"a mesh workload certificate":            w.client(w.frontCA.Issue(t, controllerSPIFFE, -time.Minute, time.Hour)),
	} {
		for _, path := range []string{"/apis/admin.meshctl.io/v1alpha1/namespaces/demo/pods/web-1/identity", "/apis/admin.meshctl.io/v1alpha1"} {
			resp, body := w.do(t, c, call{method: "GET", path: path, user: "system:admin", groups: []string{"system:masters"}})
			if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `"kind":"Status"`) {
				t.Errorf("%s: GET %s: %s %s, want 401", name, path, resp.Status, body)
			}
		}
	}
	// The right certificate, but no user named.
	if resp, body := w.do(t, w.aggregator(t), call{method: "GET", path: "/apis/admin.meshctl.io/v1alpha1/namespaces/demo/pods/web-1/identity"}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no X-Remote-User: %s %s, want 401", resp.Status, body)
	}
	if n := w.authz.calls(); n != 0 {
		t.Errorf("the authorizer was asked %d times for unauthenticated requests", n)
	}
}

// TestTheUserIsWhomTheFrontProxyNames: the authorizer is asked about the
// user, groups and extras of the X-Remote-* headers, for the pod's
// subresource with the verb the API server authorized (watch for a tap,
// create for renew).
func TestTheUserIsWhomTheFrontProxyNames(t *testing.T) {
	w := newWorld(t)
	c := w.aggregator(t)
	k := call{method: "GET", path: adminclient.Path("demo", "web-1", meshnames.AdminIdentity), user: "alice", groups: []string{"dev", "system:authenticated"},
		extra: map[string]string{"Scopes": "view", "Acme.com%2fproject": "x"}}
	if resp, body := w.do(t, c, k); resp.StatusCode != 200 {
		t.Fatalf("GET identity: %s %s", resp.Status, body)
	}
	k.method, k.path = "POST", adminclient.Path("demo", "web-1", meshnames.AdminRenew)
	w.do(t, c, k)
	u := w.authz.users[0]
	if u.Name != "alice" || strings.Join(u.Groups, ",") != "dev,system:authenticated" ||
		u.Extra["scopes"][0] != "view" || u.Extra["acme.com/project"][0] != "x" {
		t.Errorf("user %+v", u)
	}
	want := []Attributes{{"demo", "web-1", meshnames.AdminIdentity, meshnames.VerbGet}, {"demo", "web-1", meshnames.AdminRenew, meshnames.VerbCreate}}
	for i, a := range want {
		if w.authz.asked[i] != a {
			t.Errorf("asked %+v, want %+v", w.authz.asked[i], a)
		}
	}
}

// TestForbiddenWhenTheAuthorizerSaysNo: a user the authorizer refuses gets
// 403 naming what was refused, and the proxy is never asked.
func TestForbiddenWhenTheAuthorizerSaysNo(t *testing.T) {
	w := newWorld(t)
	w.authz.allow = false
	c := w.aggregator(t)
	for _, k := range []call{
		{method: "GET", path: adminclient.Path("demo", "web-1", meshnames.AdminIdentity), user: "mallory"},
		{method: "POST", path: adminclient.Path("demo", "web-1", meshnames.AdminRenew), user: "mallory"},
		{method: "GET", path: adminclient.Path("demo", "web-1", meshnames.AdminTap), user: "mallory"},
	} {
		resp, body := w.do(t, c, k)
		var st metav1.Status
		json.Unmarshal([]byte(body), &st)
		if resp.StatusCode != http.StatusForbidden || st.Reason != metav1.StatusReasonForbidden || !strings.Contains(st.Message, `"mallory"`) {
			t.Errorf("%s %s: %s %s, want 403", k.method, k.path, resp.Status, body)
		}
	}
	if w.renewed.Load() != 0 {
		t.Error("a refused renew reached the proxy")
	}
}

// TestRelaysToTheProxyOverMutualTLS: an allowed request reaches the pod's
// proxy, which answers the controller's identity; a missing or unmeshed pod
// is said so.
func TestRelaysToTheProxyOverMutualTLS(t *testing.T) {
	w := newWorld(t)
	w.addPod("demo", "plain", "web", false)
	c := w.aggregator(t)
	resp, body := w.do(t, c, call{method: "GET", path: adminclient.Path("demo", "web-1", meshnames.AdminIdentity), user: "alice"})
	var id api.IdentityInfo
	if err := json.Unmarshal([]byte(body), &id); resp.StatusCode != 200 || err != nil || id.SPIFFEID != webSPIFFE {
		t.Errorf("identity: %s %s", resp.Status, body)
	}
	if resp, body := w.do(t, c, call{method: "POST", path: adminclient.Path("demo", "web-1", meshnames.AdminRenew), user: "alice"}); resp.StatusCode != http.StatusAccepted || w.renewed.Load() != 1 {
		t.Errorf("renew: %s %s, renewed %d times", resp.Status, body, w.renewed.Load())
	}
	for path, want := range map[string]int{
		adminclient.Path("demo", "gone", meshnames.AdminIdentity):  http.StatusNotFound,
		adminclient.Path("demo", "plain", meshnames.AdminIdentity): http.StatusBadRequest,
		adminclient.Path("demo", "web-1", "exec"):                  http.StatusNotFound,
	} {
		if resp, body := w.do(t, c, call{method: "GET", path: path, user: "alice"}); resp.StatusCode != want {
			t.Errorf("GET %s: %s %s, want %d", path, resp.Status, body, want)
		}
	}
	if resp, _ := w.do(t, c, call{method: "GET", path: adminclient.Path("demo", "web-1", meshnames.AdminRenew), user: "alice"}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("GET renew: %s, want 400", resp.Status)
	}
}

// TestRelayRefusesAProxyThatIsNotThePods: the proxy must prove the pod's
// ServiceAccount's SPIFFE ID; one that proves another gets nothing relayed.
func TestRelayRefusesAProxyThatIsNotThePods(t *testing.T) {
	w := newWorld(t)
	w.addPod("demo", "api-1", "api", true) // its IP is the web proxy's
	resp, body := w.do(t, w.aggregator(t), call{method: "GET", path: adminclient.Path("demo", "api-1", meshnames.AdminIdentity), user: "alice"})
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "is not pod demo/api-1") {
		t.Errorf("identity of an impostor: %s %s, want 502", resp.Status, body)
	}
}

// TestTapStreamsThroughTheRelay: a tap is relayed as a live stream (each
// event arrives while the stream stays open) and ends at the proxy when the
// client goes away.
func TestTapStreamsThroughTheRelay(t *testing.T) {
	w := newWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", w.api.URL+adminclient.Path("demo", "web-1", meshnames.AdminTap)+"?path=/api", nil)
	req.Header.Set("X-Remote-User", "alice")
	c := w.aggregator(t)
	c.Timeout = 0 // a stream
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("tap: %s", resp.Status)
	}
	if a := w.authz.asked[0]; a.Verb != meshnames.VerbWatch || a.Subresource != meshnames.AdminTap {
		t.Errorf("a tap was authorized as %+v, want watch pods/tap", a)
	}
	lines := bufio.NewScanner(resp.Body)
	for i := range 3 {
		w.hub.Publish(api.TapEvent{Type: api.TapStart, ID: uint64(i + 1), Path: fmt.Sprintf("/api/%d", i)})
		w.hub.Publish(api.TapEvent{Type: api.TapStart, ID: 100, Path: "/filtered-out"})
		if !lines.Scan() {
			t.Fatalf("the stream ended after %d events: %v", i, lines.Err())
		}
		var e api.TapEvent
		if err := json.Unmarshal(lines.Bytes(), &e); err != nil || e.Path != fmt.Sprintf("/api/%d", i) {
			t.Fatalf("event %d: %s (%v)", i, lines.Bytes(), err)
		}
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for w.hub.Active() {
		if time.Now().After(deadline) {
			t.Fatal("the proxy's tap is still open after the client went away")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestProxyPortIsTheProxys: the relay dials the port the proxy listens on.
func TestProxyPortIsTheProxys(t *testing.T) {
	if meshnames.ProxyAdminPort != proxy.AdminPort {
		t.Errorf("DefaultProxyPort %d, the proxy's admin port %d", meshnames.ProxyAdminPort, proxy.AdminPort)
	}
}
