package healthcheck

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"sigs.k8s.io/yaml"

	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/policyapi"
)

// fromYAML decodes a test object written as YAML.
func fromYAML[T any](t *testing.T, doc string) T {
	t.Helper()
	var v T
	if err := yaml.UnmarshalStrict([]byte(doc), &v); err != nil {
		t.Fatalf("%v in:\n%s", err, doc)
	}
	return v
}

const splitRoute = `
metadata: {name: web-split, namespace: demo, generation: 2}
spec:
  parentRefs: [{kind: Service, group: "", name: web, port: 80}]
  rules:
  - backendRefs:
    - {name: web-v1, port: 80, weight: 90}
    - {name: web-v3, port: 80, weight: 10}
status:
  parents:
  - parentRef: {kind: Service, group: "", name: web, port: 80}
    controllerName: meshctl.io/mesh-controller
    conditions:
    - {type: Accepted, status: "True", reason: Accepted, message: applied, observedGeneration: 2, lastTransitionTime: "2026-12-04T12:00:00Z"}
    - {type: ResolvedRefs, status: "False", reason: BackendNotFound, message: Service demo/web-v3 not found, observedGeneration: 2, lastTransitionTime: "2026-12-04T12:00:00Z"}
  - parentRef: {name: gw}
    controllerName: example.org/gateway
    conditions:
    - {type: Accepted, status: "False", reason: NotAllowedByListeners, message: theirs, lastTransitionTime: "2026-12-04T12:00:00Z"}
`

// routeObject decodes a route written as YAML as the dynamic client gives it.
func routeObject(t *testing.T, doc string) map[string]any {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(append([]byte(`{"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRoute",`), js[1:]...)); err != nil {
		t.Fatal(err)
	}
	return u.Object
}

// TestRouteFindingsReadTheControllersConditions: findings come from the
// conditions meshctl wrote, never from other controllers' entries, and a
// route on a Service without meshctl's status, or with a stale one, is
// named too.
func TestRouteFindingsReadTheControllersConditions(t *testing.T) {
	accepted := strings.Replace(splitRoute, `status: "False", reason: BackendNotFound, message: Service demo/web-v3 not found`,
		`status: "True", reason: ResolvedRefs, message: ok`, 1)
	for name, tc := range map[string]struct {
		route string
		want  []string
	}{
		"accepted and resolved": {accepted, nil},
		"missing backend": {splitRoute,
			[]string{"demo/web-split on Service demo/web:80: ResolvedRefs=False (BackendNotFound): Service demo/web-v3 not found"}},
		"not accepted": {strings.Replace(accepted, `status: "True", reason: Accepted, message: applied`, `status: "False", reason: UnsupportedValue, message: "not applied: regex"`, 1),
			[]string{"demo/web-split on Service demo/web:80: Accepted=False (UnsupportedValue): not applied: regex"}},
		"stale status": {strings.Replace(accepted, "generation: 2}", "generation: 3}", 1),
			[]string{"demo/web-split on Service demo/web:80: Accepted is of generation 2, the route is at 3 (the controller has not caught up)",
				"demo/web-split on Service demo/web:80: ResolvedRefs is of generation 2, the route is at 3 (the controller has not caught up)"}},
		"no status of ours": {`
metadata: {name: web-split, namespace: demo}
spec:
  parentRefs: [{kind: Service, group: "", name: web}]`,
			[]string{"demo/web-split: no status from meshctl.io/mesh-controller for its Service parents"}},
		"a Gateway's route is not the mesh's": {`
metadata: {name: web-split, namespace: demo}
spec:
  parentRefs: [{name: gw}, {kind: Service, group: example.com, name: gone}]`, nil},
	} {
		t.Run(name, func(t *testing.T) {
			got := routeFindings("demo/web-split", routeObject(t, tc.route))
			if !slices.Equal(got, tc.want) {
				t.Errorf("findings %q, want %q", got, tc.want)
			}
		})
	}
}

func pod(name string, labels map[string]string, phase corev1.PodPhase, ports ...corev1.ContainerPort) corev1.Pod {
	always := corev1.ContainerRestartPolicyAlways
	return corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "demo", Labels: labels},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "mesh-proxy", RestartPolicy: &always, Ports: []corev1.ContainerPort{{Name: "admin", ContainerPort: 4191}}}},
			Containers:     []corev1.Container{{Name: "app", Ports: ports}},
		},
		Status: corev1.PodStatus{Phase: phase},
	}
}

