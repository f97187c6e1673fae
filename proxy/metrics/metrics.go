// Package metrics defines the proxy's Prometheus metrics and cheap handles
// for recording them on the hot path: a connection resolves its label values
// once, a request only adds its destination and the response status.
//
// Every label value comes from what the mesh knows (verified identities,
// discovery's names, the pod's own ports), never from what a client wrote
// (a Host header, a path): a client must not be able to grow the proxy's
// memory. On top of that the request series are capped (Config.MaxRoutes):
// beyond the cap the one idle longest is dropped, and counted.
//
// The series live in a github.com/VictoriaMetrics/metrics set, written in
// Prometheus's text format with each family's help: the Prometheus client
// and the protobuf it links made the proxy's binary 2 MB larger and its
// resident memory 1.8 MB larger (bench/PROFILE.md, step 7). The request
// series, the ones routes churn, are kept by the routes themselves and
// written beside the set's (routewrite.go): the set drops a series by
// searching all of them, which churn made quadratic.
package metrics

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	vm "github.com/VictoriaMetrics/metrics"

	"github.com/meshctl/meshctl/internal/spiffeid"
)

// LatencyBucketsMs are the fixed latency histogram buckets, in milliseconds
// (docs/DESIGN.md).
var LatencyBucketsMs = latencyBounds[:]

var latencyBounds = [...]float64{1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500, 1000, 2000, 3000, 4000, 5000, 10000}

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

// Metrics holds the proxy's metric series in their own set.
type Metrics struct {
	set *vm.Set

	evicted *vm.Counter
	// counters caches the counters of the rarer families (retries,
	// timeouts, errors, policy decisions: one is counted on every inbound
	// request), so counting one allocates nothing.
	countersMu sync.RWMutex
	counters   map[counterKey]*vm.Counter
	// ejected are WatchEjected's sources.
	ejectedMu sync.Mutex
	ejected   []func(yield func(destination string, ejected int))
	// conns caches the connection counters' handles (ConnLabels →
	// *connHandles), shared by every connection with the same labels. The
	// TCP series are never deleted, so neither are these.
	conns  sync.Map
	routes routeTable
	// windows are the snapshots of the request metrics (WriteWindow).
	windows windows
	// destinations holds the destination label values in use (string →
	// struct{}), at most maxDestinations of them (counted by ndestinations).
	destinations    sync.Map
	ndestinations   atomic.Int64
	maxDestinations int64
}

