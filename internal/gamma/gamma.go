package gamma

import (
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshctl/meshctl/internal/meshnames"
)

// ControllerName is the controllerName of the status.parents entries
// meshctl writes; entries of other controllers are left as they are.
const ControllerName gatewayv1.GatewayController = meshnames.RouteStatusController

// IsService reports whether a reference's group and kind name a Service,
// kindDefault being the kind when unset (Service for backendRefs, Gateway
// for parentRefs).
func IsService(group *gatewayv1.Group, kind *gatewayv1.Kind, kindDefault string) bool {
	g, k := "", kindDefault
	if group != nil {
		g = string(*group)
	}
	if kind != nil {
		k = string(*kind)
	}
	return (g == "" || g == "core") && k == "Service"
}

// IsServiceParent reports whether a parentRef names a Service (GAMMA)
// rather than a Gateway.
func IsServiceParent(p gatewayv1.ParentReference) bool {
	return IsService(p.Group, p.Kind, "Gateway")
}

// ParentNamespace is the namespace of a parentRef of a route in routeNS.
func ParentNamespace(routeNS string, p gatewayv1.ParentReference) string {
	if p.Namespace != nil && *p.Namespace != "" {
		return string(*p.Namespace)
	}
	return routeNS
}

// BackendWeight is a backendRef's weight: 1 when unset, as the Gateway API
// says, and never below 0.
func BackendWeight(b gatewayv1.HTTPBackendRef) int32 {
	if b.Weight == nil {
		return 1
	}
	return max(*b.Weight, 0)
}
