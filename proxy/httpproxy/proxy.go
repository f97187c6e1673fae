package httpproxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/meshctl/meshctl/internal/certs"
	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/spiffeid"
	"github.com/meshctl/meshctl/proxy/authz"
	"github.com/meshctl/meshctl/proxy/endpoints"
	"github.com/meshctl/meshctl/proxy/h1client"
	"github.com/meshctl/meshctl/proxy/h2client"
	"github.com/meshctl/meshctl/proxy/meshtls"
	"github.com/meshctl/meshctl/proxy/metrics"
	"github.com/meshctl/meshctl/proxy/tap"
)

// Config configures a Proxy. The zero value works (without meshed upstreams).
type Config struct {
	// Log receives errors talking to upstreams. Default: discard.
	Log *slog.Logger
	// Identity is the certificate for meshed upstreams; nil means meshed
	// endpoints cannot be reached (502).
	Identity certs.Source
	// Tap receives request events when someone is tapping; nil disables it.
	Tap *tap.Hub
	// DialTimeout bounds connecting to an upstream, TLS included. Default: 5s.
	DialTimeout time.Duration
	// IdleConnTimeout closes upstream connections idle this long. Default: 90s.
	IdleConnTimeout time.Duration
	// MaxIdleConnsPerHost is the HTTP/1 keep-alive pool size per upstream. Default: 64.
	MaxIdleConnsPerHost int
	// QueueTimeout is how long a request waits for an endpoint when none can
	// take it (none ready, all ejected) before it fails with 503. Default: 3s.
	QueueTimeout time.Duration
	// QueueCapacity bounds the requests waiting per destination; beyond it
	// they fail with 503 at once. Default: 1000.
	QueueCapacity int
	// Guard, when set, admits inbound requests (authorization, rate limits):
	// 403 or 429 otherwise.
	Guard *authz.Guard
	// ClusterNetworks are the cluster's pod and Service networks: outbound
	// plaintext connections into them are counted
	// (plaintext_connections_total). Default: none.
	ClusterNetworks endpoints.Networks
	// LocalAddrs are the pod's own addresses. A meshed endpoint at one of
	// them is the pod itself (a replica its Service sent back to it): it is
	// reached directly, as nothing of it crosses the network, rather than
	// over mutual TLS that its application would not understand.
	LocalAddrs []netip.Addr
	// MaxMirrors bounds the copies of requests for routes' mirrors in
	// flight at once; beyond it copies are dropped. Default: 100.
	MaxMirrors int
	// MirrorTimeout bounds each copy for a mirror. Default: 5s.
	MirrorTimeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.IdleConnTimeout == 0 {
		c.IdleConnTimeout = 90 * time.Second
	}
	if c.MaxIdleConnsPerHost == 0 {
		c.MaxIdleConnsPerHost = 64
	}
	if c.QueueTimeout == 0 {
		c.QueueTimeout = 3 * time.Second
	}
	if c.QueueCapacity == 0 {
		c.QueueCapacity = 1000
	}
	if c.MaxMirrors <= 0 {
		c.MaxMirrors = 100
	}
	if c.MirrorTimeout <= 0 {
		c.MirrorTimeout = 5 * time.Second
	}
	return c
}

// Proxy is an http.Handler that forwards each request to an endpoint of the
// connection's upstream: plaintext HTTP/1 or h2c to unmeshed endpoints,
// multiplexed HTTP/2 over mutual TLS to meshed ones.
type Proxy struct {
	log       *slog.Logger
	tap       *tap.Hub
	upstreams *upstreamConns
	queue     endpoints.Queue
	guard     *authz.Guard
	cluster   endpoints.Networks
	local     map[netip.Addr]bool
	// warnings limits the warn-level lines about requests the proxy failed
	// on its own account, so a failing destination cannot flood the log.
	warnings rate.Sometimes
	// mirrorSlots holds a token per mirrored copy in flight (its capacity
	// is Config.MaxMirrors); mirrors counts their goroutines.
	mirrorSlots   chan struct{}
	mirrors       sync.WaitGroup
	mirrorTimeout time.Duration
	// mirrorDraw draws uniformly in [0, n) to sample the requests a mirror
	// copies: rand.IntN (tests set their own, safe for concurrent use).
	mirrorDraw func(n int) int

	h1         *h1client.Client // plaintext HTTP/1
	h1Fallback *http.Transport  // plaintext HTTP/1 that h1 hands over: upgrades, 100-continue
	h2c        *h2client.Client // plaintext prior-knowledge HTTP/2
	meshH2     *h2client.Client // HTTP/2 over mTLS (ALPN meshctl/h2)
	meshOpaque *http.Transport  // one HTTP/1 exchange over its own mTLS stream (upgrades)
}

