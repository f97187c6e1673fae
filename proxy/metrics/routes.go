package metrics

import (
	"cmp"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshctl/meshctl/internal/spiffeid"
)

// routeTable holds every live Route, at most max of them.
type routeTable struct {
	max         int
	maxStatuses int

	// mu guards byKey, and orders a route's eviction (which deletes its
	// series) before any new route with the same labels is made.
	mu    sync.Mutex
	byKey map[string]*Route
}

// Route records the requests to one destination over connections with the
// same labels. Its series live here rather than in the metrics' set, and
// routeFamilies writes them: a route is dropped by deleting it from the
// table, where the set's UnregisterMetric searches all its series (made
// quadratic by churn).
type Route struct {
	m      *Metrics
	key    string
	labels []string // connection labels + authority
	// series is the request series' label set, as the text format writes it.
	series   string
	requests atomic.Uint64
	// past are requests at the last windowSlots ticks.
	past [windowSlots]atomic.Uint32
	// lastUsed is when its last request came (Unix nanoseconds).
	lastUsed atomic.Int64
	// evicted is set when the route is dropped: holders must get a new one.
	evicted atomic.Bool

	// mu guards responses (the statuses seen so far) and makes eviction and
	// the creation of response series exclusive, so an evicted route never
	// makes a series again.
	mu        sync.Mutex
	responses map[responseKey]*responseStats
}

type responseKey struct {
	status int
	class  string
}

// responseStats are the response count and latency histogram of one status
// and classification of a route.
type responseStats struct {
	series string // the label set, as the text format writes it
	count  atomic.Uint64
	// buckets count the latencies in each of LatencyBucketsMs' ranges (not
	// cumulated; above the last bound only count has them).
	buckets [len(latencyBounds)]atomic.Uint64
	// sumBits is the latencies' sum, a float64's bits.
	sumBits atomic.Uint64
	// past are its values at the last windowSlots ticks.
	past [windowSlots]snapshot
}

// sum is the latencies' sum.
func (s *responseStats) sum() float64 { return math.Float64frombits(s.sumBits.Load()) }

// observe counts one response of this latency.
func (s *responseStats) observe(latencyMs float64) {
	if i, _ := slices.BinarySearch(latencyBounds[:], latencyMs); i < len(latencyBounds) {
		s.buckets[i].Add(1)
	}
	for {
		old := s.sumBits.Load()
		if s.sumBits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+latencyMs)) {
			break
		}
	}
	// Last, so that a scrape never sees more in a bucket than in count.
	s.count.Add(1)
}

// Route returns the request handles for destination on this connection.
// destination must come from what the mesh knows (discovery's name for the
// destination, or the address the connection was for), never from the
// request itself.
func (c *Conn) Route(destination string) *Route {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.route != nil && c.last == destination && !c.route.evicted.Load() {
		return c.route
	}
	labels := append(append(make([]string, 0, len(c.labels)+1), c.labels...), destination)
	c.last = destination
	c.route = c.m.route(labels)
	return c.route
}

// RouteTo returns the request handles for destination on this outbound
// connection, labelled with the endpoint the request went to: tls and
// server_id say whether it was meshed and who the server had to prove,
// dst_workload which workload it belongs to (when discovery knows).
func (c *Conn) RouteTo(destination string, server spiffeid.ID, workload string) *Route {
	key := routeTo{destination, server, workload}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.to != nil && c.lastTo == key && !c.to.evicted.Load() {
		return c.to
	}
	labels := append(make([]string, 0, len(c.labels)+1), c.labels...)
	meshed := server != (spiffeid.ID{})
	labels[1] = strconv.FormatBool(meshed)
	labels[3] = ""
	if meshed {
		labels[3] = server.String()
	}
	if workload != "" {
		labels[4] = workload
	}
	labels = append(labels, destination)
	c.lastTo = key
	c.to = c.m.route(labels)
	return c.to
}

// route returns the live route with these labels, making it (and dropping
// the route idle longest when the table is full) if there is none.
func (m *Metrics) route(labels []string) *Route {
	for i, v := range labels {
		labels[i] = strings.ToValidUTF8(v, "\uFFFD") // the key is the series written
	}
	key := strings.Join(labels, "\x00")
	t := &m.routes
	t.mu.Lock()
	defer t.mu.Unlock()
	if r, ok := t.byKey[key]; ok {
		return r
	}
	if len(t.byKey) >= t.max {
		m.evictIdlest()
	}
	r := &Route{m: m, key: key, labels: labels, series: labelSet(familyRequests, labels)}
	r.lastUsed.Store(time.Now().UnixNano())
	t.byKey[key] = r
	return r
}

// evictIdlest drops the routes idle longest, a sixteenth of the table at a
// time, with every series they made. A sort when the table is full rather
// than an order kept on every request: that keeps the request path free of
// shared writes, and costs O(log n) per route made under churn. Callers hold
// m.routes.mu.
func (m *Metrics) evictIdlest() {
	type aged struct {
		r    *Route
		used int64
	}
	all := make([]aged, 0, len(m.routes.byKey))
	for _, r := range m.routes.byKey {
		all = append(all, aged{r, r.lastUsed.Load()})
	}
	slices.SortFunc(all, func(a, b aged) int { return cmp.Compare(a.used, b.used) })
	for _, a := range all[:min(len(all), max(1, m.routes.max/16))] {
		m.evict(a.r)
	}
}

// evict drops one route and its series. Callers hold m.routes.mu.
func (m *Metrics) evict(r *Route) {
	delete(m.routes.byKey, r.key)
	r.mu.Lock()
	r.evicted.Store(true)
	r.responses = nil
	r.mu.Unlock()
	m.evicted.Inc()
}

// Request counts a request.
func (r *Route) Request() {
	r.lastUsed.Store(time.Now().UnixNano())
	r.requests.Add(1)
}

// Response counts a completed response and its latency (to the response
// headers). A route evicted since its request came records nothing more.
func (r *Route) Response(status int, class string, latencyMs float64) {
	key := responseKey{status, class}
	r.mu.Lock()
	if r.evicted.Load() {
		r.mu.Unlock()
		return
	}
	h, ok := r.responses[key]
	if !ok && len(r.responses) >= r.m.routes.maxStatuses {
		key.status = otherStatus
		h, ok = r.responses[key]
	}
	if !ok {
		h = &responseStats{series: labelSet(familyResponses, r.responseLabels(key))}
		if r.responses == nil {
			r.responses = map[responseKey]*responseStats{}
		}
		r.responses[key] = h
	}
	r.mu.Unlock()
	h.observe(latencyMs)
}

func (r *Route) responseLabels(k responseKey) []string {
	return append(append(make([]string, 0, len(r.labels)+2), r.labels...), statusText(k.status), k.class)
}

// otherStatus stands for the statuses of a route beyond MaxStatusesPerRoute.
const otherStatus = -1

// statusText is the label value of a status code; 0 means no response (the
// request failed before one).
func statusText(status int) string {
	switch status {
	case 0:
		return ""
	case otherStatus:
		return "other"
	}
	return strconv.Itoa(status)
}
