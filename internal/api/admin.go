package api

import "time"

// The wire types of a proxy's admin endpoints, which the admin API
// (admin.meshctl.io) relays and the CLI reads.

// IdentityInfo is the JSON a proxy's /identity (and the admin API's
// pods/identity) answers: its workload certificate.
type IdentityInfo struct {
	SPIFFEID              string    `json:"spiffe_id"`
	Serial                string    `json:"serial"`
	IssuerFingerprint     string    `json:"issuer_fingerprint"`
	NotBefore             time.Time `json:"not_before"`
	NotAfter              time.Time `json:"not_after"`
	TrustRootFingerprints []string  `json:"trust_root_fingerprints"`
}

// DestinationEndpoint is one endpoint in a proxy's /destinations (and the
// admin API's pods/destinations), which maps each destination to them.
type DestinationEndpoint struct {
	Addr     string `json:"addr"`
	Identity string `json:"identity,omitempty"`
	Opaque   bool   `json:"opaque,omitempty"`
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
	Type      string    `json:"type"`
	ID        uint64    `json:"id,omitempty"`
	Time      time.Time `json:"ts"`
	Direction string    `json:"direction,omitempty"`
	Method    string    `json:"method,omitempty"`
	Authority string    `json:"authority,omitempty"`
	Path      string    `json:"path,omitempty"`
	ClientID  string    `json:"client_id,omitempty"`
	ServerID  string    `json:"server_id,omitempty"`
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
}
