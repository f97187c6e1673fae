package httpproxy

import (
	"context"
	"sync/atomic"

	"github.com/meshctl/meshctl/proxy/endpoints"
	"github.com/meshctl/meshctl/proxy/metrics"
)

// ConnInfo is what the proxy knows about the client connection a request
// arrived on; the listener puts it in every request's context.
type ConnInfo struct {
	// Direction is metrics.Inbound or metrics.Outbound.
	Direction string
	// Port is the port the client meant to reach (inbound: the
	// application's), for inbound policy.
	Port uint16
	// FromNode says a plaintext client is the node itself (the kubelet's
	// probes), for inbound policy.
	FromNode bool
	// Upstream is where requests on this connection go; each request picks
	// one of its endpoints.
	Upstream *endpoints.Set
	// Metrics records the connection's requests.
	Metrics *metrics.Conn
	// ClientID is the SPIFFE ID the client proved (inbound, meshed), or "".
	ClientID string
	// ServerID is the SPIFFE ID the destination must prove (outbound, meshed), or "".
	ServerID string
	// Refuse, when set, answers every request but the kubelet's declared
	// probes 403 with this reason (a
	// plaintext request on a port that requires mutual TLS).
	Refuse string
	// Hooks, when set, hear when each request's handling starts and ends.
	Hooks RequestHooks
	// ServerCancels says the server of the connection's HTTP/1 requests
	// cancels their contexts exactly when the client is gone (a reset, or
	// its end closed unless half-closes are allowed): ServeHTTP then needs
	// no context of its own, cancelled through Hooks. Cleared when the
	// connection moves to a server that cancels on any EOF (net/http's).
	ServerCancels atomic.Bool
}

// RequestHooks follow the requests of an HTTP/1 connection, so the connection
// can tell bytes of a request being read from bytes of one being handled.
type RequestHooks interface {
	RequestStarted()
	RequestFinished()
	// CancelOnReset has cancel called if the client's connection is reset
	// (not merely half-closed) while the request is handled; it holds until
	// RequestFinished.
	CancelOnReset(cancel func())
}

type connInfoKey struct{}

// WithConnInfo returns a context carrying info.
func WithConnInfo(ctx context.Context, info *ConnInfo) context.Context {
	return context.WithValue(ctx, connInfoKey{}, info)
}

// ConnInfoFrom returns the ConnInfo in ctx, or nil.
func ConnInfoFrom(ctx context.Context) *ConnInfo {
	info, _ := ctx.Value(connInfoKey{}).(*ConnInfo)
	return info
}

type endpointKey struct{}

// withEndpoint records the endpoint a request was sent to, for the dialers.
func withEndpoint(ctx context.Context, ep endpoints.Endpoint) context.Context {
	return context.WithValue(ctx, endpointKey{}, ep)
}

func endpointFrom(ctx context.Context) (endpoints.Endpoint, bool) {
	ep, ok := ctx.Value(endpointKey{}).(endpoints.Endpoint)
	return ep, ok
}