func TestPolicyFindingsNamePoliciesThatSelectNothing(t *testing.T) {
	http := corev1.ContainerPort{Name: "http", ContainerPort: 8080}
	pods := map[string][]corev1.Pod{"demo": {
		pod("web-1", map[string]string{"app": "web"}, corev1.PodRunning, http),
		pod("web-2", map[string]string{"app": "web"}, corev1.PodPending, http),
		pod("job-1", map[string]string{"app": "job"}, corev1.PodSucceeded, http),
		pod("db-1", map[string]string{"app": "db"}, corev1.PodRunning),
	}}
	for name, tc := range map[string]struct {
		spec string
		want string
	}{
		"selects web by label and port name": {"podSelector: {matchLabels: {app: web}}\nport: http", ""},
		"by port number":                     {"podSelector: {matchLabels: {app: web}}\nport: 8080", ""},
		"every pod and port":                 {"podSelector: {}", ""},
		"every port of web":                  {"podSelector: {matchExpressions: [{key: app, operator: In, values: [web, api]}]}", ""},
		"no such label": {"podSelector: {matchLabels: {app: api}}",
			"demo/p: podSelector {app=api} selects no pod in namespace demo"},
		"only finished pods": {"podSelector: {matchLabels: {app: job}}",
			"demo/p: podSelector {app=job} selects no pod in namespace demo"},
		"no such port name": {"podSelector: {matchLabels: {app: web}}\nport: grpc",
			"demo/p: port grpc is no declared container port of the 2 pods it selects"},
		"no such port number": {"podSelector: {matchLabels: {app: web}}\nport: 9090",
			"demo/p: port 9090 is no declared container port of the 2 pods it selects"},
		"the proxy's port is not the app's": {"podSelector: {matchLabels: {app: web}}\nport: 4191",
			"demo/p: port 4191 is no declared container port of the 2 pods it selects"},
		"a pod without declared ports": {"podSelector: {matchLabels: {app: db}}\nport: 5432",
			"demo/p: port 5432 is no declared container port of the 1 pods it selects"},
		"invalid selector": {"podSelector: {matchExpressions: [{key: app, operator: Maybe}]}",
			"demo/p: podSelector is invalid"},
	} {
		t.Run(name, func(t *testing.T) {
			p := fromYAML[policyapi.AuthorizationPolicy](t, "metadata: {name: p, namespace: demo}\nspec:\n  from: [{spiffeID: '*'}]\n"+indent(tc.spec))
			got := policyFindings([]policyapi.AuthorizationPolicy{p}, pods)
			switch {
			case tc.want == "" && len(got) != 0:
				t.Errorf("findings %q, want none", got)
			case tc.want != "" && (len(got) != 1 || !strings.HasPrefix(got[0], tc.want)):
				t.Errorf("findings %q, want one starting %q", got, tc.want)
			}
		})
	}
	empty := fromYAML[policyapi.AuthorizationPolicy](t, "metadata: {name: p, namespace: quiet}\nspec: {podSelector: {}, from: [{spiffeID: '*'}]}")
	if got := policyFindings([]policyapi.AuthorizationPolicy{empty}, pods); !slices.Equal(got, []string{"quiet/p: podSelector {} (every pod) selects no pod in namespace quiet"}) {
		t.Errorf("a namespace without pods: %q", got)
	}
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ") + "\n"
}

func TestWarnAboutCapsTheList(t *testing.T) {
	if warnAbout(nil, "") != nil {
		t.Error("no findings is not a success")
	}
	var many []string
	for range maxFindings + 3 {
		many = append(many, "x")
	}
	err := warnAbout(many, "")
	if !isWarn(err) || !strings.HasSuffix(err.Error(), "; and 3 more") || strings.Count(err.Error(), "x") != maxFindings {
		t.Errorf("warnAbout(%d findings) = %v", len(many), err)
	}
	// A check narrowed to one namespace says so, with or without findings.
	if err := warnAbout(nil, "in shop only"); !isNote(err) || err.Error() != "in shop only" {
		t.Errorf("warnAbout(none, narrowed) = %v, want a note saying so", err)
	}
	if err := warnAbout([]string{"x"}, "in shop only"); !isWarn(err) || !strings.HasSuffix(err.Error(), "(in shop only)") {
		t.Errorf("warnAbout(a finding, narrowed) = %v", err)
	}
}

func toUnstructured(t *testing.T, apiVersion, kind string, obj any) *unstructured.Unstructured {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	return u
}

