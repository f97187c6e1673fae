// Package metrics defines the proxy's Prometheus metrics and cheap handles
// for recording them on the hot path: a connection resolves its label values
// once, a request only adds its destination and the response status.
//
// Every label value comes from what the mesh knows (verified identities,
// discovery's names, the pod's own ports), never from what a client wrote
// (a Host header, a path): a client must not be able to grow the proxy's
// memory. On top of that the request series are capped (Config.MaxRoutes):
// beyond the cap the one idle longest is dropped, and counted.
package metrics

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/meshctl/meshctl/internal/spiffeid"
)

// LatencyBucketsMs are the fixed latency histogram buckets, in milliseconds
// (docs/DESIGN.md).
var LatencyBucketsMs = []float64{1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500, 1000, 2000, 3000, 4000, 5000, 10000}

// Directions of traffic.
const (
	Inbound  = "inbound"
	Outbound = "outbound"
)

// Classifications of a response.
const (
	Success = "success"
	Failure = "failure"
)

var connLabelNames = []string{"direction", "tls", "client_id", "server_id", "dst_workload"}

// Metrics holds the proxy's metric families in their own registry.
type Metrics struct {
	reg *prometheus.Registry

	requests    *prometheus.CounterVec
	responses   *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	tcpOpen     *prometheus.CounterVec
	tcpClose    *prometheus.CounterVec
	tcpOpenNow  *prometheus.GaugeVec
	tcpRead     *prometheus.CounterVec
	tcpWrite    *prometheus.CounterVec
	protoErrors *prometheus.CounterVec
	tlsErrors   *prometheus.CounterVec
	retries     *prometheus.CounterVec
	exhausted   *prometheus.CounterVec
	timeouts    *prometheus.CounterVec
	unavailable *prometheus.CounterVec
	mirrors     *prometheus.CounterVec
	decisions   *prometheus.CounterVec
	evicted     prometheus.Counter
	plaintext   *prometheus.CounterVec
	// decided caches the decisions' counters ([2]string → Counter): a
	// decision is counted on every inbound request.
	decided sync.Map
	// conns caches the connection counters' handles (ConnLabels →
	// *connHandles), shared by every connection with the same labels. The
	// TCP series are never deleted, so neither are these.
	conns  sync.Map
	routes routeTable
	// destinations holds the destination label values in use (string →
	// struct{}), at most maxDestinations of them (counted by ndestinations).
	destinations    sync.Map
	ndestinations   atomic.Int64
	maxDestinations int64
}

// Config bounds the metrics' memory. The zero value takes the defaults.
type Config struct {
	// MaxRoutes bounds the label sets of the request metrics (connection
	// labels and destination); beyond it the routes idle longest are
	// dropped (metrics_series_evicted_total). Default: 500.
	MaxRoutes int
	// MaxStatusesPerRoute bounds the status codes recorded apart per route;
	// others are recorded as status_code="other". With the latency
	// histogram, a route costs up to (this + 1) × 25 series. Default: 4.
	MaxStatusesPerRoute int
	// MaxDestinations bounds the destination label values of the balancer
	// and retry metrics; beyond it they are counted as destination="other".
	// Default: 500 (what discovery follows at once).
	MaxDestinations int
}

// withDefaults returns the configuration with its unset fields at their
// defaults.
func (c Config) withDefaults() Config {
	if c.MaxRoutes <= 0 {
		c.MaxRoutes = 500
	}
	if c.MaxStatusesPerRoute <= 0 {
		c.MaxStatusesPerRoute = 4
	}
	if c.MaxDestinations <= 0 {
		c.MaxDestinations = 500
	}
	return c
}

