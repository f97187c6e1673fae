// Package authz decides, on the inbound side, whether a client may reach the
// application: the pod's inbound policy from the controller (a default,
// AuthorizationPolicy rules per port and path, the kubelet's probes) and its
// rate limits (in all, and per client identity, with golang.org/x/time/rate
// token buckets). A Guard starts from a default policy and follows updates.
// Path prefixes and probe paths are matched against the path the application
// will serve, whatever kind of server it is: a path that servers would
// resolve differently (";" parameters, backslashes, encoded dots) matches a
// prefix only if every resolution is under it (path.go).
package authz
