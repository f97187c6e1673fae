// Package routestatus writes the status of HTTPRoutes and GRPCRoutes
// attached to Services (GAMMA): for every Service parentRef, whether
// meshctl applies the route (Accepted) and whether its backends exist
// (ResolvedRefs), under the controller name ControllerName. The
// computation (Parents) is pure; Writer follows the routes and Services
// and updates the status subresource when, and only when, it changes.
package routestatus

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshctl/meshctl/controller/destination"
	"github.com/meshctl/meshctl/internal/gamma"
)

// ReasonConflicted is the Accepted reason of an HTTPRoute ignored because
// GRPCRoutes attach to the same parent (GEP-1426); gateway-api v1.6.3 has
// no constant for it.
const ReasonConflicted gatewayv1.RouteConditionReason = "Conflicted"

// ServiceLookup finds a Service; false when there is none.
type ServiceLookup func(namespace, name string) (*corev1.Service, bool)

// Route is what the status of a route is computed from.
type Route struct {
	// Namespace of the route (parentRefs default to it).
	Namespace string
	// Generation is the route's metadata.generation (observedGeneration).
	Generation int64
	// Parents are the route's spec.parentRefs.
	Parents []gatewayv1.ParentReference
	// Translation is what meshctl makes of the route's spec.
	Translation destination.Translation
	// GRPCRoutes, for an HTTPRoute, are the supported GRPCRoutes of its
	// own namespace (its group: the producer routes, or one namespace's
	// consumer routes) that name a Service: on the Service ports they
	// attach to, the mesh applies them and not the group's HTTPRoutes.
	// Unused for a GRPCRoute.
	GRPCRoutes []GRPCParents
}

// GRPCParents is a supported GRPCRoute as an HTTPRoute's status sees it.
type GRPCParents struct {
	// Name is the GRPCRoute's namespace/name.
	Name string
	// Parents are its spec.parentRefs (of the HTTPRoute's namespace).
	Parents []gatewayv1.ParentReference
}

// Parents returns the route's new status.parents: the entries of other
// controllers as they are, then one entry of ours per distinct Service
// parentRef, in spec order. A condition keeps its lastTransitionTime while
// its status stays the same; now is the time of those that change.
func Parents(r Route, services ServiceLookup, existing []gatewayv1.RouteParentStatus, now metav1.Time) []gatewayv1.RouteParentStatus {
	var out []gatewayv1.RouteParentStatus
	previous := map[string]gatewayv1.RouteParentStatus{}
	for _, p := range existing {
		if p.ControllerName != gamma.ControllerName {
			out = append(out, p)
			continue
		}
		previous[refKey(p.ParentRef)] = p
	}
	resolved := resolvedRefs(r.Translation.Backends, services)
	seen := map[string]bool{}
	for _, ref := range r.Parents {
		key := refKey(ref)
		if !gamma.IsServiceParent(ref) || seen[key] {
			continue
		}
		seen[key] = true
		accepted := acceptedFor(r, ref, services)
		prev := previous[key].Conditions
		out = append(out, gatewayv1.RouteParentStatus{
			ParentRef:      ref,
			ControllerName: gamma.ControllerName,
			Conditions: []metav1.Condition{
				condition(prev, accepted, r.Generation, now),
				condition(prev, resolved, r.Generation, now),
			},
		})
	}
	return out
}

// Equal reports whether two status.parents say the same: the same entries
// of ours, and the same of other controllers, each in order (times compared
// as the API server stores them, to the second). Where ours sit among the
// others does not count, so that two writers never reorder back and forth.
func Equal(a, b []gatewayv1.RouteParentStatus) bool {
	ourA, otherA := split(a)
	ourB, otherB := split(b)
	return sameJSON(ourA, ourB) && sameJSON(otherA, otherB)
}

func split(ps []gatewayv1.RouteParentStatus) (ours, others []gatewayv1.RouteParentStatus) {
	for _, p := range ps {
		if p.ControllerName == gamma.ControllerName {
			ours = append(ours, p)
		} else {
			others = append(others, p)
		}
	}
	return ours, others
}

func sameJSON(a, b []gatewayv1.RouteParentStatus) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && string(ja) == string(jb)
}

func refKey(p gatewayv1.ParentReference) string {
	b, _ := json.Marshal(p)
	return string(b)
}

