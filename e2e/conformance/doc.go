// Package conformance runs the Gateway API conformance suite's mesh tests
// (sigs.k8s.io/gateway-api/conformance, the version of the CRDs meshctl
// installs) against meshctl on the local cluster: `make conformance`.
//
// It is its own module so that the suite's dependencies (controller-runtime
// and the Kubernetes libraries it was released with) stay out of meshctl's.
package conformance