// New returns a Proxy.
func New(cfg Config) *Proxy {
	cfg = cfg.withDefaults()
	upstreams := &upstreamConns{
		dialer: &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second},
		conns:  map[*upstreamConn]struct{}{},
	}
	p := &Proxy{log: cfg.Log, tap: cfg.Tap, upstreams: upstreams, guard: cfg.Guard, cluster: cfg.ClusterNetworks,
		queue:    endpoints.Queue{Timeout: cfg.QueueTimeout, Capacity: cfg.QueueCapacity},
		warnings: rate.Sometimes{First: 5, Interval: 5 * time.Second}, local: map[netip.Addr]bool{},
		mirrorSlots: make(chan struct{}, cfg.MaxMirrors), mirrorTimeout: cfg.MirrorTimeout, mirrorDraw: rand.IntN}
	for _, a := range cfg.LocalAddrs {
		p.local[a.Unmap()] = true
	}
	var mesh *meshtls.Dialer
	if cfg.Identity != nil {
		mesh = &meshtls.Dialer{Source: cfg.Identity, Net: upstreams.dial, Sessions: tls.NewLRUClientSessionCache(256)}
	}
	p.h1Fallback = &http.Transport{
		Proxy:                 nil, // never an environment proxy: the sidecar is the proxy
		DialContext:           p.plainDial,
		MaxIdleConnsPerHost:   cfg.MaxIdleConnsPerHost,
		IdleConnTimeout:       cfg.IdleConnTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true, // pass bodies through as the application sent them
	}
	p.h1 = h1client.New(h1client.Config{
		Dial:                p.plainDial,
		Fallback:            p.h1Fallback,
		MaxIdleConnsPerHost: cfg.MaxIdleConnsPerHost,
		IdleConnTimeout:     cfg.IdleConnTimeout,
	})
	p.h2c = h2client.New(h2client.Config{
		Dial: func(ctx context.Context, addr string) (net.Conn, error) {
			return p.plainDial(ctx, "tcp", addr)
		},
		StreamWindow:    ReceiveWindowPerStream,
		ConnWindow:      ReceiveWindowPerConnection,
		IdleConnTimeout: cfg.IdleConnTimeout,
		SendPingTimeout: 30 * time.Second,
		PingTimeout:     10 * time.Second,
	})
	p.meshH2 = h2client.New(h2client.Config{
		Dial:            meshDialTLS(mesh),
		Key:             meshKey,
		StreamWindow:    ReceiveWindowPerStream,
		ConnWindow:      ReceiveWindowPerConnection,
		IdleConnTimeout: cfg.IdleConnTimeout,
		SendPingTimeout: 30 * time.Second,
		PingTimeout:     10 * time.Second,
	})
	p.meshOpaque = &http.Transport{
		DialContext:        meshDial(mesh, meshtls.ALPNOpaque),
		DisableKeepAlives:  true,
		DisableCompression: true,
	}
	return p
}

// The flow-control windows of the proxy's HTTP/2 clients (to meshed
// endpoints and h2c upstreams): how much of a response an upstream may send
// ahead of the proxy's client reading it, which the proxy holds meanwhile.
// net/http's defaults are 4 MiB per stream and 1 GiB per connection, so a
// burst to a slow reader could pin megabytes per request; these keep a
// stalled response under 1 MiB and a connection under 4 MiB, and still
// let one stream move gigabytes a second at in-cluster round trips. (The
// servers' windows, for request bodies, are net/http's: 1 MiB each.)
const (
	ReceiveWindowPerStream     = 1 << 20
	ReceiveWindowPerConnection = 4 << 20
)

// meshDial dials the meshed endpoint a request was routed to; the TLS
// stream is handed to net/http as plaintext that speaks what ALPN agreed.
func meshDial(mesh *meshtls.Dialer, alpn string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, _, addr string) (net.Conn, error) {
		ep, ok := endpointFrom(ctx)
		if !ok || ep.Addr != addr {
			return nil, fmt.Errorf("no meshed endpoint recorded for %s", addr)
		}
		tc, err := mesh.Dial(ctx, addr, ep.Identity, alpn)
		if err != nil {
			if info := ConnInfoFrom(ctx); info != nil {
				info.Metrics.TLSError(meshtls.Reason(err))
			}
			return nil, &dialError{err}
		}
		return meshtls.Plain{Conn: tc}, nil
	}
}

