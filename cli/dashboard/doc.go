// Package dashboard is `meshctl dashboard`: a web server inside the CLI
// process that shows the mesh in a browser — the topology of a namespace
// with golden metrics and padlocks on its edges, HTTPRoute splits, a page
// per workload with time series, pods, policies, routes and a live tap,
// the identity's certificates and which proxies still run on an old
// issuer, and the result of `meshctl check`.
//
// It reads the mesh as `meshctl stat`, `edges` and `tap` do (package
// proxystats and tapstream, through a Source the cli package implements
// with the user's credentials): no Prometheus, nothing in the cluster. A
// Collector scrapes the namespaces the browser looks at every few seconds
// and keeps a bounded history. The Server serves the embedded single-page
// app and a read-only JSON API, only to requests whose Host header names
// the address it listens on (a DNS-rebinding defence).
package dashboard