// New creates the metric families and registers them, with the Go runtime
// and process collectors, in a new registry.
func New(cfg Config) *Metrics {
	cfg = cfg.withDefaults()
	reqLabels := append(append([]string{}, connLabelNames...), "authority")
	rspLabels := append(append([]string{}, reqLabels...), "status_code", "classification")
	m := &Metrics{
		reg:             prometheus.NewRegistry(),
		routes:          routeTable{max: cfg.MaxRoutes, maxStatuses: cfg.MaxStatusesPerRoute, byKey: map[string]*Route{}},
		maxDestinations: int64(cfg.MaxDestinations),
		plaintext: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plaintext_connections_total", Help: "Plaintext connections the proxy made to addresses in the cluster's networks, by reason: no_identity (discovery says the endpoint has no proxy), not_in_mesh (discovery says it is no pod or Service of the mesh, or an explicit upstream without an identity).",
		}, []string{"direction", "reason"}),
		evicted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "metrics_series_evicted_total", Help: "Request metric label sets dropped to stay under the proxy's series cap (the one idle longest goes first).",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "request_total", Help: "HTTP requests received, by destination (authority: the Service name.namespace:port discovery gave, else the address the connection was for).",
		}, reqLabels),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "response_total", Help: "HTTP responses completed, by status and classification (failure: 5xx, a non-zero grpc-status, or a broken stream).",
		}, rspLabels),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "response_latency_ms", Help: "Time from a request's arrival to its response headers, in milliseconds.",
			Buckets: LatencyBucketsMs,
		}, rspLabels),
		tcpOpen: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcp_open_total", Help: "Connections accepted.",
		}, connLabelNames),
		tcpClose: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcp_close_total", Help: "Connections closed.",
		}, connLabelNames),
		tcpOpenNow: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tcp_open_connections", Help: "Connections open now.",
		}, connLabelNames),
		tcpRead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcp_read_bytes_total", Help: "Bytes received from clients.",
		}, connLabelNames),
		tcpWrite: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcp_write_bytes_total", Help: "Bytes sent to clients.",
		}, connLabelNames),
		protoErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "protocol_error_total", Help: "Malformed or abusive client input rejected, by protocol and error.",
		}, []string{"direction", "protocol", "error"}),
		tlsErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tls_error_total", Help: "Meshed connections that failed: handshakes (identity_mismatch, untrusted, expired, no_certificate, alpn, handshake, handshake_timeout) and plaintext refused on ports that require mutual TLS (plaintext_refused).",
		}, []string{"direction", "reason"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "retry_total", Help: "Requests sent again after a failed try, by destination (a Service and port).",
		}, []string{"destination"}),
		exhausted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "retry_budget_exhausted_total", Help: "Retries the destination's policy asked for and its retry budget refused.",
		}, []string{"destination"}),
		timeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "request_timeout_total", Help: "Requests (kind=request, answered 504 or DEADLINE_EXCEEDED) and tries (kind=try) that ran out of time.",
		}, []string{"destination", "kind"}),
		unavailable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "balancer_unavailable_total", Help: "Requests answered 503 because no endpoint could take them in time (reason: no_endpoints, all_failing, queue_full), or 500 because their route has no backend with a weight (reason: no_backends).",
		}, []string{"destination", "reason"}),
		mirrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mirror_requests_total", Help: "Copies of requests for a route's mirrors, by mirror Service and result: sent (answered below 500), failed (no endpoint, an error, a timeout or a 5xx), dropped (not sent: too many in flight, or a request body).",
		}, []string{"destination", "result"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "inbound_policy_decisions_total", Help: "Inbound requests and connections let in (allow), refused with 403 or a closed connection (deny) or 429 (rate_limited), by the rule that decided: an AuthorizationPolicy, default:<policy>, probe, rate-limit, rate-limit-per-client.",
		}, []string{"decision", "rule"}),
	}
	m.reg.MustRegister(m.decisions, m.evicted, m.plaintext, m.requests, m.responses, m.latency, m.tcpOpen, m.tcpClose, m.tcpOpenNow,
		m.tcpRead, m.tcpWrite, m.protoErrors, m.tlsErrors, m.retries, m.exhausted, m.timeouts, m.unavailable, m.mirrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry returns the registry to serve and to add more collectors to.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ProtocolError counts one rejected piece of client input.
func (m *Metrics) ProtocolError(direction, protocol, kind string) {
	m.protoErrors.WithLabelValues(direction, protocol, kind).Inc()
}

// Reasons a connection to the cluster went out in plaintext.
const (
	// PlaintextNoIdentity: discovery says the endpoint has no proxy.
	PlaintextNoIdentity = "no_identity"
	// PlaintextNotInMesh: discovery says the address is no pod or Service
	// of the mesh (or an explicit upstream has no identity).
	PlaintextNotInMesh = "not_in_mesh"
)

// Plaintext counts a plaintext connection made to an address inside the
// cluster's networks.
func (m *Metrics) Plaintext(direction, reason string) {
	m.plaintext.WithLabelValues(direction, reason).Inc()
}

// TLSError counts one failed meshed connection.
func (m *Metrics) TLSError(direction, reason string) {
	m.tlsErrors.WithLabelValues(direction, reason).Inc()
}

// WatchCertificate exports the expiry of the certificate notAfter returns
// (zero when there is none) as identity_cert_expiration_timestamp_seconds.
func (m *Metrics) WatchCertificate(notAfter func() time.Time) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "identity_cert_expiration_timestamp_seconds",
		Help: "When the proxy's workload certificate expires (Unix time).",
	}, func() float64 {
		t := notAfter()
		if t.IsZero() {
			return 0
		}
		return float64(t.Unix())
	}))
}

// InboundDecision counts an inbound policy decision.
func (m *Metrics) InboundDecision(decision, rule string) {
	key := [2]string{decision, rule}
	c, ok := m.decided.Load(key)
	if !ok {
		c, _ = m.decided.LoadOrStore(key, m.decisions.WithLabelValues(decision, rule))
	}
	c.(prometheus.Counter).Inc()
}

// WatchEjected exports, per destination, the endpoints taken out for
// failing (balancer_ejected_endpoints), asking each time it is scraped.
func (m *Metrics) WatchEjected(count func(yield func(destination string, ejected int))) {
	m.reg.MustRegister(&ejectedCollector{count: count})
}

var ejectedDesc = prometheus.NewDesc("balancer_ejected_endpoints",
	"Endpoints out of balancing for failing (failure accrual or failed connections), by destination.",
	[]string{"destination"}, nil)