// meshDialTLS dials the meshed endpoint a request was routed to for the
// HTTP/2 client, which speaks over the TLS connection itself.
func meshDialTLS(mesh *meshtls.Dialer) func(ctx context.Context, addr string) (net.Conn, error) {
	dial := meshDial(mesh, meshtls.ALPNHTTP2)
	return func(ctx context.Context, addr string) (net.Conn, error) {
		return dial(ctx, "tcp", addr)
	}
}

// meshKey is what else than its address a meshed request's connection must
// match: the identity its endpoint has to prove.
func meshKey(ctx context.Context) string {
	ep, _ := endpointFrom(ctx)
	return ep.Identity.String()
}

// plainDial connects to an unmeshed endpoint, counting outbound
// connections into the cluster's networks: they are plaintext where the
// mesh should be encrypting.
func (p *Proxy) plainDial(ctx context.Context, network, addr string) (net.Conn, error) {
	if info := ConnInfoFrom(ctx); info != nil && info.Direction == metrics.Outbound && p.cluster.ContainsHostPort(addr) && !p.IsLocal(addr) {
		info.Metrics.Plaintext(PlaintextReason(info.Upstream))
	}
	return p.upstreams.dial(ctx, network, addr)
}

// IsLocal reports whether addr ("ip:port") is the pod's own.
func (p *Proxy) IsLocal(addr string) bool {
	if len(p.local) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(addr)
	return err == nil && p.local[ap.Addr().Unmap()]
}

// Own makes a lease on the pod itself unmeshed: the request (or connection)
// never leaves the pod, and the application there speaks no mutual TLS.
func (p *Proxy) Own(l endpoints.Lease) endpoints.Lease {
	if l.Meshed() && p.IsLocal(l.Addr) {
		l.Endpoint.Identity = spiffeid.ID{}
	}
	return l
}

// PlaintextReason says why an unmeshed endpoint of set is reached in
// plaintext: discovery knows it has no proxy, or it is no pod or Service of
// the mesh at all.
func PlaintextReason(set *endpoints.Set) string {
	if set.Balanced() {
		return metrics.PlaintextNoIdentity
	}
	return metrics.PlaintextNotInMesh
}

// RoundTrip sends a request the way its endpoint and protocol need.
func (p *Proxy) RoundTrip(r *http.Request) (*http.Response, error) {
	ep, _ := endpointFrom(r.Context())
	origProto := headerValue(r.Header, origProtoKey)
	delete(r.Header, origProtoKey)
	switch {
	case ep.Meshed() && headerValue(r.Header, "Upgrade") != "":
		// An upgraded connection is a byte stream of its own.
		return p.meshOpaque.RoundTrip(r)
	case ep.Meshed():
		if r.ProtoMajor == 1 {
			r.Header[origProtoKey] = []string{"HTTP/1.1"}
		}
		return roundTripH2(p.meshH2, r)
	case r.ProtoMajor == 2 && origProto == "":
		return roundTripH2(p.h2c, r)
	default:
		// HTTP/1 from the client, or HTTP/1 at the far end of the mesh.
		return p.h1.RoundTrip(r)
	}
}

// roundTripH2 sends r with the HTTP/2 client c.
func roundTripH2(c *h2client.Client, r *http.Request) (*http.Response, error) {
	res, err := c.RoundTrip(r)
	if err != nil && (errors.Is(err, h2client.ErrUnprocessed) || errors.Is(err, h2client.ErrNotConnected)) {
		// Nothing of it reached the application: as safe to send
		// elsewhere as a connection that could not be made.
		err = &dialError{err}
	}
	return res, err
}

// Close closes every upstream connection, in use or not. Call it once no
// request is being served any more.
func (p *Proxy) Close() {
	p.h1.Close()
	p.meshH2.Close()
	p.h2c.Close()
	for _, t := range []*http.Transport{p.h1Fallback, p.meshOpaque} {
		t.CloseIdleConnections()
	}
	p.upstreams.closeAll()
}

