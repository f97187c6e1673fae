package api

import "time"

// The wire types of a proxy's admin endpoints, which the admin API
// (admin.meshctl.io) relays and the CLI reads.

// IdentityInfo is the JSON a proxy's /identity (and the admin API's
// pods/identity) answers: its workload certificate.
type IdentityInfo struct {
	// SPIFFEID is the identity the certificate proves.
	SPIFFEID string `json:"spiffe_id"`
	// Serial is the certificate's serial number, in hex.
	Serial string `json:"serial"`
	// IssuerFingerprint is the SHA-256 (hex) of the certificate that
	// signed it; empty when the proxy does not hold it.
	IssuerFingerprint string `json:"issuer_fingerprint"`
	// NotBefore and NotAfter bound the certificate's validity (UTC).
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	// TrustRootFingerprints are the SHA-256s (hex) of the trust roots the
	// proxy verifies peers with.
	TrustRootFingerprints []string `json:"trust_root_fingerprints"`
}

// DestinationEndpoint is one endpoint in a proxy's /destinations (and the
// admin API's pods/destinations), which maps each destination to them.
type DestinationEndpoint struct {
	// Addr is the endpoint's address, host:port.
	Addr string `json:"addr"`
	// Identity is the SPIFFE ID the endpoint must prove; empty when it is
	// not meshed (plaintext).
	Identity string `json:"identity,omitempty"`
	// Opaque says the endpoint's port is proxied as TCP, without protocol
	// detection.
	Opaque bool `json:"opaque,omitempty"`
}

// Types of TapEvent.
const (
	// TapStart: a request started.
	TapStart = "start"
	// TapHeaders: its response headers came.
	TapHeaders = "headers"
	// TapEnd: it ended.
	TapEnd = "end"
	// TapDropped: events were dropped (Count says how many).
	TapDropped = "dropped"
)

// TapEvent is one line of a proxy's tap stream (its admin port's /tap,
// and the admin API's pods/tap).
type TapEvent struct {
	// Type is one of the Tap* types.
	Type string `json:"type"`
	// ID ties a request's events together (start, headers, end).
	ID uint64 `json:"id,omitempty"`
	// Time is when the event happened (UTC).
	Time time.Time `json:"ts"`
	// Direction is the proxy side the request crossed, inbound or
	// outbound (start).
	Direction string `json:"direction,omitempty"`
	// Method, Authority and Path are the request's (start).
	Method    string `json:"method,omitempty"`
	Authority string `json:"authority,omitempty"`
	Path      string `json:"path,omitempty"`
	// ClientID and ServerID are the SPIFFE IDs the client and the server
	// proved; empty for a side that proved none (start).
	ClientID string `json:"client_id,omitempty"`
	ServerID string `json:"server_id,omitempty"`
	// ClientAddr is the address the request came from (start, inbound):
	// the client pod's, or whatever connected to the pod.
	ClientAddr string `json:"client_addr,omitempty"`
	// Status is the HTTP status (headers, end); 0 when the request failed without one.
	Status int `json:"status,omitempty"`
	// GRPCStatus is the grpc-status a gRPC response ended with.
	GRPCStatus string `json:"grpc_status,omitempty"`
	// LatencyMs is the time to the response headers (headers) or to the end (end).
	LatencyMs float64 `json:"latency_ms,omitempty"`
	// Bytes is the response body size (end).
	Bytes int64 `json:"bytes,omitempty"`
	// Count is the number of events dropped since the last line (dropped).
	Count uint64 `json:"count,omitempty"`
	// Endpoint is the address the answer came from, outbound (end).
	Endpoint string `json:"endpoint,omitempty"`
	// TLS says whether the hop was mutual TLS: outbound, to the endpoint;
	// inbound, from the client (end).
	TLS *bool `json:"tls,omitempty"`
	// Retries counts the tries after the first (end).
	Retries int `json:"retries,omitempty"`
	// Reason says why a proxy answered the request itself, or refused to
	// retry it: the policy rule of a 403 or 429, "no endpoints", "queue
	// timeout", a meshed TLS failure, "retry budget exhausted", ... (end).
	// Outbound, it also carries the server's proxy's own reason.
	Reason string `json:"reason,omitempty"`
}