// counterKey names a counter of a family with up to three labels.
type counterKey struct {
	family  string
	a, b, c string
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

// New creates an empty set of the proxy's metrics.
func New(cfg Config) *Metrics {
	cfg = cfg.withDefaults()
	// Without TYPE lines a scraper reads a histogram's buckets as unrelated
	// untyped series. The setting is the library's, process-wide.
	vm.ExposeMetadata(true)
	m := &Metrics{
		set:             vm.NewSet(),
		counters:        map[counterKey]*vm.Counter{},
		routes:          routeTable{max: cfg.MaxRoutes, maxStatuses: cfg.MaxStatusesPerRoute, byKey: map[string]*Route{}},
		maxDestinations: int64(cfg.MaxDestinations),
	}
	m.windows.started = time.Now()
	m.evicted = m.set.GetOrCreateCounter(familyEvicted)
	m.set.RegisterMetricsWriter(m.writeEjected)
	return m
}

// WritePrometheus writes every series, with the Go runtime's and the
// process's, in Prometheus's text format.
func (m *Metrics) WritePrometheus(w io.Writer) {
	m.write(&helpWriter{w: w}, nil)
}

// write writes every series, the request metrics since base when it is
// not nil.
func (m *Metrics) write(hw *helpWriter, base *windowBase) {
	m.set.WritePrometheus(hw)
	m.writeRoutes(hw, base)
	vm.WriteProcessMetrics(hw)
	hw.flush()
}

// count adds one to the counter of family with these label values (at
// most three).
func (m *Metrics) count(family string, values ...string) {
	key := counterKey{family: family}
	switch len(values) {
	case 3:
		key.c = values[2]
		fallthrough
	case 2:
		key.b = values[1]
		fallthrough
	case 1:
		key.a = values[0]
	}
	m.countersMu.RLock()
	c := m.counters[key]
	m.countersMu.RUnlock()
	if c == nil {
		c = m.set.GetOrCreateCounter(seriesName(family, values))
		m.countersMu.Lock()
		m.counters[key] = c
		m.countersMu.Unlock()
	}
	c.Inc()
}

// ProtocolError counts one rejected piece of client input.
func (m *Metrics) ProtocolError(direction, protocol, kind string) {
	m.count(familyProtocolErrors, direction, protocol, kind)
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
	m.count(familyPlaintext, direction, reason)
}

// TLSError counts one failed meshed connection.
func (m *Metrics) TLSError(direction, reason string) {
	m.count(familyTLSErrors, direction, reason)
}

// WatchCertificate exports the expiry of the certificate notAfter returns
// (zero when there is none) as identity_cert_expiration_timestamp_seconds.
func (m *Metrics) WatchCertificate(notAfter func() time.Time) {
	m.set.GetOrCreateGauge(familyCertExpiry, func() float64 {
		t := notAfter()
		if t.IsZero() {
			return 0
		}
		return float64(t.Unix())
	})
}

// InboundDecision counts an inbound policy decision.
func (m *Metrics) InboundDecision(decision, rule string) {
	m.count(familyDecisions, decision, rule)
}

// WatchEjected exports, per destination, the endpoints taken out for
// failing (balancer_ejected_endpoints), asking count each time it is
// scraped.
func (m *Metrics) WatchEjected(count func(yield func(destination string, ejected int))) {
	m.ejectedMu.Lock()
	m.ejected = append(m.ejected, count)
	m.ejectedMu.Unlock()
}

// writeEjected writes balancer_ejected_endpoints, summed over every source.
func (m *Metrics) writeEjected(w io.Writer) {
	m.ejectedMu.Lock()
	sources := slices.Clone(m.ejected)
	m.ejectedMu.Unlock()
	seen := map[string]int{}
	for _, count := range sources {
		count(func(dst string, n int) { seen[dst] += n })
	}
	if len(seen) == 0 {
		return
	}
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n", familyEjected, help[familyEjected], familyEjected)
	for _, dst := range slices.Sorted(maps.Keys(seen)) {
		fmt.Fprintf(w, "%s %d\n", seriesName(familyEjected, []string{dst}), seen[dst])
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
			opened: m.set.GetOrCreateCounter(seriesName(familyTCPOpen, v)),
			read:   m.set.GetOrCreateCounter(seriesName(familyTCPRead, v)),
			write:  m.set.GetOrCreateCounter(seriesName(familyTCPWrite, v)),
			open:   m.set.GetOrCreateGauge(seriesName(familyTCPOpenNow, v), nil),
			close:  m.set.GetOrCreateCounter(seriesName(familyTCPClose, v)),
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
	opened *vm.Counter
	read   *vm.Counter
	write  *vm.Counter
	open   *vm.Gauge
	close  *vm.Counter
}

// Read counts bytes received from the client.
func (c *Conn) Read(n int) { c.read.Add(n) }

// Write counts bytes sent to the client.
func (c *Conn) Write(n int) { c.write.Add(n) }

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
	c.m.count(familyRetries, c.m.destination(destination))
}

// RetryBudgetExhausted counts a retry the budget refused.
func (c *Conn) RetryBudgetExhausted(destination string) {
	c.m.count(familyExhausted, c.m.destination(destination))
}

// Timeout counts a request or a try (kind) that ran out of time.
func (c *Conn) Timeout(destination, kind string) {
	c.m.count(familyTimeouts, c.m.destination(destination), kind)
}

// Unavailable counts a request no endpoint could take, and why.
func (c *Conn) Unavailable(destination, reason string) {
	c.m.count(familyUnavailable, c.m.destination(destination), reason)
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
	c.m.count(familyMirrors, c.m.destination(destination), result)
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
