//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshctl/meshctl/identity/ca"
	"github.com/meshctl/meshctl/internal/kubeapply"
	"github.com/meshctl/meshctl/internal/meshnames"
)

// routeStatusManifests are three Services and the routes attached to them:
// one with a missing backend, one with a redirect where meshctl cannot
// honour one (a backendRef's filter), one with a regular expression, one
// naming a Service port that does not exist, and an HTTPRoute on a port a
// GRPCRoute takes over.
const routeStatusManifests = `
apiVersion: v1
kind: Service
metadata: {name: web, namespace: NS}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-v1, namespace: NS}
spec:
  selector: {app: web-v1}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: missing-backend, namespace: NS}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - backendRefs:
    - {name: web-v1, port: 80, weight: 90}
    - {name: web-gone, port: 80, weight: 10}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: invalid-redirect, namespace: NS}
spec:
  parentRefs: [{group: "", kind: Service, name: web}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /old}}]
    backendRefs:
    - name: web-v1
      port: 80
      filters:
      - type: RequestRedirect
        requestRedirect: {hostname: example.org, statusCode: 301}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: regex, namespace: NS}
spec:
  parentRefs: [{group: "", kind: Service, name: web}]
  rules:
  - matches: [{path: {type: RegularExpression, value: "/x.*"}}]
    backendRefs: [{name: web-v1, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: no-such-port, namespace: NS}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 81}]
  rules:
  - backendRefs: [{name: web-v1, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: rpc, namespace: NS}
spec:
  selector: {app: rpc}
  ports: [{name: grpc, port: 7070, targetPort: 7070, appProtocol: kubernetes.io/h2c}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: rpc, namespace: NS}
spec:
  parentRefs: [{group: "", kind: Service, name: rpc, port: 7070}]
  rules:
  - backendRefs: [{name: rpc, port: 7070}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: displaced, namespace: NS}
spec:
  parentRefs: [{group: "", kind: Service, name: rpc, port: 7070}]
  rules:
  - backendRefs: [{name: rpc, port: 7070}]
`

var httpRoutesGVR = schema.GroupVersionResource{Group: gatewayv1.GroupName, Version: "v1", Resource: "httproutes"}

// meshParentStatus reads a route's status entries written by meshctl, as
// "Type=Status/Reason" per condition, with the entries themselves.
func meshParentStatus(ctx context.Context, dyn dynamic.Interface, ns, name string) (string, []gatewayv1.RouteParentStatus, error) {
	u, err := dyn.Resource(httpRoutesGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", nil, err
	}
	var hr gatewayv1.HTTPRoute
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &hr); err != nil {
		return "", nil, fmt.Errorf("read %s: %w", name, err)
	}
	var ours []gatewayv1.RouteParentStatus
	var conds []string
	for _, p := range hr.Status.Parents {
		if p.ControllerName != "meshctl.io/mesh-controller" {
			continue
		}
		ours = append(ours, p)
		for _, c := range p.Conditions {
			conds = append(conds, c.Type+"="+string(c.Status)+"/"+c.Reason)
			if c.ObservedGeneration != hr.Generation {
				return "", nil, fmt.Errorf("%s: condition %s observed generation %d, the route is at %d", name, c.Type, c.ObservedGeneration, hr.Generation)
			}
		}
	}
	return strings.Join(conds, " "), ours, nil
}