type ejectedCollector struct {
	count func(yield func(string, int))
}

func (c *ejectedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- ejectedDesc }

func (c *ejectedCollector) Collect(ch chan<- prometheus.Metric) {
	seen := map[string]int{}
	c.count(func(dst string, n int) { seen[dst] += n })
	for dst, n := range seen {
		ch <- prometheus.MustNewConstMetric(ejectedDesc, prometheus.GaugeValue, float64(n), dst)
	}
}

// ConnLabels are the label values fixed for a connection's lifetime.
type ConnLabels struct {
	Direction   string
	TLS         bool
	ClientID    string // the client's SPIFFE ID, when it proved one
	ServerID    string // the server's SPIFFE ID, when it proved one
	DstWorkload string // the destination's workload, when discovery knows it
}

func (l ConnLabels) values() []string {
	return []string{l.Direction, strconv.FormatBool(l.TLS), l.ClientID, l.ServerID, l.DstWorkload}
}

// Conn records one connection's metrics.
type Conn struct {
	*connHandles

	// mu guards the request handles cached for the connection: most
	// connections send every request to one destination.
	mu     sync.Mutex
	last   string
	route  *Route
	lastTo routeTo
	to     *Route
}

// routeTo keys the outbound per-endpoint handles.
type routeTo struct {
	destination string
	server      spiffeid.ID
	workload    string
}

// Open counts a new connection and returns its handle.
func (m *Metrics) Open(l ConnLabels) *Conn {
	h, ok := m.conns.Load(l)
	if !ok {
		v := l.values()
		h, _ = m.conns.LoadOrStore(l, &connHandles{
			m: m, labels: v,
			opened: m.tcpOpen.WithLabelValues(v...),
			read:   m.tcpRead.WithLabelValues(v...), write: m.tcpWrite.WithLabelValues(v...),
			open: m.tcpOpenNow.WithLabelValues(v...), close: m.tcpClose.WithLabelValues(v...),
		})
	}
	c := &Conn{connHandles: h.(*connHandles)}
	c.opened.Inc()
	c.open.Inc()
	return c
}

// connHandles are the counters of the connections with one label set.
type connHandles struct {
	m      *Metrics
	labels []string
	opened prometheus.Counter
	read   prometheus.Counter
	write  prometheus.Counter
	open   prometheus.Gauge
	close  prometheus.Counter
}

// Read counts bytes received from the client.
func (c *Conn) Read(n int) { c.read.Add(float64(n)) }

// Write counts bytes sent to the client.
func (c *Conn) Write(n int) { c.write.Add(float64(n)) }

// Close counts the connection's end. Call it once.
func (c *Conn) Close() {
	c.open.Dec()
	c.close.Inc()
}

// TLSError counts a failed meshed connection made for this connection.
func (c *Conn) TLSError(reason string) { c.m.TLSError(c.labels[0], reason) }

// Plaintext counts a plaintext connection made for this connection to an
// address inside the cluster's networks.
func (c *Conn) Plaintext(reason string) { c.m.Plaintext(c.labels[0], reason) }

// ProtocolError counts rejected client input on this connection.
func (c *Conn) ProtocolError(protocol, kind string) {
	c.m.ProtocolError(c.labels[0], protocol, kind)
}

// Retry counts a request sent again to destination.
func (c *Conn) Retry(destination string) {
	c.m.retries.WithLabelValues(c.m.destination(destination)).Inc()
}

// RetryBudgetExhausted counts a retry the budget refused.
func (c *Conn) RetryBudgetExhausted(destination string) {
	c.m.exhausted.WithLabelValues(c.m.destination(destination)).Inc()
}

// Timeout counts a request or a try (kind) that ran out of time.
func (c *Conn) Timeout(destination, kind string) {
	c.m.timeouts.WithLabelValues(c.m.destination(destination), kind).Inc()
}

// Unavailable counts a request no endpoint could take, and why.
func (c *Conn) Unavailable(destination, reason string) {
	c.m.unavailable.WithLabelValues(c.m.destination(destination), reason).Inc()
}

// Mirror results, in metrics.
const (
	MirrorSent    = "sent"
	MirrorFailed  = "failed"
	MirrorDropped = "dropped"
)

// Mirror counts a copy of a request for a mirror (destination: its
// Service), by result (MirrorSent, MirrorFailed, MirrorDropped).
func (c *Conn) Mirror(destination, result string) {
	c.m.mirrors.WithLabelValues(c.m.destination(destination), result).Inc()
}

// destination is the label value for a destination: itself while fewer
// than MaxDestinations are in use, else "other".
func (m *Metrics) destination(name string) string {
	if _, ok := m.destinations.Load(name); ok {
		return name
	}
	if m.ndestinations.Add(1) > m.maxDestinations {
		m.ndestinations.Add(-1)
		return "other"
	}
	if _, loaded := m.destinations.LoadOrStore(name, struct{}{}); loaded {
		m.ndestinations.Add(-1)
	}
	return name
}
