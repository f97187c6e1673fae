// Package meshnames holds the mesh's fixed names and numbers, spelled once:
// the control plane's namespace, objects and ports, the proxy's ports and
// user, the injector's annotations and labels, the admin API's group,
// resources and roles, the default inbound policies and the defaults of
// the cluster's and the mesh's domains and networks (docs/DESIGN.md).
//
// It imports only the standard library, so the proxy, the controller, the
// installer and the CLI all share it without linking each other.
package meshnames
