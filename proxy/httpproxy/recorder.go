package httpproxy

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/proxy/endpoints"
	"github.com/meshctl/meshctl/proxy/metrics"
	"github.com/meshctl/meshctl/proxy/tap"
)

// recorder notes what a response was: its status, when its headers went,
// how many body bytes followed; and tells a tap.
type recorder struct {
	http.ResponseWriter
	start   time.Time
	status  int
	latency time.Duration
	bytes   int64
	body    *bodyReader

	tap   *tap.Hub // nil unless this request is being tapped
	tapID uint64

	ep      endpoints.Endpoint // where the answer came from, when reached
	reached bool

	// For the tap: the tries after the first, whether the budget refused
	// one, and why the proxy answered itself (beyond meshctl-proxy-error).
	retries         int
	budgetExhausted bool
	reason          string
}

func (r *recorder) WriteHeader(code int) {
	r.noteStatus(code)
	r.ResponseWriter.WriteHeader(code)
}

// noteStatus records the response's status when its headers go out.
func (r *recorder) noteStatus(code int) {
	if r.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		r.status = code
		r.latency = time.Since(r.start)
		if r.tap != nil {
			r.tap.Publish(api.TapEvent{Type: api.TapHeaders, ID: r.tapID, Time: time.Now().UTC(), Status: code, LatencyMs: ms(r.latency)})
		}
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush, Hijack and full duplex.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Flush sends what was written so far.
func (r *recorder) Flush() {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(r.ResponseWriter).Flush()
}

func (r *recorder) latencyMs() float64 {
	if r.status == 0 {
		return ms(time.Since(r.start))
	}
	return ms(r.latency)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// tapStart publishes the request's start and arranges the rest.
func (r *recorder) tapStart(hub *tap.Hub, info *ConnInfo, req *http.Request) {
	r.tap, r.tapID = hub, hub.NextID()
	e := api.TapEvent{
		Type: api.TapStart, ID: r.tapID, Time: r.start.UTC(), Direction: info.Direction,
		Method: req.Method, Authority: req.Host, Path: req.URL.Path,
		ClientID: info.ClientID, ServerID: info.ServerID,
	}
	if info.Direction == metrics.Inbound {
		e.ClientAddr = req.RemoteAddr
	}
	hub.Publish(e)
}

// tapEnd publishes the request's end, if it is being tapped: with where
// it went, whether over mutual TLS, its retries, and why the proxy (this
// one, or the server's) answered it itself.
func (r *recorder) tapEnd(info *ConnInfo) {
	if r.tap == nil {
		return
	}
	e := api.TapEvent{
		Type: api.TapEnd, ID: r.tapID, Time: time.Now().UTC(), Status: r.status,
		GRPCStatus: grpcStatus(r.Header()), LatencyMs: ms(time.Since(r.start)), Bytes: r.bytes,
		Retries: r.retries, Reason: r.reason,
	}
	if e.Reason == "" && r.reached && r.ep.Meshed() {
		// The server's proxy's reason; an unmeshed upstream's header
		// would be the application's word, not the mesh's.
		e.Reason = headerValue(r.Header(), proxyErrorKey)
	}
	if r.budgetExhausted {
		e.Reason = strings.TrimPrefix(e.Reason+"; retry budget exhausted", "; ")
	}
	var tls bool
	if info.Direction == metrics.Inbound {
		tls = info.ClientID != ""
	} else if r.reached {
		e.Endpoint = r.ep.Addr
		if r.ep.Meshed() {
			tls, e.ServerID = true, r.ep.Identity.String()
		}
	}
	e.TLS = &tls
	r.tap.Publish(e)
}

// bodyReader is the request body handed to the upstream transport: it
// remembers why reading stopped, and its Close only stops further reads.
type bodyReader struct {
	src    io.ReadCloser
	closed atomic.Bool
	// err is why reading stopped. The transport's body writer sets it and
	// the handler reads it; an HTTP/2 RoundTrip can return (an early
	// response, a reset) while that writer is still running, so it is
	// guarded.
	mu  sync.Mutex
	err error
}

var errBodyClosed = errors.New("read of a request body after the proxy closed it")

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, errBodyClosed
	}
	n, err := b.src.Read(p)
	if err != nil {
		b.mu.Lock()
		b.err = err
		b.mu.Unlock()
	}
	return n, err
}

// Close stops reading; the server's own body is left for net/http.
func (b *bodyReader) Close() error {
	b.closed.Store(true)
	return nil
}

// incomplete reports whether the client stopped sending its body midway.
func (b *bodyReader) incomplete() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err != nil && !errors.Is(b.err, io.EOF) && !errors.Is(b.err, errBodyClosed)
}