// acceptedFor is the Accepted condition of one Service parentRef.
func acceptedFor(r Route, ref gatewayv1.ParentReference, services ServiceLookup) metav1.Condition {
	ns := gamma.ParentNamespace(r.Namespace, ref)
	c := metav1.Condition{Type: string(gatewayv1.RouteConditionAccepted), Status: metav1.ConditionFalse, Reason: string(gatewayv1.RouteReasonNoMatchingParent)}
	svc, ok := services(ns, string(ref.Name))
	if !ok {
		c.Message = fmt.Sprintf("Service %s/%s not found", ns, ref.Name)
		return c
	}
	matched := false
	for _, port := range svc.Spec.Ports {
		if destination.ParentMatchesPort(ref, port) {
			matched = true
		}
	}
	if !matched {
		c.Message = fmt.Sprintf("Service %s/%s has no port%s", ns, ref.Name, portText(ref))
		return c
	}
	if t := r.Translation; t.Unsupported != "" {
		c.Reason, c.Message = string(t.Reason), "not applied: "+t.Unsupported
		return c
	}
	if grpc := takenBy(r, ns, svc, ref); len(grpc) > 0 {
		what := "GRPCRoute " + grpc[0] + " attaches"
		if len(grpc) > 1 {
			what = "GRPCRoutes " + strings.Join(grpc, ", ") + " attach"
		}
		c.Reason = string(ReasonConflicted)
		c.Message = fmt.Sprintf("not applied: %s to the same Service %s/%s port%s (GEP-1426)", what, ns, ref.Name, portText(ref))
		return c
	}
	c.Status, c.Reason, c.Message = metav1.ConditionTrue, string(gatewayv1.RouteReasonAccepted), "applied by the mesh"
	return c
}

// takenBy names the GRPCRoutes of r's group that take over every port of
// svc (in namespace ns) that ref matches, sorted; none when a matched port
// is left to the HTTPRoutes. Only some matched ports taken over is no
// conflict: the route stays Accepted, applied on the ports left to it.
func takenBy(r Route, ns string, svc *corev1.Service, ref gatewayv1.ParentReference) []string {
	if len(r.GRPCRoutes) == 0 {
		return nil
	}
	var names []string
	for _, port := range svc.Spec.Ports {
		if !destination.ParentMatchesPort(ref, port) {
			continue
		}
		taker := ""
		for _, g := range r.GRPCRoutes {
			if g.attachesTo(r.Namespace, ns, svc.Name, port) {
				taker = g.Name
				if !slices.Contains(names, g.Name) {
					names = append(names, g.Name)
				}
			}
		}
		if taker == "" {
			return nil
		}
	}
	slices.Sort(names)
	return names
}

// attachesTo reports whether the GRPCRoute (of namespace routeNS) attaches
// to a port of the Service ns/name.
func (g GRPCParents) attachesTo(routeNS, ns, name string, port corev1.ServicePort) bool {
	for _, p := range g.Parents {
		if gamma.IsServiceParent(p) && string(p.Name) == name && gamma.ParentNamespace(routeNS, p) == ns && destination.ParentMatchesPort(p, port) {
			return true
		}
	}
	return false
}

func portText(ref gatewayv1.ParentReference) string {
	s := ""
	if ref.Port != nil {
		s += " " + strconv.Itoa(int(*ref.Port))
	}
	if ref.SectionName != nil {
		s += " named " + string(*ref.SectionName)
	}
	return s
}

// resolvedRefs is the ResolvedRefs condition of a route's backends: an
// invalid kind comes before a missing Service.
func resolvedRefs(backends []destination.BackendRef, services ServiceLookup) metav1.Condition {
	c := metav1.Condition{Type: string(gatewayv1.RouteConditionResolvedRefs), Status: metav1.ConditionFalse}
	for _, b := range backends {
		if !b.ServiceKind {
			c.Reason, c.Message = string(gatewayv1.RouteReasonInvalidKind), fmt.Sprintf("backendRef %s has kind %s: only Services are supported", b.Name, b.Kind)
			return c
		}
	}
	for _, b := range backends {
		svc, ok := services(b.Namespace, b.Name)
		if !ok {
			c.Reason, c.Message = string(gatewayv1.RouteReasonBackendNotFound), fmt.Sprintf("Service %s/%s not found", b.Namespace, b.Name)
			return c
		}
		found := false
		for _, p := range svc.Spec.Ports {
			found = found || p.Port == b.Port
		}
		if !found {
			c.Reason, c.Message = string(gatewayv1.RouteReasonBackendNotFound), fmt.Sprintf("Service %s/%s has no port %d", b.Namespace, b.Name, b.Port)
			return c
		}
	}
	c.Status, c.Reason, c.Message = metav1.ConditionTrue, string(gatewayv1.RouteReasonResolvedRefs), "all backends resolved"
	return c
}

// condition stamps c with the generation and a transition time: the
// previous one when its status is unchanged, now otherwise.
func condition(prev []metav1.Condition, c metav1.Condition, generation int64, now metav1.Time) metav1.Condition {
	c.ObservedGeneration = generation
	c.LastTransitionTime = now
	for _, p := range prev {
		if p.Type == c.Type && p.Status == c.Status && !p.LastTransitionTime.IsZero() {
			c.LastTransitionTime = p.LastTransitionTime
		}
	}
	return c
}
