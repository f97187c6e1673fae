// Package controller is mesh-controller: in one process, each in its own
// subpackage,
//
//   - the identity service (identitysvc): workload certificates, issued
//     after a TokenReview of the pod's ServiceAccount token;
//   - the destination service (destination): endpoints, identities and the
//     HTTPRoutes and GRPCRoutes attached to a Service, streamed to proxies,
//     and the routes' status (routestatus), written by one replica elected
//     with a Lease (leader);
//   - the inbound-policy service (inbound): each pod's servers and who may
//     call them;
//   - the proxy-injector webhook (injector) and the trust bundle's copies
//     in meshed namespaces (trustbundle);
//   - the aggregated admin API (adminapi): users' RBAC-checked way to the
//     proxies' tap, identity, destinations and renewal.
//
// This package wires them, with their informers, into Run.
package controller
