// Package controller is mesh-controller: the identity service (issuing
// workload certificates), the destination service and the proxy-injector
// webhook, in one process, each in its own subpackage.
package controller
