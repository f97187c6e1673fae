package httpproxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/meshctl/meshctl/proxy/metrics"
)

// Config configures a Proxy. The zero value works.
type Config struct {
	// Log receives errors talking to upstreams. Default: discard.
	Log *slog.Logger
	// DialTimeout bounds connecting to an upstream. Default: 5s.
	DialTimeout time.Duration
	// IdleConnTimeout closes upstream connections idle this long. Default: 90s.
	IdleConnTimeout time.Duration
	// MaxIdleConnsPerHost is the HTTP/1 keep-alive pool size per upstream. Default: 64.
	MaxIdleConnsPerHost int
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
	return c
}

// Proxy is an http.Handler that forwards each request to the upstream of the
// connection it arrived on (see ConnInfo).
type Proxy struct {
	log       *slog.Logger
	upstreams *upstreamConns
	rp        *httputil.ReverseProxy
	h1        *http.Transport
	h2c       *http.Transport
}

// New returns a Proxy.
func New(cfg Config) *Proxy {
	cfg = cfg.withDefaults()
	upstreams := &upstreamConns{
		dialer: &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second},
		conns:  map[*upstreamConn]struct{}{},
	}
	p := &Proxy{
		log:       cfg.Log,
		upstreams: upstreams,
		h1: &http.Transport{
			Proxy:                 nil, // never an environment proxy: the sidecar is the proxy
			DialContext:           upstreams.dial,
			MaxIdleConns:          0,
			MaxIdleConnsPerHost:   cfg.MaxIdleConnsPerHost,
			IdleConnTimeout:       cfg.IdleConnTimeout,
			ExpectContinueTimeout: time.Second,
			DisableCompression:    true, // pass bodies through as the application sent them
			ForceAttemptHTTP2:     false,
		},
		h2c: &http.Transport{
			Proxy:              nil,
			Protocols:          unencryptedHTTP2(),
			DialContext:        upstreams.dial,
			IdleConnTimeout:    cfg.IdleConnTimeout,
			DisableCompression: true,
			HTTP2: &http.HTTP2Config{
				SendPingTimeout: 30 * time.Second,
				PingTimeout:     10 * time.Second,
			},
		},
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:      rewrite,
		Transport:    p,
		BufferPool:   bufferPool{},
		ErrorHandler: p.errorHandler,
		ErrorLog:     slog.NewLogLogger(cfg.Log.Handler(), slog.LevelDebug),
	}
	return p
}

// unencryptedHTTP2 selects prior-knowledge HTTP/2 over plain TCP.
func unencryptedHTTP2() *http.Protocols {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &p
}

// forwardedHeaders are left as the client sent them: a sidecar is not a hop
// the application should see (ReverseProxy's Rewrite mode removes them).
var forwardedHeaders = []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}

func rewrite(r *httputil.ProxyRequest) {
	info := ConnInfoFrom(r.In.Context())
	r.Out.URL.Scheme = "http"
	r.Out.URL.Host = info.Upstream.Pick()
	for _, h := range forwardedHeaders {
		if v, ok := r.In.Header[h]; ok {
			r.Out.Header[h] = v
		}
	}
}

// RoundTrip sends HTTP/2 requests over h2c and the rest over HTTP/1.
func (p *Proxy) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.ProtoMajor == 2 {
		return p.h2c.RoundTrip(r)
	}
	return p.h1.RoundTrip(r)
}

// Close closes every upstream connection, in use or not. Call it once no
// request is being served any more.
func (p *Proxy) Close() {
	p.h1.CloseIdleConnections()
	p.h2c.CloseIdleConnections()
	p.upstreams.closeAll()
}

// ServeHTTP forwards r and records its metrics.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	info := ConnInfoFrom(r.Context())
	if info == nil {
		http.Error(w, "meshctl: request without a connection", http.StatusInternalServerError)
		return
	}
	route := info.Metrics.Route(r.Host)
	route.Request()
	rec := &recorder{ResponseWriter: w, start: time.Now()}
	if info.Hooks != nil {
		info.Hooks.RequestStarted()
		defer info.Hooks.RequestFinished()
	}
	if r.ProtoMajor == 1 {
		// net/http cancels an HTTP/1 request's context when the client's side
		// of the connection reads EOF, which is also what a client that
		// half-closes after its request looks like; it still wants the answer.
		// A client that is really gone shows when its answer cannot be written.
		r = r.WithContext(context.WithoutCancel(r.Context()))
	}
	if r.Body != nil && r.Body != http.NoBody {
		rec.body = &bodyReader{ReadCloser: r.Body}
		r.Body = rec.body
	}
	defer func() {
		v := recover()
		class := classify(rec.status, rec.Header())
		if v != nil {
			class = metrics.Failure // the response was cut off mid-stream
		}
		route.Response(rec.status, class, rec.latencyMs())
		if v != nil {
			panic(v)
		}
	}()
	p.rp.ServeHTTP(rec, r)
}

// errorHandler answers requests the upstream did not: 504 when connecting or
// waiting timed out, 502 otherwise.
func (p *Proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	if rec, ok := w.(*recorder); ok && rec.body != nil && rec.body.err != nil && !errors.Is(rec.body.err, io.EOF) {
		// The client stopped sending its body midway: its fault, not the upstream's.
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
	if r.Context().Err() == nil {
		p.log.Debug("upstream error", "method", r.Method, "host", r.Host, "path", r.URL.Path, "error", err,
			"refused", errors.Is(err, syscall.ECONNREFUSED))
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("meshctl-proxy-error", http.StatusText(status))
	w.WriteHeader(status)
	_, _ = w.Write([]byte("meshctl proxy: " + http.StatusText(status) + "\n"))
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
	gs := h.Get("Grpc-Status")
	if gs == "" {
		gs = h.Get(http.TrailerPrefix + "Grpc-Status")
	}
	if gs != "" && gs != "0" {
		return metrics.Failure
	}
	return metrics.Success
}

// recorder notes the status and the time of the response headers.
type recorder struct {
	http.ResponseWriter
	start   time.Time
	status  int
	latency time.Duration
	body    *bodyReader
}

// bodyReader remembers why reading a request body stopped.
type bodyReader struct {
	io.ReadCloser
	err error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.err = err
	}
	return n, err
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 || r.status < 200 && code >= 200 {
		if code >= 200 || code == http.StatusSwitchingProtocols {
			r.status = code
			r.latency = time.Since(r.start)
		}
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush, Hijack and full duplex.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Flush is implemented directly because ReverseProxy checks for it when streaming.
func (r *recorder) Flush() {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(r.ResponseWriter).Flush()
}

func (r *recorder) latencyMs() float64 {
	if r.status == 0 {
		return float64(time.Since(r.start).Microseconds()) / 1000
	}
	return float64(r.latency.Microseconds()) / 1000
}

// bufferPool recycles the 32 KiB buffers bodies are copied through.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32*1024); return &b }}

func (bufferPool) Get() []byte  { return *(buffers.Get().(*[]byte)) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }
