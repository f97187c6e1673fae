package dashboard

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshctl/meshctl/cli/healthcheck"
	"github.com/meshctl/meshctl/cli/proxystats"
	"github.com/meshctl/meshctl/cli/tapstream"
	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/policyapi"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// golden compares got with testdata/name (rewritten with -update).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs (-update to accept):\n%s", path, got)
	}
}

// traffic is one series of a proxy's response_total, with every response
// in one latency bucket (le).
type traffic struct {
	dir, clientID, serverID, dstWorkload, authority string
	tls                                             bool
	status                                          int
	count                                           float64
	le                                              float64
}

// exposition is a proxy's /metrics with the series given.
func exposition(started float64, series ...traffic) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %v\n", started)
	b.WriteString("# TYPE response_total counter\n")
	labels := func(s traffic) string {
		class := "success"
		if s.status >= 500 {
			class = "failure"
		}
		return fmt.Sprintf(`direction=%q,tls="%v",client_id=%q,server_id=%q,dst_workload=%q,authority=%q,status_code="%d",classification=%q`,
			s.dir, s.tls, s.clientID, s.serverID, s.dstWorkload, s.authority, s.status, class)
	}
	for _, s := range series {
		fmt.Fprintf(&b, "response_total{%s} %v\n", labels(s), s.count)
	}
	b.WriteString("# TYPE response_latency_ms histogram\n")
	for _, s := range series {
		for _, le := range []float64{10, 50, 100} {
			n := 0.0
			if le >= s.le {
				n = s.count
			}
			fmt.Fprintf(&b, "response_latency_ms_bucket{%s,le=\"%v\"} %v\n", labels(s), le, n)
		}
		fmt.Fprintf(&b, "response_latency_ms_bucket{%s,le=\"+Inf\"} %v\n", labels(s), s.count)
		fmt.Fprintf(&b, "response_latency_ms_sum{%s} 0\nresponse_latency_ms_count{%s} %v\n", labels(s), labels(s), s.count)
	}
	return b.String()
}

const (
	loadID = "spiffe://cluster.local/ns/shop/sa/load"
	webID  = "spiffe://cluster.local/ns/shop/sa/web"
	apiID  = "spiffe://cluster.local/ns/shop/sa/api"
)

// fixturePod is a pod of the fixture and how its counters grow per scrape.
type fixturePod struct {
	workload, kind, name string
	labels               map[string]string
	meshed               bool
	series               func(scrape int) []traffic
}

// shop is the fixture mesh: load calls web (secured; 1 in 50 fails), web
// calls api-v1 and api-v2 (secured) behind an HTTPRoute split 90/10 of
// the Service api, and example.com:443 (outside the mesh); a legacy pod
// without a proxy calls web in plaintext. Every scrape adds 100 requests
// from load, 50 to the apis, 10 to example.com, 5 from legacy.
func shop() []fixturePod {
	return []fixturePod{
		{workload: "load", kind: KindDeployment, name: "load-7d9f-abcde", labels: map[string]string{"app": "load"}, meshed: true, series: func(n int) []traffic {
			return []traffic{
				{dir: "outbound", tls: true, serverID: webID, dstWorkload: "web", authority: "web.shop.svc.cluster.local:80", status: 200, count: float64(98 * n), le: 10},
				{dir: "outbound", tls: true, serverID: webID, dstWorkload: "web", authority: "web.shop.svc.cluster.local:80", status: 500, count: float64(2 * n), le: 50},
			}
		}},
		{workload: "web", kind: KindDeployment, name: "web-5c6b-aaaaa", labels: map[string]string{"app": "web"}, meshed: true, series: func(n int) []traffic {
			return []traffic{
				{dir: "inbound", tls: true, clientID: loadID, status: 200, count: float64(98 * n), le: 10},
				{dir: "inbound", tls: true, clientID: loadID, status: 500, count: float64(2 * n), le: 50},
				{dir: "inbound", tls: false, status: 200, count: float64(5 * n), le: 10},
				{dir: "outbound", tls: true, serverID: apiID, dstWorkload: "api-v1", authority: "api.shop.svc.cluster.local:80", status: 200, count: float64(45 * n), le: 10},
				{dir: "outbound", tls: true, serverID: apiID, dstWorkload: "api-v2", authority: "api.shop.svc.cluster.local:80", status: 200, count: float64(5 * n), le: 10},
				{dir: "outbound", tls: false, authority: "example.com:443", status: 200, count: float64(10 * n), le: 100},
			}
		}},
		{workload: "api-v1", kind: KindDeployment, name: "api-v1-66f-bbbbb", labels: map[string]string{"app": "api", "version": "v1"}, meshed: true, series: func(n int) []traffic {
			return []traffic{{dir: "inbound", tls: true, clientID: webID, status: 200, count: float64(45 * n), le: 10}}
		}},
		{workload: "api-v2", kind: KindDeployment, name: "api-v2-77a-ccccc", labels: map[string]string{"app": "api", "version": "v2"}, meshed: true, series: func(n int) []traffic {
			return []traffic{{dir: "inbound", tls: true, clientID: webID, status: 200, count: float64(5 * n), le: 10}}
		}},
		{workload: "legacy", kind: KindStatefulSet, name: "legacy-0", labels: map[string]string{"app": "legacy"}},
	}
}

// fixtureSource is a Source over the shop fixture: each Snapshot is one
// scrape further; proxies' identities name issuers per pod.
type fixtureSource struct {
	mu      sync.Mutex
	pods    []fixturePod
	scrapes int
	// failing makes a pod's proxy unreadable.
	failing string
	// issuers maps pods to the fingerprint of their certificate's issuer.
	issuers map[string]string
	issuer  *x509.Certificate
	// tap is what Tap sends each pod's stream.
	tap []api.TapEvent
	// snapshots counts Snapshot calls per namespace.
	snapshots map[string]int
}

func newFixtureSource() *fixtureSource {
	return &fixtureSource{pods: shop(), issuers: map[string]string{}, snapshots: map[string]int{}}
}

func (f *fixtureSource) Namespaces(context.Context) ([]string, error) {
	return []string{"default", "shop"}, nil
}

func (f *fixtureSource) Snapshot(_ context.Context, ns string) (*Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.snapshots[ns]++
	if ns != "" && ns != "shop" {
		return &Snapshot{PodLabels: map[string]map[string]string{}}, nil
	}
	f.scrapes++
	snap := &Snapshot{PodLabels: map[string]map[string]string{}}
	for _, p := range f.pods {
		i := slices.IndexFunc(snap.Workloads, func(r proxystats.Resource) bool { return r.Name == p.workload })
		if i < 0 {
			snap.Workloads = append(snap.Workloads, proxystats.Resource{Kind: p.kind, Namespace: "shop", Name: p.workload})
			i = len(snap.Workloads) - 1
		}
		pod := &proxystats.Pod{Namespace: "shop", Name: p.name, Workload: p.workload, Meshed: p.meshed}
		if p.meshed {
			if p.name == f.failing {
				pod.Err = errors.New("its proxy did not answer: connection refused")
			} else {
				s, err := proxystats.Parse(strings.NewReader(exposition(1000, p.series(f.scrapes)...)))
				if err != nil {
					return nil, err
				}
				pod.End = s
			}
		}
		snap.Workloads[i].Pods = append(snap.Workloads[i].Pods, pod)
		snap.PodLabels["shop/"+p.name] = p.labels
	}
	svc := func(name string, sel map[string]string) corev1.Service {
		return corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}, Spec: corev1.ServiceSpec{Selector: sel}}
	}
	snap.Services = []corev1.Service{svc("web", map[string]string{"app": "web"}), svc("api", map[string]string{"app": "api"}),
		svc("api-v1", map[string]string{"app": "api", "version": "v1"}), svc("api-v2", map[string]string{"app": "api", "version": "v2"})}
	w90, w10 := int32(90), int32(10)
	backend := func(name string, w *int32) gatewayv1.HTTPBackendRef {
		return gatewayv1.HTTPBackendRef{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(name)}, Weight: w}}
	}
	svcKind, group := gatewayv1.Kind("Service"), gatewayv1.Group("")
	snap.Routes = []gatewayv1.HTTPRoute{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "api-split"},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Group: &group, Kind: &svcKind, Name: "api"}}},
			Rules:           []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{backend("api-v1", &w90), backend("api-v2", &w10)}}},
		},
	}}
	return snap, nil
}

func (f *fixtureSource) Workload(_ context.Context, ns, name string) (*WorkloadObjects, error) {
	objs := &WorkloadObjects{TrustDomain: "cluster.local", ClusterDefault: meshnames.DefaultAllUnauthenticated,
		NamespaceAnnotations: map[string]string{meshnames.RateLimitAnnotation: "100"}}
	for _, p := range f.pods {
		if p.workload != name {
			continue
		}
		objs.Kind = p.kind
		pod := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: p.name, Labels: map[string]string{}},
			Spec:   corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}}
		for k, v := range p.labels {
			pod.Labels[k] = v
		}
		if p.meshed {
			pod.Labels[meshnames.VersionLabel] = "v0.9.0"
		}
		objs.Pods = append(objs.Pods, pod)
	}
	port := intstr.FromString("http")
	objs.Policies = []*policyapi.AuthorizationPolicy{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-from-load"},
		Spec: policyapi.AuthorizationPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, Port: &port,
			From: []policyapi.Client{{ServiceAccount: &policyapi.ServiceAccountRef{Name: "load"}}}},
	}}
	return objs, nil
}

func (f *fixtureSource) ProxyIdentity(_ context.Context, ns, pod string) (api.IdentityInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if pod == f.failing {
		return api.IdentityInfo{}, errors.New("its proxy did not answer")
	}
	issuer := f.issuers[pod]
	if issuer == "" && f.issuer != nil {
		issuer = certOf(f.issuer).Fingerprint
	}
	return api.IdentityInfo{SPIFFEID: "spiffe://cluster.local/ns/" + ns + "/sa/x", IssuerFingerprint: issuer,
		NotBefore: time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)}, nil
}

func (f *fixtureSource) Identity(context.Context) (*IdentityObjects, error) {
	objs := &IdentityObjects{Issuer: f.issuer, Anchors: []*x509.Certificate{{Raw: []byte("anchor"), Subject: pkix.Name{CommonName: "root.cluster.local"},
		NotBefore: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)}}}
	for _, p := range f.pods {
		if p.meshed {
			objs.MeshedPods = append(objs.MeshedPods, "shop/"+p.name)
		}
	}
	return objs, nil
}

func (f *fixtureSource) Health(context.Context) []healthcheck.Result {
	return []healthcheck.Result{
		{Category: "kubernetes-api", Name: "can reach the API server", Status: healthcheck.OK},
		{Category: "control-plane", Name: "control plane pods are ready", Status: healthcheck.Error, Detail: "0/1 ready", Hint: "kubectl -n meshctl get pods"},
	}
}

func (f *fixtureSource) Tap(ctx context.Context, pods []tapstream.Pod, _ tapstream.Filter, events chan<- tapstream.PodEvent, failed func(tapstream.Pod, error)) {
	for _, p := range pods {
		if p.Name == f.failing {
			failed(p, errors.New("its tap stream ended"))
			continue
		}
		for _, e := range f.tap {
			select {
			case events <- tapstream.PodEvent{Namespace: p.Namespace, Pod: p.Name, Workload: p.Workload, Event: e}:
			case <-ctx.Done():
				return
			}
		}
	}
	<-ctx.Done()
}

// identityIssuer is a stand-in issuer certificate.
func (f *fixtureSource) identityIssuer() *x509.Certificate {
	return &x509.Certificate{Raw: []byte("issuer"), Subject: pkix.Name{CommonName: "issuer.cluster.local"},
		NotBefore: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)}
}