// TestPolicyChecksOnAFakeCluster runs the checks through the clients: a
// route to a missing Service warns, a good policy passes, and missing CRDs
// pass with a note.
func TestPolicyChecksOnAFakeCluster(t *testing.T) {
	policy := fromYAML[policyapi.AuthorizationPolicy](t, "metadata: {name: p, namespace: demo}\nspec: {podSelector: {matchLabels: {app: web}}, port: http, from: [{spiffeID: '*'}]}")
	web := pod("web-1", map[string]string{"app": "web"}, corev1.PodRunning, corev1.ContainerPort{Name: "http", ContainerPort: 8080})
	kube := kubefake.NewClientset(&web)
	lists := map[schema.GroupVersionResource]string{httpRoutes: "HTTPRouteList", grpcRoutes: "GRPCRouteList", policyapi.GroupVersionResource: "AuthorizationPolicyList"}
	grpc := &unstructured.Unstructured{Object: routeObject(t, strings.ReplaceAll(splitRoute, "web-split", "grpc-split"))}
	grpc.SetKind("GRPCRoute")
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), lists,
		&unstructured.Unstructured{Object: routeObject(t, splitRoute)}, grpc,
		toUnstructured(t, policyapi.Group+"/"+policyapi.Version, policyapi.Kind, &policy))
	env := &Env{Client: kube, Dynamic: dyn}
	results := Run(context.Background(), env, []Category{Policy()}, Options{})
	if r := results[0]; r.Status != Warning || r.Hint == "" ||
		!strings.Contains(r.Detail, "demo/web-split on Service demo/web:80: ResolvedRefs=False (BackendNotFound)") ||
		!strings.Contains(r.Detail, "demo/grpc-split on Service demo/web:80: ResolvedRefs=False (BackendNotFound)") {
		t.Errorf("routes: %+v", r)
	}
	if r := results[1]; r.Status != OK || r.Detail != "" {
		t.Errorf("policies: %+v", r)
	}

	bare := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), lists)
	bare.PrependReactor("list", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewNotFound(a.GetResource().GroupResource(), "")
	})
	results = Run(context.Background(), &Env{Client: kubefake.NewClientset(), Dynamic: bare}, []Category{Policy()}, Options{})
	for _, r := range results {
		if r.Status != OK || !strings.Contains(r.Detail, "not installed") {
			t.Errorf("%s without its CRD: %+v, want ok with a note", r.Name, r)
		}
	}
}

// TestUninjectedPodsAreNamed: in a namespace marked for injection, a
// running pod without a proxy (created while the injector was away) is
// named; pods with one, opted out, on the host network, finished, or in
// unmarked namespaces are not.
func TestUninjectedPodsAreNamed(t *testing.T) {
	pod := func(ns, name string, mod func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{}, Annotations: map[string]string{}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning}}
		if mod != nil {
			mod(p)
		}
		return p
	}
	marked := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Annotations: map[string]string{meshnames.InjectAnnotation: "enabled"}}}
	plain := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "other"}}
	client := kubefake.NewClientset(marked, plain,
		pod("shop", "missed", nil),
		pod("shop", "meshed", func(p *corev1.Pod) { p.Labels[meshnames.VersionLabel] = "v1" }),
		pod("shop", "opted-out", func(p *corev1.Pod) { p.Annotations[meshnames.InjectAnnotation] = "disabled" }),
		pod("shop", "labelled-out", func(p *corev1.Pod) { p.Labels[meshnames.DisabledLabel] = "disabled" }),
		pod("shop", "host", func(p *corev1.Pod) { p.Spec.HostNetwork = true }),
		pod("shop", "done", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }),
		pod("other", "unmarked", nil),
		pod("other", "asked", func(p *corev1.Pod) { p.Annotations[meshnames.InjectAnnotation] = "enabled" }),
		pod("kube-system", "coredns", nil),
		pod("meshctl", "controller", nil),
	)
	kubeSystem := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-system", Annotations: map[string]string{meshnames.InjectAnnotation: "enabled"}}}
	if err := client.Tracker().Add(kubeSystem); err != nil {
		t.Fatal(err)
	}
	err := uninjectedPods(context.Background(), &Env{Client: client, Namespace: "meshctl"})
	if err == nil || !isWarn(err) || err.Error() != "2 pods run without a proxy: other/asked, shop/missed" {
		t.Errorf("got %v, want a warning naming other/asked (its own annotation) and shop/missed only", err)
	}
	if err := uninjectedPods(context.Background(), &Env{Client: kubefake.NewClientset(marked, pod("shop", "meshed", func(p *corev1.Pod) { p.Labels[meshnames.VersionLabel] = "v1" }))}); err != nil {
		t.Errorf("all injected: %v", err)
	}
}

// TestSettledChecksAreNotWaitedFor: --wait retries a failing check that
// can settle, never one of a settled category (the API unreachable, its
// version, permissions): those fail at once.
func TestSettledChecksAreNotWaitedFor(t *testing.T) {
	calls := map[string]int{}
	failing := func(name string) Check {
		return Check{Name: name, Run: func(context.Context, *Env) error { calls[name]++; return errors.New("no") }}
	}
	cats := []Category{{Name: "api", Settled: true, Checks: []Check{failing("reach")}}, {Name: "pods", Checks: []Check{failing("ready")}}}
	start := time.Now()
	var done []Result
	Run(context.Background(), &Env{}, cats, Options{Wait: 300 * time.Millisecond, RetryEvery: 50 * time.Millisecond, Done: func(r Result) { done = append(done, r) }})
	if calls["reach"] != 1 || calls["ready"] < 3 || time.Since(start) > 5*time.Second {
		t.Errorf("runs: %v in %v; want the settled check once, the other retried until --wait", calls, time.Since(start))
	}
	if len(done) != 2 || done[0].Name != "reach" || done[1].Name != "ready" {
		t.Errorf("results as they came: %+v", done)
	}
}
