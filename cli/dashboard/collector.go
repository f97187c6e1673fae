package dashboard

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/meshctl/meshctl/cli/proxystats"
)

// Collector scrapes the namespaces the browser looks at, every Interval,
// and keeps each one's latest graph and its workloads' golden metrics
// over time. Memory is bounded: at most MaxViews namespaces (the least
// recently asked for is dropped), HistoryLen points per workload, and the
// workloads of the latest scrape.
type Collector struct {
	// Source reads the cluster.
	Source Source
	// Interval is the time between scrapes (default 5s).
	Interval time.Duration
	// HistoryLen is the points kept per workload (default 720: an hour at 5s).
	HistoryLen int
	// Idle is how long a namespace is scraped after it was last asked for
	// (default 2m).
	Idle time.Duration
	// MaxViews bounds the namespaces scraped (default 32).
	MaxViews int
	// MaxScrapes bounds the namespaces read at once (default 2): the
	// ticker reads one at a time, but each namespace's first request
	// reads it at once, and a page may ask for many.
	MaxScrapes int
	// Log receives scrape failures.
	Log *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time

	mu      sync.Mutex
	views   map[string]*view
	scrapes chan struct{}
}

// view is one namespace's ("" every namespace) scrapes.
type view struct {
	namespace string
	// scrape serialises scrapes of the view (the ticker's and a first
	// request's).
	scrape sync.Mutex

	// The fields below are guarded by Collector.mu.
	asked    time.Time
	prev     map[string]*proxystats.Sample // by "namespace/pod"
	prevAt   map[string]time.Time          // when each of prev was read
	prevTime time.Time
	graph    *Graph
	snap     *Snapshot
	history  map[string][]point // by node ID
}