// ServeHTTP forwards r and records its metrics and tap events.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	info := ConnInfoFrom(r.Context())
	if info == nil {
		http.Error(w, "meshctl: request without a connection", http.StatusInternalServerError)
		return
	}
	rec := &recorder{ResponseWriter: w, start: time.Now()}
	if p.tap != nil && p.tap.Active() {
		rec.tapStart(p.tap, info, r)
	}
	if info.Hooks != nil {
		info.Hooks.RequestStarted()
		defer info.Hooks.RequestFinished()
	}
	// Outbound, each request may go to another endpoint (balancing, retries,
	// discovery changing the set under a live connection): its metrics name
	// the one its answer came from, once that is known (rec.ep).
	defer func() {
		v := recover()
		class := classify(rec.status, rec.Header())
		if v != nil {
			class = metrics.Failure // the response was cut off mid-stream
		}
		// Labelled by what the mesh knows of the destination, never by the
		// request's Host: a client must not choose the proxy's series.
		// Inbound, the port counts only for requests the application
		// answered: refused ones, and those to ports where nothing listens
		// (a port scan), share one series.
		var route *metrics.Route
		switch {
		case rec.reached && info.Direction == metrics.Outbound:
			route = info.Metrics.RouteTo(info.Upstream.Name(), rec.ep.Identity, rec.ep.Workload)
		case info.Direction == metrics.Inbound && info.ClientID == "" && info.FromNode && p.probe(info, r):
			// Answered or not (the application may not listen yet).
			route = info.Metrics.Route(meshnames.ProbeAuthority)
		case info.Direction == metrics.Inbound && (!rec.reached || headerValue(rec.Header(), proxyErrorKey) != ""):
			route = info.Metrics.Route("")
		default:
			route = info.Metrics.Route(info.Upstream.Name())
		}
		route.Request()
		route.Response(rec.status, class, rec.latencyMs())
		rec.tapEnd(info)
		if v != nil {
			panic(v)
		}
	}()
	if info.ClientID == "" {
		// Only a meshed peer says what protocol the request had at its
		// application; from anyone else it would downgrade HTTP/2.
		delete(r.Header, origProtoKey)
	}
	if info.Refuse != "" && !p.probe(info, r) {
		info.Metrics.TLSError("plaintext_refused")
		rec.reason = "plaintext refused: " + info.Refuse
		http.Error(rec, "meshctl proxy: "+info.Refuse, http.StatusForbidden)
		return
	}
	if p.guard != nil && info.Direction == metrics.Inbound {
		if d := p.guard.Admit(authz.Request{Port: info.Port, HTTP: true, Path: r.URL.Path, RawPath: r.URL.EscapedPath(), ClientID: info.ClientID, FromNode: info.FromNode}); !d.Allowed() {
			refuse(rec, info, d)
			return
		}
	}
	ctx := r.Context()
	if r.ProtoMajor == 1 && !info.ServerCancels.Load() {
		// The connection decides when its client is gone (a reset, or EOF
		// unless half-closes are allowed) and cancels the request then, so
		// the upstream stops working on it; net/http's own cancellation on
		// EOF cannot tell a half-close from a client that left.
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(context.WithoutCancel(ctx))
		defer cancel()
		if info.Hooks != nil {
			info.Hooks.CancelOnReset(cancel)
		}
	}
	if r.Body != nil && r.Body != http.NoBody {
		// The transport closes a request body when it is done with it,
		// possibly before the client sent it all (an early answer to a
		// 100-continue request); closing the server's body then would wait to
		// drain it. bodyReader only stops reading; net/http drains or closes
		// the connection after the handler.
		rec.body = &bodyReader{src: r.Body}
		defer rec.body.Close()
	}
	rec.ep, rec.reached = p.forward(ctx, rec, r, info)
}

// proxyErrorHeader marks the answers the proxy gave itself (refusals,
// unreachable or failing upstreams), with their reason.
const proxyErrorHeader = "meshctl-proxy-error"

// proxyError marks an answer the proxy gives itself, for its client (the
// meshctl-proxy-error header) and for tap.
func proxyError(w http.ResponseWriter, reason string) {
	w.Header().Set(proxyErrorHeader, reason)
	if rec, ok := w.(*recorder); ok && rec.reason == "" {
		rec.reason = reason
	}
}

// probe reports whether r is one of the kubelet's declared probes (the only
// plaintext let through where mutual TLS is required).
func (p *Proxy) probe(info *ConnInfo, r *http.Request) bool {
	return p.guard != nil && p.guard.IsProbe(authz.Request{Port: info.Port, HTTP: true, Path: r.URL.Path, RawPath: r.URL.EscapedPath(), FromNode: info.FromNode})
}

