package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/meshctl/meshctl/cli/proxystats"
	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/policyapi"
)

func policy(name string, match map[string]string, port any, from ...string) *unstructured.Unstructured {
	var clients []any
	for _, sa := range from {
		clients = append(clients, map[string]any{"serviceAccount": map[string]any{"name": sa}})
	}
	spec := map[string]any{"podSelector": map[string]any{"matchLabels": toAny(match)}, "from": clients}
	if port != nil {
		spec["port"] = port
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": policyapi.Group + "/" + policyapi.Version, "kind": "AuthorizationPolicy",
		"metadata": map[string]any{"name": name, "namespace": "shop"}, "spec": spec,
	}}
}

func toAny(m map[string]string) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// TestAuthzSaysWhatDecidesEachPort: policies selecting the pods cover
// their ports (by number or by name); a port none covers falls to the
// default, whose source is named; the decisions are summed over the pods
// as rates over the window, a restarted proxy's counted whole.
func TestAuthzSaysWhatDecidesEachPort(t *testing.T) {
	ctx := context.Background()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {ContainerPort: 9090}, {Name: "admin", ContainerPort: 7070}}}}}}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Annotations: map[string]string{meshnames.DefaultPolicyAnnotation: meshnames.DefaultDeny}}}
	scheme := runtime.NewScheme()
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme, map[schema.GroupVersionResource]string{policyapi.GroupVersionResource: "AuthorizationPolicyList"},
		policy("by-name", map[string]string{"app": "web"}, "http", "load"),
		policy("by-number", map[string]string{"app": "web"}, int64(7070), "ops"),
		policy("elsewhere", map[string]string{"app": "db"}, nil, "web"),
	)
	r := &authzReport{pods: []*corev1.Pod{pod}}
	var err error
	if r.Default, err = defaultPolicyOf(ctx, fake.NewClientset(ns), "meshctl", "shop", r.pods); err != nil {
		t.Fatal(err)
	}
	if err := r.selectPolicies(ctx, dyn, "shop"); err != nil {
		t.Fatal(err)
	}
	r.coverPorts()
	if r.Default.Policy != "deny" || !strings.Contains(r.Default.Source, "namespace shop") {
		t.Errorf("default %+v, want deny from the namespace", r.Default)
	}
	got := map[int]string{}
	for _, p := range r.Ports {
		got[p.Port] = strings.Join(p.Policies, ",") + "|" + p.Default
	}
	want := map[int]string{7070: "shop/by-number|", 8080: "shop/by-name|", 9090: "|deny"}
	for port, w := range want {
		if got[port] != w {
			t.Errorf("port %d: %q, want %q (all: %v)", port, got[port], w, got)
		}
	}
	if len(r.Policies) != 2 || r.Policies[0].From[0] != "sa/load -n shop" {
		t.Errorf("policies %+v", r.Policies)
	}

	d := func(rule, dec string) proxystats.Decision { return proxystats.Decision{Rule: rule, Decision: dec} }
	steady := &proxystats.Pod{Name: "web-1",
		Start: &proxystats.Sample{Started: 1, Decisions: map[proxystats.Decision]float64{d("shop/by-name", "allow"): 100, d("default:deny", "deny"): 10}},
		End:   &proxystats.Sample{Started: 1, Decisions: map[proxystats.Decision]float64{d("shop/by-name", "allow"): 200, d("default:deny", "deny"): 30}}}
	restarted := &proxystats.Pod{Name: "web-2",
		Start: &proxystats.Sample{Started: 1, Decisions: map[proxystats.Decision]float64{d("shop/by-name", "allow"): 500}},
		End:   &proxystats.Sample{Started: 2, Decisions: map[proxystats.Decision]float64{d("shop/by-name", "allow"): 50, d("rate-limit", "rate_limited"): 10}}}
	r.rates([]proxystats.Resource{{Pods: []*proxystats.Pod{steady, restarted}}}, 10*time.Second)
	rates := map[string]authzRate{}
	for _, a := range r.Decisions {
		rates[a.Rule] = a
	}
	if a := rates["shop/by-name"]; a.Allowed != 15 {
		t.Errorf("shop/by-name allowed %v/s, want 15 (100 + a restarted proxy's 50, over 10 s)", a.Allowed)
	}
	if a := rates["default:deny"]; a.Denied != 2 {
		t.Errorf("default:deny denied %v/s, want 2", a.Denied)
	}
	if a := rates["rate-limit"]; a.RateLimited != 1 {
		t.Errorf("rate-limit %v/s, want 1", a.RateLimited)
	}
	var out, warn strings.Builder
	if err := r.write(&out, &warn); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"Default inbound policy: deny (from namespace shop's annotation", "9090   default: deny", "shop/by-name           http   -       sa/load -n shop", "shop/by-name   15          0          0"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("the table lacks %q:\n%s", s, out.String())
		}
	}
}

// TestAuthzTakesTheDefaultFromTheProxiesWhenItCannotReadIt: a user who may
// not read where the default comes from gets the one the proxies decided by,
// when they agree, and "unknown" when they do not.
func TestAuthzTakesTheDefaultFromTheProxiesWhenItCannotReadIt(t *testing.T) {
	pod := func(rules ...string) *proxystats.Pod {
		s := &proxystats.Sample{Decisions: map[proxystats.Decision]float64{}}
		for _, r := range rules {
			s.Decisions[proxystats.Decision{Rule: r, Decision: "allow"}] = 1
		}
		return &proxystats.Pod{End: s}
	}
	for _, c := range []struct {
		pods []*proxystats.Pod
		want string
	}{
		{[]*proxystats.Pod{pod("probe", "default:deny"), pod("default:deny")}, "deny"},
		{[]*proxystats.Pod{pod("default:deny"), pod("default:all-authenticated")}, defaultUnknown},
		{[]*proxystats.Pod{pod("shop/by-name")}, defaultUnknown},
	} {
		r := &authzReport{Default: authzDefault{Policy: defaultUnknown, Source: "cannot be read"}}
		r.defaultFromProxies([]proxystats.Resource{{Pods: c.pods}})
		if r.Default.Policy != c.want {
			t.Errorf("%+v: default %q, want %q", c.pods, r.Default.Policy, c.want)
		}
	}
}

// TestAuthzSaysWhenOnlySomePodsCarryTheDefault: -l can select pods of which
// some carry the annotation: the others' default is shown beside it.
func TestAuthzSaysWhenOnlySomePodsCarryTheDefault(t *testing.T) {
	annotated := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "shop", Annotations: map[string]string{meshnames.DefaultPolicyAnnotation: meshnames.DefaultDeny}}}
	plain := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "b", Namespace: "shop"}}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}
	d, err := defaultPolicyOf(context.Background(), fake.NewClientset(ns), "meshctl", "shop", []*corev1.Pod{annotated, plain})
	if err != nil {
		t.Fatal(err)
	}
	if d.Policy != "all-unauthenticated,deny" || !strings.Contains(d.Source, "on 1 of the 2 pods") || !strings.Contains(d.Source, "no control plane in meshctl") {
		t.Errorf("default %+v, want both values and where each comes from", d)
	}
	d, _ = defaultPolicyOf(context.Background(), fake.NewClientset(ns), "meshctl", "shop", []*corev1.Pod{annotated})
	if d.Policy != "deny" || strings.Contains(d.Source, "others") {
		t.Errorf("every pod annotated: %+v", d)
	}
}
