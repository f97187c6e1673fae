package httpproxy

import (
	"context"

	"github.com/meshctl/meshctl/proxy/endpoints"
	"github.com/meshctl/meshctl/proxy/metrics"
)

// ConnInfo is what the proxy knows about the client connection a request
// arrived on; the listener puts it in every request's context.
type ConnInfo struct {
	// Upstream is where requests on this connection go; each request picks
	// one of its endpoints.
	Upstream *endpoints.Set
	// Metrics records the connection's requests.
	Metrics *metrics.Conn
	// Hooks, when set, hear when each request's handling starts and ends.
	Hooks RequestHooks
}

// RequestHooks follow the requests of an HTTP/1 connection, so the connection
// can tell bytes of a request being read from bytes of one being handled.
type RequestHooks interface {
	RequestStarted()
	RequestFinished()
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