// refuse answers a request the inbound policy turned away: 403, or 429
// with Retry-After.
func refuse(rec *recorder, info *ConnInfo, d authz.Decision) {
	h := rec.Header()
	if d.Status == http.StatusTooManyRequests {
		h.Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(d.RetryAfter.Seconds())))))
		proxyError(rec, "rate limited")
		rec.reason = "rate limited (" + d.Rule + ")"
		http.Error(rec, "meshctl proxy: too many requests ("+d.Rule+")", d.Status)
		return
	}
	who := info.ClientID
	if who == "" {
		who = "an unauthenticated client"
	}
	proxyError(rec, "unauthorized")
	rec.reason = "unauthorized (" + d.Rule + ")"
	http.Error(rec, "meshctl proxy: "+who+" is not authorized here ("+d.Rule+")", d.Status)
}

// errorHandler answers requests the upstream did not: 400 when the client's
// own body was cut short, 504 when connecting or waiting timed out, 502
// otherwise (a meshed peer that failed to prove its identity included).
// Every answer but the 400 is the proxy failing the request on its own
// account, and logged at warn (a few times per interval) with the endpoint,
// the identity it had to prove and the cause.
func (p *Proxy) errorHandler(w http.ResponseWriter, r *http.Request, ep endpoints.Endpoint, err error) {
	if rec, ok := w.(*recorder); ok && rec.body != nil && rec.body.incomplete() {
		if info := ConnInfoFrom(r.Context()); info != nil {
			info.Metrics.ProtocolError(protocolName(r), "incomplete_body")
		}
		http.Error(w, "meshctl proxy: incomplete request body", http.StatusBadRequest)
		return
	}
	status := http.StatusBadGateway
	var nerr net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &nerr) && nerr.Timeout()) {
		status = http.StatusGatewayTimeout
	}
	reason := http.StatusText(status)
	var me *meshtls.Error
	if errors.As(err, &me) {
		reason = "meshed TLS " + strings.ReplaceAll(me.Reason, "_", " ")
	}
	if r.Context().Err() == nil {
		identity := "" // a plaintext endpoint proves none
		if ep.Meshed() {
			identity = ep.Identity.String()
		}
		p.warn("request failed: the upstream could not be reached or broke off", "status", status, "endpoint", ep.Addr,
			"identity", identity, "method", r.Method, "path", r.URL.Path, "refused", errors.Is(err, syscall.ECONNREFUSED), "error", err)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	proxyError(w, reason)
	w.WriteHeader(status)
	_, _ = w.Write([]byte("meshctl proxy: " + reason + "\n"))
}

// warn logs at warn level, a few times per interval at most: a request the
// proxy failed on its own account (a failing destination must not flood
// the log).
func (p *Proxy) warn(msg string, args ...any) {
	p.warnings.Do(func() { p.log.Warn(msg, args...) })
}

func protocolName(r *http.Request) string {
	if r.ProtoMajor == 2 {
		return "h2"
	}
	return "http1"
}

// classify calls a response a failure when it is a 5xx or carries a non-zero
// grpc-status (in its headers for trailers-only responses, else its trailers).
func classify(status int, h http.Header) string {
	if status == 0 || status >= 500 {
		return metrics.Failure
	}
	if gs := grpcStatus(h); gs != "" && gs != "0" {
		return metrics.Failure
	}
	return metrics.Success
}

func grpcStatus(h http.Header) string {
	if gs := headerValue(h, "Grpc-Status"); gs != "" {
		return gs
	}
	return headerValue(h, http.TrailerPrefix+"Grpc-Status")
}

// headerValue is h.Get(key) for a key already canonical: Get canonicalizes its key
// on every call (and allocates for one that is not), a few percent of a
// hop's CPU on the request path.
func headerValue(h http.Header, canonicalKey string) string {
	if v := h[canonicalKey]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// The canonical forms of the mesh's own fields.
var (
	origProtoKey  = http.CanonicalHeaderKey(meshtls.OrigProtoHeader)
	proxyErrorKey = http.CanonicalHeaderKey(proxyErrorHeader)
)

// buffers recycle the 32 KiB buffers bodies are copied through.
var buffers = sync.Pool{New: func() any { b := make([]byte, 32*1024); return &b }}
