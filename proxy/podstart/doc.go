// Package podstart starts mesh-proxy the way `mesh-proxy run` does: it
// gives the proxy its identity, then runs it until its context ends.
//
// The identity comes from one of:
//
//   - the controller's identity service (Config.IdentityAddr), as in a pod:
//     the proxy gets its workload certificate from the controller and keeps
//     it renewed; it starts listening only once it holds one. With
//     Config.Discovery it finds its outbound destinations through the
//     controller's destination service, and with Config.PodName it follows
//     the pod's inbound policy: nothing gets in, and the proxy is not ready,
//     until the controller sent it;
//   - certificate files (Config.CertFile, KeyFile, RootsFile), re-read when
//     they change: explicit mode, for tests and benchmarks;
//   - none: the proxy neither accepts nor makes meshed connections.
//
// RedirectMode and DefaultGateway fill in what a proxy in a pod learns from
// the pod's network: its listeners at the redirect rules' ports, its own
// addresses, and the node's address on the pod network.
//
// It links neither client-go nor the CA: mesh-proxy stays small.
package podstart