// TestRouteStatusOnTheCluster installs the mesh and checks the conditions
// the controller writes on HTTPRoutes attached to Services, on the real API
// server: a missing backend is ResolvedRefs=False/BackendNotFound, a
// redirect meshctl cannot honour and a regular expression are
// Accepted=False/UnsupportedValue, a port the Service lacks is
// Accepted=False/NoMatchingParent; and a status that does not change is
// not rewritten (its lastTransitionTime and resourceVersion stay).
func TestRouteStatusOnTheCluster(t *testing.T) {
	anchor := mustCA(t)(ca.NewTrustAnchor("cluster.local", 24*time.Hour))
	issuer := mustCA(t)(ca.NewIssuer(anchor, "cluster.local", 12*time.Hour))
	deployControlPlane(t, "24h", issuer, anchor)

	ns := newNamespace(t, "routestatus")
	objs, err := kubeapply.Decode([]byte(strings.ReplaceAll(routeStatusManifests, "namespace: NS", "namespace: "+ns)))
	if err != nil {
		t.Fatal(err)
	}
	applier, err := kubeapply.New(cluster.cfg, "meshctl-e2e")
	if err != nil {
		t.Fatal(err)
	}
	if err := applier.Apply(context.Background(), objs); err != nil {
		t.Fatalf("apply the routes (the API server must accept them all): %v", err)
	}
	dyn, err := dynamic.NewForConfig(cluster.cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"missing-backend":  "Accepted=True/Accepted ResolvedRefs=False/BackendNotFound",
		"invalid-redirect": "Accepted=False/UnsupportedValue ResolvedRefs=True/ResolvedRefs",
		"regex":            "Accepted=False/UnsupportedValue ResolvedRefs=True/ResolvedRefs",
		"no-such-port":     "Accepted=False/NoMatchingParent ResolvedRefs=True/ResolvedRefs",
		"displaced":        "Accepted=False/Conflicted ResolvedRefs=True/ResolvedRefs",
	}
	for name, w := range want {
		eventually(t, name+" status "+w, 2*time.Minute, func(ctx context.Context) error {
			got, _, err := meshParentStatus(ctx, dyn, ns, name)
			if err != nil {
				return err
			}
			if got != w {
				return fmt.Errorf("conditions %q", got)
			}
			return nil
		})
	}

	// One replica writes: the holder of the route-status Lease, a
	// controller pod.
	ctx := context.Background()
	lease, err := cluster.client.CoordinationV1().Leases("meshctl").Get(ctx, meshnames.RouteStatusLease, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the route-status Lease: %v", err)
	}
	if lease.Spec.HolderIdentity == nil {
		t.Fatal("the route-status Lease has no holder")
	}
	if _, err := cluster.client.CoreV1().Pods("meshctl").Get(ctx, *lease.Spec.HolderIdentity, metav1.GetOptions{}); err != nil {
		t.Errorf("the route-status Lease's holder %q is no controller pod: %v", *lease.Spec.HolderIdentity, err)
	}

	// Nothing changes: the controller leaves the status alone.
	before, err := dyn.Resource(httpRoutesGVR).Namespace(ns).Get(ctx, "missing-backend", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, parentsBefore, err := meshParentStatus(ctx, dyn, ns, "missing-backend")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Second)
	after, err := dyn.Resource(httpRoutesGVR).Namespace(ns).Get(ctx, "missing-backend", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if before.GetResourceVersion() != after.GetResourceVersion() {
		t.Errorf("missing-backend was rewritten with nothing changed (resourceVersion %s → %s): a status write loop",
			before.GetResourceVersion(), after.GetResourceVersion())
	}

	// The backend appears: ResolvedRefs turns True, Accepted keeps its time.
	gone := strings.ReplaceAll(strings.SplitN(routeStatusManifests, "---", 3)[1], "web-v1", "web-gone")
	objs, err = kubeapply.Decode([]byte(strings.ReplaceAll(gone, "namespace: NS", "namespace: "+ns)))
	if err != nil {
		t.Fatal(err)
	}
	if err := applier.Apply(ctx, objs); err != nil {
		t.Fatal(err)
	}
	eventually(t, "missing-backend resolved once web-gone exists", 2*time.Minute, func(ctx context.Context) error {
		got, parents, err := meshParentStatus(ctx, dyn, ns, "missing-backend")
		if err != nil {
			return err
		}
		if got != "Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs" {
			return fmt.Errorf("conditions %q", got)
		}
		if a, b := parents[0].Conditions[0].LastTransitionTime, parentsBefore[0].Conditions[0].LastTransitionTime; !a.Equal(&b) {
			return fmt.Errorf("Accepted stayed True but its lastTransitionTime moved from %s to %s", b, a)
		}
		return nil
	})
}
