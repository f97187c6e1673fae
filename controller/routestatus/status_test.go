package routestatus

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshctl/meshctl/controller/destination"
	"github.com/meshctl/meshctl/internal/gamma"
)

func ptr[T any](v T) *T { return &v }

var services = map[string]*corev1.Service{
	"mesh/echo": {ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "mesh"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}, {Name: "grpc", Port: 7070}}}},
	"mesh/echo-v2": {ObjectMeta: metav1.ObjectMeta{Name: "echo-v2", Namespace: "mesh"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}},
}

func lookup(ns, name string) (*corev1.Service, bool) {
	s, ok := services[ns+"/"+name]
	return s, ok
}

func serviceParent(name string, port int32, section string) gatewayv1.ParentReference {
	p := gatewayv1.ParentReference{Group: ptr(gatewayv1.Group("")), Kind: ptr(gatewayv1.Kind("Service")), Name: gatewayv1.ObjectName(name)}
	if port != 0 {
		p.Port = ptr(gatewayv1.PortNumber(port))
	}
	if section != "" {
		p.SectionName = ptr(gatewayv1.SectionName(section))
	}
	return p
}

func svcRef(ns, name string, port int32) destination.BackendRef {
	return destination.BackendRef{Namespace: ns, Name: name, Port: port, Kind: "Service", ServiceKind: true}
}

// conds is "Type=Status/Reason" of each condition, in order.
func conds(p gatewayv1.RouteParentStatus) string {
	var out []string
	for _, c := range p.Conditions {
		out = append(out, c.Type+"="+string(c.Status)+"/"+c.Reason)
	}
	return strings.Join(out, " ")
}

func TestParentsConditions(t *testing.T) {
	good := []destination.BackendRef{svcRef("mesh", "echo-v2", 80)}
	for _, tc := range []struct {
		name        string
		parent      gatewayv1.ParentReference
		translation destination.Translation
		want        string
	}{
		{"accepted, every port", serviceParent("echo", 0, ""), destination.Translation{Backends: good},
			"Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs"},
		{"accepted, by port", serviceParent("echo", 7070, ""), destination.Translation{Backends: good},
			"Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs"},
		{"accepted, by port name", serviceParent("echo", 0, "grpc"), destination.Translation{Backends: good},
			"Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs"},
		{"no such Service", serviceParent("nope", 0, ""), destination.Translation{Backends: good},
			"Accepted=False/NoMatchingParent ResolvedRefs=True/ResolvedRefs"},
		{"no such port", serviceParent("echo", 81, ""), destination.Translation{Backends: good},
			"Accepted=False/NoMatchingParent ResolvedRefs=True/ResolvedRefs"},
		{"no such port name", serviceParent("echo", 0, "admin"), destination.Translation{Backends: good},
			"Accepted=False/NoMatchingParent ResolvedRefs=True/ResolvedRefs"},
		{"unsupported", serviceParent("echo", 0, ""), destination.Translation{Unsupported: "regex", Reason: gatewayv1.RouteReasonUnsupportedValue, Backends: good},
			"Accepted=False/UnsupportedValue ResolvedRefs=True/ResolvedRefs"},
		{"missing backend", serviceParent("echo", 0, ""), destination.Translation{Backends: append(good, svcRef("mesh", "echo-v3", 80))},
			"Accepted=True/Accepted ResolvedRefs=False/BackendNotFound"},
		{"missing backend port", serviceParent("echo", 0, ""), destination.Translation{Backends: []destination.BackendRef{svcRef("mesh", "echo-v2", 8080)}},
			"Accepted=True/Accepted ResolvedRefs=False/BackendNotFound"},
		{"backend of another namespace", serviceParent("echo", 0, ""), destination.Translation{Backends: []destination.BackendRef{svcRef("other", "echo-v2", 80)}},
			"Accepted=True/Accepted ResolvedRefs=False/BackendNotFound"},
		{"invalid kind", serviceParent("echo", 0, ""), destination.Translation{Backends: append([]destination.BackendRef{svcRef("mesh", "echo-v3", 80)},
			destination.BackendRef{Namespace: "mesh", Name: "b", Kind: "example.org/Bucket"})},
			"Accepted=True/Accepted ResolvedRefs=False/InvalidKind"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := metav1.NewTime(time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC))
			got := Parents(Route{Namespace: "mesh", Generation: 3, Parents: []gatewayv1.ParentReference{tc.parent}, Translation: tc.translation}, lookup, nil, now)
			if len(got) != 1 {
				t.Fatalf("%d parents, want 1", len(got))
			}
			if c := conds(got[0]); c != tc.want {
				t.Errorf("conditions %s, want %s", c, tc.want)
			}
			if got[0].ControllerName != gamma.ControllerName || got[0].ParentRef.Name != tc.parent.Name {
				t.Errorf("entry %+v", got[0])
			}
			for _, c := range got[0].Conditions {
				if c.ObservedGeneration != 3 || !c.LastTransitionTime.Equal(&now) || c.Message == "" {
					t.Errorf("condition %+v: want generation 3, time now and a message", c)
				}
			}
		})
	}
}

