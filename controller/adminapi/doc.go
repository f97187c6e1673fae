// Package adminapi is the controller's aggregated API, admin.meshctl.io/v1alpha1:
// the way users reach a meshed pod's sensitive proxy endpoints (/tap,
// /identity, /destinations, POST /renew) on any cluster, managed ones
// included, with their own Kubernetes credentials and RBAC.
//
// The API server's aggregator (APIService v1alpha1.admin.meshctl.io) proxies
// /apis/admin.meshctl.io/v1alpha1/... to the controller with its front-proxy
// client certificate and the user in X-Remote-* headers. The controller
//
//  1. authenticates the aggregator: the client certificate must chain to the
//     request-header CA of ConfigMap kube-system/extension-apiserver-authentication
//     and carry an allowed name; only then are the headers believed (401 otherwise);
//  2. authorizes the user with a SubjectAccessReview on the pod's subresource
//     (pods/tap, pods/identity, pods/destinations: get, or watch for a tap
//     stream; pods/renew: create), as the API server itself already did;
//  3. relays to the pod's proxy admin port over mutual TLS with its own
//     workload certificate, requiring the proxy to prove the pod's
//     ServiceAccount's SPIFFE ID, and streams the answer back.
//
// It also serves the discovery documents the aggregator and kubectl read. Its
// client side (Request, Do, Explain, Available) is internal/adminclient,
// which meshctl uses.
package adminapi
