// Package gatewayapi embeds the Gateway API's CustomResourceDefinitions
// (standard channel: GatewayClass, Gateway, HTTPRoute, GRPCRoute and
// ReferenceGrant) that `meshctl install` creates when a cluster lacks them:
// meshctl reads HTTPRoutes (GAMMA: parentRefs to a Service) for weighted
// splits.
//
// The YAML files and their licence (Apache 2.0, crds/LICENSE) are unchanged
// copies of config/crd/standard in the sigs.k8s.io/gateway-api module at the
// version go.mod requires, v1.6.3 (see Version). To refresh them, bump the
// module in go.mod and run `go generate ./install/gatewayapi`.
//
// These CRDs are shared: other tools (ingress controllers, other meshes) may
// install the same ones, perhaps newer. meshctl therefore never overwrites
// an existing one and never deletes them on uninstall.
package gatewayapi

//go:generate go run ./gen