// TestParentsKeepOthersAndTransitionTimes: other controllers' entries and
// Gateway parents are left alone, a consumer route's parent is looked up
// in its own namespace, repeated parentRefs give one entry, and a
// condition keeps its lastTransitionTime until its status changes.
func TestParentsKeepOthersAndTransitionTimes(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC))
	t1 := metav1.NewTime(t0.Add(time.Hour))
	consumerParent := serviceParent("echo", 80, "")
	consumerParent.Namespace = ptr(gatewayv1.Namespace("mesh"))
	other := gatewayv1.RouteParentStatus{ParentRef: gatewayv1.ParentReference{Name: "gw"}, ControllerName: "example.org/gateway",
		Conditions: []metav1.Condition{{Type: "Accepted", Status: "True", Reason: "Accepted", LastTransitionTime: t0}}}
	r := Route{Namespace: "client", Generation: 1, Parents: []gatewayv1.ParentReference{{Name: "gw"}, consumerParent, consumerParent},
		Translation: destination.Translation{Backends: []destination.BackendRef{svcRef("mesh", "echo-v2", 80)}}}
	first := Parents(r, lookup, []gatewayv1.RouteParentStatus{other}, t0)
	if len(first) != 2 || first[0].ControllerName != other.ControllerName || first[1].ControllerName != gamma.ControllerName {
		t.Fatalf("parents %+v: want the other controller's entry, then one of ours", first)
	}
	if c := conds(first[1]); c != "Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs" {
		t.Errorf("consumer route: %s", c)
	}
	// Nothing changed: same status, same times, Equal says so.
	again := Parents(r, lookup, first, t1)
	if !Equal(again, first) {
		t.Errorf("unchanged route: status changed from %+v to %+v", first, again)
	}
	// The backend goes: ResolvedRefs moves (new time), Accepted keeps its time.
	r.Translation.Backends = []destination.BackendRef{svcRef("mesh", "gone", 80)}
	r.Generation = 2
	changed := Parents(r, lookup, again, t1)
	if Equal(changed, again) {
		t.Fatal("a missing backend left the status as it was")
	}
	acc, res := changed[1].Conditions[0], changed[1].Conditions[1]
	if !acc.LastTransitionTime.Equal(&t0) || !res.LastTransitionTime.Equal(&t1) || res.Reason != "BackendNotFound" || acc.ObservedGeneration != 2 {
		t.Errorf("after the change: Accepted %+v, ResolvedRefs %+v", acc, res)
	}
}

// TestEqualIgnoresWhereOurEntriesSit: another controller putting its
// entries after ours is no change of ours to write back.
func TestEqualIgnoresWhereOurEntriesSit(t *testing.T) {
	ours := gatewayv1.RouteParentStatus{ParentRef: serviceParent("echo", 0, ""), ControllerName: gamma.ControllerName}
	theirs := gatewayv1.RouteParentStatus{ParentRef: gatewayv1.ParentReference{Name: "gw"}, ControllerName: "example.org/gateway"}
	if !Equal([]gatewayv1.RouteParentStatus{ours, theirs}, []gatewayv1.RouteParentStatus{theirs, ours}) {
		t.Error("order of ours among theirs counted as a change")
	}
	if Equal([]gatewayv1.RouteParentStatus{ours}, []gatewayv1.RouteParentStatus{ours, theirs}) {
		t.Error("a missing entry of another controller not seen")
	}
}

