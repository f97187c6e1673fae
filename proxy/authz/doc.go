// Package authz decides, on the inbound side, whether a client may reach the
// application: the pod's inbound policy from the controller (a default,
// AuthorizationPolicy rules per port and path, the kubelet's probes) and its
// rate limits (in all, and per client identity, with golang.org/x/time/rate
// token buckets). A Guard starts from a default policy and follows updates.
// Path prefixes and probe paths are matched against the path the application
// will serve, resolved as Tomcat and Jetty resolve it (path.go).
package authz
