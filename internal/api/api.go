// Package api holds the wire types of the control API between proxies and
// mesh-controller (HTTP/2 over TLS, JSON bodies, versioned /v1/ paths), and
// those of a proxy's admin endpoints (/identity, /destinations, /tap) that
// the admin API relays to the CLI, so every side agrees on them in one
// place without linking the others.
package api

// Paths of the control API.
const (
	// CertificatePath issues a workload certificate (POST CertificateRequest,
	// answered with CertificateResponse). It is the only path that does not
	// require a client certificate.
	CertificatePath = "/v1/certificate"
	// DestinationsPath streams a destination's endpoints (GET
	// ?target=<host:port>, answered with JSON lines of Destination, a full
	// snapshot each time something changes). It requires a client certificate.
	DestinationsPath = "/v1/destinations"
	// InboundPolicyPath streams the calling proxy's own inbound policy (GET
	// ?pod=<name>, answered with JSON lines of InboundPolicy, a full snapshot
	// each time it changes). The pod must be in the namespace and run as the
	// ServiceAccount of the caller's client certificate.
	InboundPolicyPath = "/v1/inbound-policy"
)

// InboundPolicy is who may call a pod's servers (its ports) and how often.
type InboundPolicy struct {
	// Default is the policy of ports no rule covers: all-unauthenticated,
	// all-authenticated or deny.
	Default string `json:"default"`
	// Rules allow clients to ports; a port some rule covers admits only the
	// clients of its rules (and probes).
	Rules []AuthorizationRule `json:"rules,omitempty"`
	// Probes are the kubelet's probe ports and paths from the pod spec,
	// always let in.
	Probes []Probe `json:"probes,omitempty"`
	// RateLimit caps the requests per second the pod accepts in all; 0: none.
	RateLimit float64 `json:"rate_limit,omitempty"`
	// RateLimitPerClient caps the requests per second of each client
	// identity (unauthenticated clients share one); 0: none.
	RateLimitPerClient float64 `json:"rate_limit_per_client,omitempty"`
}

// AuthorizationRule is one AuthorizationPolicy as it applies to a pod.
type AuthorizationRule struct {
	// Name is the policy's namespace/name.
	Name string `json:"name"`
	// Port is the container port it covers; 0: every port.
	Port int `json:"port,omitempty"`
	// PathPrefixes, when set, limit it to HTTP requests under one of them.
	PathPrefixes []string `json:"path_prefixes,omitempty"`
	// Identities are the SPIFFE IDs allowed; "*" is every meshed client.
	Identities []string `json:"identities"`
}

// Probe is a kubelet probe: its port, and its path for HTTP (and gRPC)
// probes; "" for TCP and HTTPS probes: connections on the port that are not
// HTTP.
type Probe struct {
	Port int    `json:"port"`
	Path string `json:"path,omitempty"`
	// TLS marks an HTTPS probe: TLS the proxy cannot read, let through as a
	// connection from the node. Other connection probes (TCP) only connect:
	// nothing the client sends reaches the application.
	TLS bool `json:"tls,omitempty"`
}

// TokenAudience is the audience of the projected ServiceAccount token a
// proxy proves its identity with.
const TokenAudience = "identity.meshctl.io"

// MaxCSRBytes bounds a certificate request.
const MaxCSRBytes = 16 << 10

// CertificateRequest asks for a workload certificate.
type CertificateRequest struct {
	// CSR is a PEM certificate signing request for the workload's SPIFFE ID.
	CSR string `json:"csr"`
	// Token is the workload's projected ServiceAccount token (audience TokenAudience).
	Token string `json:"token"`
}

// CertificateResponse carries the certificate issued.
type CertificateResponse struct {
	// Certificate is PEM: the leaf, then the issuer.
	Certificate string `json:"certificate"`
	// TrustRoots is PEM: every trust anchor peers may chain to.
	TrustRoots string `json:"trust_roots"`
}

// Error is the JSON body of every error answer.
type Error struct {
	Error string `json:"error"`
	// Reason is a short machine-readable cause (e.g. "wrong_id", "token_invalid").
	Reason string `json:"reason,omitempty"`
}

// Destination is where traffic for a target (a Service name and port, a
// ClusterIP and port, or a pod IP and port) goes.
type Destination struct {
	// Known is false for targets outside the cluster: the proxy forwards
	// those as they are, unmeshed.
	Known bool `json:"known"`
	// Service is "<name>.<namespace>" when the target is a Service.
	Service string `json:"service,omitempty"`
	// Endpoints are the ready endpoints (empty: none is ready).
	Endpoints []Endpoint `json:"endpoints"`
	// Annotations are the Service's traffic-policy annotations
	// (*.meshctl.io), carried as they are until a feature reads them.
	Annotations map[string]string `json:"annotations,omitempty"`
	// Routes are the HTTPRoutes and GRPCRoutes attached to the Service port
	// (GAMMA), one entry per match, most specific first. A client uses the
	// consumer routes of its own namespace when there are any (Route.Consumer),
	// the producer routes (Consumer "") otherwise; among those a request takes
	// the first that matches, and gets 404 when none does. With no route for
	// the client, requests go to the Service's own endpoints.
	Routes []Route `json:"routes,omitempty"`
}

// Endpoint is one place a destination's traffic may go.
type Endpoint struct {
	// Addr is podIP:targetPort.
	Addr string `json:"addr"`
	// Identity is the SPIFFE ID a meshed endpoint proves; empty when the
	// endpoint is not meshed (plaintext).
	Identity string `json:"identity,omitempty"`
	// Workload names the endpoint's workload (its owner).
	Workload string `json:"workload,omitempty"`
	// Zone is the endpoint's topology zone, if known.
	Zone string `json:"zone,omitempty"`
	// Weight is the endpoint's relative share of requests (default 1).
	Weight int `json:"weight,omitempty"`
	// HTTP2 says the application speaks HTTP/2 on this port (appProtocol).
	HTTP2 bool `json:"http2,omitempty"`
	// Opaque says the port is configured opaque (config.meshctl.io/opaque-ports).
	Opaque bool `json:"opaque,omitempty"`
}