// TestParentsGRPCConflict: within a group (the routes of one namespace), a
// supported GRPCRoute on every Service port an HTTPRoute's parentRef
// matches makes that parentRef Conflicted (GEP-1426); another group's
// GRPCRoute, or one on only some of the ports, leaves it Accepted.
func TestParentsGRPCConflict(t *testing.T) {
	good := destination.Translation{Backends: []destination.BackendRef{svcRef("mesh", "echo-v2", 80)}}
	consumerParent := func(port int32) gatewayv1.ParentReference {
		p := serviceParent("echo", port, "")
		p.Namespace = ptr(gatewayv1.Namespace("mesh"))
		return p
	}
	for _, tc := range []struct {
		name    string
		route   Route
		want    string
		message string
	}{
		{"same port, same namespace", Route{Namespace: "mesh", Parents: []gatewayv1.ParentReference{serviceParent("echo", 80, "")}, Translation: good,
			GRPCRoutes: []GRPCParents{{Name: "mesh/grpc", Parents: []gatewayv1.ParentReference{serviceParent("echo", 80, "")}}}},
			"Accepted=False/Conflicted ResolvedRefs=True/ResolvedRefs", "GRPCRoute mesh/grpc"},
		{"same port by name", Route{Namespace: "mesh", Parents: []gatewayv1.ParentReference{serviceParent("echo", 80, "")}, Translation: good,
			GRPCRoutes: []GRPCParents{{Name: "mesh/grpc", Parents: []gatewayv1.ParentReference{serviceParent("echo", 0, "http")}}}},
			"Accepted=False/Conflicted ResolvedRefs=True/ResolvedRefs", "GRPCRoute mesh/grpc"},
		{"every port, two GRPCRoutes", Route{Namespace: "mesh", Parents: []gatewayv1.ParentReference{serviceParent("echo", 0, "")}, Translation: good,
			GRPCRoutes: []GRPCParents{
				{Name: "mesh/b", Parents: []gatewayv1.ParentReference{serviceParent("echo", 7070, "")}},
				{Name: "mesh/a", Parents: []gatewayv1.ParentReference{serviceParent("echo", 80, "")}},
			}},
			"Accepted=False/Conflicted ResolvedRefs=True/ResolvedRefs", "GRPCRoutes mesh/a, mesh/b"},
		{"consumer HTTPRoute, producer GRPCRoute", Route{Namespace: "client", Parents: []gatewayv1.ParentReference{consumerParent(80)}, Translation: good}, // the producer's GRPCRoute is of another group: not passed
			"Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs", ""},
		{"consumer HTTPRoute and consumer GRPCRoute", Route{Namespace: "client", Parents: []gatewayv1.ParentReference{consumerParent(80)}, Translation: good,
			GRPCRoutes: []GRPCParents{{Name: "client/grpc", Parents: []gatewayv1.ParentReference{consumerParent(0)}}}},
			"Accepted=False/Conflicted ResolvedRefs=True/ResolvedRefs", "GRPCRoute client/grpc"},
		{"GRPCRoute on another port", Route{Namespace: "mesh", Parents: []gatewayv1.ParentReference{serviceParent("echo", 80, "")}, Translation: good,
			GRPCRoutes: []GRPCParents{{Name: "mesh/grpc", Parents: []gatewayv1.ParentReference{serviceParent("echo", 7070, "")}}}},
			"Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs", ""},
		{"HTTPRoute on two ports, GRPCRoute on one", Route{Namespace: "mesh", Parents: []gatewayv1.ParentReference{serviceParent("echo", 0, "")}, Translation: good,
			GRPCRoutes: []GRPCParents{{Name: "mesh/grpc", Parents: []gatewayv1.ParentReference{serviceParent("echo", 7070, "")}}}},
			"Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs", ""},
		{"GRPCRoute on another Service", Route{Namespace: "mesh", Parents: []gatewayv1.ParentReference{serviceParent("echo", 80, "")}, Translation: good,
			GRPCRoutes: []GRPCParents{{Name: "mesh/grpc", Parents: []gatewayv1.ParentReference{serviceParent("echo-v2", 80, "")}}}},
			"Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Parents(tc.route, lookup, nil, metav1.Now())
			if len(got) != 1 {
				t.Fatalf("%d parents, want 1", len(got))
			}
			if c := conds(got[0]); c != tc.want {
				t.Errorf("conditions %s, want %s", c, tc.want)
			}
			if msg := got[0].Conditions[0].Message; !strings.Contains(msg, tc.message) {
				t.Errorf("message %q does not name %q", msg, tc.message)
			}
		})
	}
}