func (c *Collector) defaults() {
	if c.Interval <= 0 {
		c.Interval = 5 * time.Second
	}
	if c.HistoryLen <= 0 {
		c.HistoryLen = 720
	}
	if c.Idle <= 0 {
		c.Idle = 2 * time.Minute
	}
	if c.MaxViews <= 0 {
		c.MaxViews = 32
	}
	if c.MaxScrapes <= 0 {
		c.MaxScrapes = 2
	}
	if c.scrapes == nil {
		c.scrapes = make(chan struct{}, c.MaxScrapes)
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Run scrapes every view asked for within Idle, every Interval, until ctx
// ends; views not asked for longer are dropped.
func (c *Collector) Run(ctx context.Context) error {
	c.mu.Lock()
	c.defaults()
	c.mu.Unlock()
	t := time.NewTicker(c.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		for _, v := range c.active() {
			if err := c.refresh(ctx, v); err != nil && ctx.Err() == nil {
				c.Log.Warn("dashboard: cannot read the namespace", "namespace", nsName(v.namespace), "err", err)
			}
		}
	}
}

func nsName(ns string) string {
	if ns == "" {
		return "(all)"
	}
	return ns
}

// active drops the idle views and returns the others.
func (c *Collector) active() []*view {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*view
	for ns, v := range c.views {
		if c.Now().Sub(v.asked) > c.Idle {
			delete(c.views, ns)
			continue
		}
		out = append(out, v)
	}
	return out
}

// watch returns the view of a namespace, creating it (and dropping the
// least recently asked view beyond MaxViews), and marks it asked for.
func (c *Collector) watch(namespace string) *view {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.defaults()
	if c.views == nil {
		c.views = map[string]*view{}
	}
	v := c.views[namespace]
	if v == nil {
		for len(c.views) >= c.MaxViews {
			var oldest *view
			for _, o := range c.views {
				if oldest == nil || o.asked.Before(oldest.asked) {
					oldest = o
				}
			}
			delete(c.views, oldest.namespace)
		}
		v = &view{namespace: namespace, history: map[string][]point{}}
		c.views[namespace] = v
	}
	v.asked = c.Now()
	return v
}

// refresh scrapes a view and updates its graph and history.
func (c *Collector) refresh(ctx context.Context, v *view) error {
	v.scrape.Lock()
	defer v.scrape.Unlock()
	c.mu.Lock()
	recent := v.graph != nil && c.Now().Sub(v.prevTime) < c.Interval/2
	c.mu.Unlock()
	if recent {
		// Scraped just now (a request and the ticker, or many first
		// requests at once): rates over a sliver of time are noise.
		return nil
	}
	select {
	case c.scrapes <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-c.scrapes }()
	// The proxies are read during Snapshot: the interval is from its start.
	now := c.Now()
	snap, err := c.Source.Snapshot(ctx, v.namespace)
	if err != nil {
		return err
	}
	// Only this view's refresh, serialised by v.scrape, writes prev and
	// prevTime: the graph is built without holding up other views' readers.
	c.mu.Lock()
	prev, prevAt, prevTime := v.prev, v.prevAt, v.prevTime
	c.mu.Unlock()
	var interval time.Duration
	if !prevTime.IsZero() {
		interval = now.Sub(prevTime)
	}
	next, nextAt := map[string]*proxystats.Sample{}, map[string]time.Time{}
	for _, w := range snap.Workloads {
		for _, p := range w.Pods {
			key := p.Namespace + "/" + p.Name
			last, lastAt := prev[key], prevAt[key]
			if p.End == nil {
				// Unread this time: keep its last sample, or the next
				// read would count its whole life as one interval.
				if last != nil {
					next[key], nextAt[key] = last, lastAt
				}
				continue
			}
			p.Start = last
			if last != nil && lastAt.Before(prevTime) && now.After(lastAt) {
				// Its last read is older than the window's start (a read
				// failed in between): what it counted since then spans
				// more than this window, so the window's start is
				// estimated, or its rate would be counted too high.
				p.Start = proxystats.Interpolate(last, p.End, float64(prevTime.Sub(lastAt))/float64(now.Sub(lastAt)))
			}
			next[key], nextAt[key] = p.End, now
		}
	}
	g := buildGraph(v.namespace, snap, interval, now)
	c.mu.Lock()
	defer c.mu.Unlock()
	v.prev, v.prevAt, v.prevTime, v.graph, v.snap = next, nextAt, now, &g, snap
	if interval > 0 {
		seen := map[string]bool{}
		for _, n := range g.Nodes {
			if n.Kind == KindExternal || n.Kind == KindUnmeshed || n.Kind == KindService || n.Kind == KindWorkload {
				continue
			}
			seen[n.ID] = true
			h := append(v.history[n.ID], pointOf(now, n.Inbound))
			if len(h) > c.HistoryLen {
				h = append([]point(nil), h[len(h)-c.HistoryLen:]...)
			}
			v.history[n.ID] = h
		}
		for id := range v.history {
			if !seen[id] {
				delete(v.history, id)
			}
		}
	}
	return nil
}

// Graph is the latest graph of a namespace ("" every namespace), scraped
// now when the namespace was not watched yet.
func (c *Collector) Graph(ctx context.Context, namespace string) (Graph, error) {
	v := c.watch(namespace)
	c.mu.Lock()
	g := v.graph
	c.mu.Unlock()
	if g == nil {
		if err := c.refresh(ctx, v); err != nil {
			return Graph{}, fmt.Errorf("read namespace %s: %w", nsName(namespace), err)
		}
		c.mu.Lock()
		g = v.graph
		c.mu.Unlock()
	}
	return *g, nil
}

// History is a workload's points in its namespace's view, oldest first.
func (c *Collector) History(namespace, id string) []Point {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.views[namespace]
	if v == nil {
		return []Point{}
	}
	h := v.history[id]
	out := make([]Point, len(h))
	for i, p := range h {
		out[i] = p.Point()
	}
	return out
}

// point is a Point as kept in a history: no pointers (NaN for null), so a
// point is one flat 64-byte value and an hour of them one allocation.
type point struct {
	at                                               int64 // Unix milliseconds
	rps, success, p50, p95, p99, requests, successes float64
}

func pointOf(t time.Time, s Stats) point {
	val := func(v *float64) float64 {
		if v == nil {
			return math.NaN()
		}
		return *v
	}
	return point{at: t.UnixMilli(), rps: s.RPS, success: val(s.SuccessRate), p50: val(s.P50), p95: val(s.P95), p99: val(s.P99),
		requests: s.Requests, successes: s.Successes}
}

// Point is the point as the API gives it.
func (p point) Point() Point {
	return Point{Time: time.UnixMilli(p.at).UTC(), Stats: Stats{RPS: p.rps, SuccessRate: num(p.success), P50: num(p.p50), P95: num(p.p95), P99: num(p.p99),
		Requests: p.requests, Successes: p.successes}}
}

// snapshot is the view's latest snapshot (nil before its first scrape).
func (c *Collector) snapshot(namespace string) *Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v := c.views[namespace]; v != nil {
		return v.snap
	}
	return nil
}
