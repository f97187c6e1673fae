// Package gamma holds the small Gateway API helpers (GAMMA: routes whose
// parents are Services) that both the controller and the CLI's checks
// need: whether a reference names a Service, a parentRef's namespace, and
// the controllerName under which the controller writes route status.
package gamma
