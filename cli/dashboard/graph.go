package dashboard

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/meshctl/meshctl/cli/proxystats"
	"github.com/meshctl/meshctl/internal/gamma"
)

// workloadID is a workload's node ID.
func workloadID(namespace, name string) string { return namespace + "/" + name }

// serviceID is a split Service's node ID.
func serviceID(namespace, name string) string { return "svc:" + namespace + "/" + name }

// makeStats turns counts over an interval into Stats; interval 0 means
// there is no interval yet (one sample): only the totals are known.
func makeStats(windowReq, windowOK float64, h proxystats.Histogram, total, totalOK float64, interval time.Duration) Stats {
	s := Stats{Requests: total, Successes: totalOK}
	if interval <= 0 {
		return s
	}
	s.RPS = windowReq / interval.Seconds()
	if windowReq > 0 {
		s.SuccessRate = num(windowOK / windowReq)
		s.P50, s.P95, s.P99 = num(h.Quantile(0.5)), num(h.Quantile(0.95)), num(h.Quantile(0.99))
	}
	return s
}

// num is v as a JSON number, nil for NaN and infinities (the overflow
// bucket's bound is +Inf: "more than the largest bound" is not a number).
func num(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// inboundTraffic sums a pod's inbound series: in total, in the window, and
// the plaintext part (callers without a proxy).
type inboundTraffic struct {
	total, totalOK, window, windowOK float64
	hist                             proxystats.Histogram
}

func (t *inboundTraffic) add(p *proxystats.Pod, keep func(proxystats.Series) bool) {
	d := proxystats.Delta(p.Start, p.End)
	for s, n := range p.End.Responses {
		if s.Direction != "inbound" || !keep(s) {
			continue
		}
		w := d.Responses[s]
		t.total += n
		t.window += w
		if s.Success {
			t.totalOK += n
			t.windowOK += w
		}
	}
	for s, h := range d.Latency {
		if s.Direction == "inbound" && keep(s) {
			t.hist = proxystats.AddHistograms(t.hist, h)
		}
	}
}

func (t *inboundTraffic) stats(interval time.Duration) Stats {
	return makeStats(t.window, t.windowOK, t.hist, t.total, t.totalOK, interval)
}

func allSeries(proxystats.Series) bool   { return true }
func plaintext(s proxystats.Series) bool { return !s.TLS }

// buildGraph is the graph of a snapshot whose meshed pods carry the
// previous scrape's samples in Start (nil for pods new since) and this
// scrape's in End; interval is the time between the scrapes (0 for the
// first).
func buildGraph(namespace string, snap *Snapshot, interval time.Duration, now time.Time) Graph {
	g := Graph{Namespace: namespace, Time: now.UTC(), Interval: interval.Seconds(), Nodes: []Node{}, Edges: []Edge{}, Splits: []Split{}}
	g.Errors = append(g.Errors, snap.Errors...)
	nodes := map[string]int{} // ID → index in g.Nodes
	addNode := func(n Node) int {
		if i, ok := nodes[n.ID]; ok {
			return i
		}
		nodes[n.ID] = len(g.Nodes)
		g.Nodes = append(g.Nodes, n)
		return len(g.Nodes) - 1
	}
	for _, w := range snap.Workloads {
		n := Node{ID: workloadID(w.Namespace, w.Name), Kind: w.Kind, Namespace: w.Namespace, Name: w.Name, Pods: len(w.Pods)}
		var in, unmeshed inboundTraffic
		for _, p := range w.Pods {
			if p.Meshed {
				n.Meshed++
			}
			if p.Err != nil {
				g.Errors = append(g.Errors, "pod "+p.Namespace+"/"+p.Name+": "+p.Err.Error())
				continue
			}
			if p.End == nil {
				continue
			}
			in.add(p, allSeries)
			unmeshed.add(p, plaintext)
		}
		n.Inbound = in.stats(interval)
		addNode(n)
		if unmeshed.total > 0 {
			src := addNode(Node{ID: "unmeshed:" + w.Namespace, Kind: KindUnmeshed, Namespace: w.Namespace, Name: "unmeshed callers"})
			g.Edges = append(g.Edges, Edge{ID: g.Nodes[src].ID + ">" + n.ID, Source: g.Nodes[src].ID, Target: n.ID, Stats: unmeshed.stats(interval)})
		}
	}
	for _, t := range proxystats.EdgeTraffic(snap.Workloads, nil, false) {
		src := workloadID(t.SrcNamespace, t.Src)
		var dst string
		if t.ToWorkload {
			dst = workloadID(t.DstNamespace, t.Dst)
			addNode(Node{ID: dst, Kind: KindWorkload, Namespace: t.DstNamespace, Name: t.Dst})
		} else {
			dst = "external:" + t.Dst
			addNode(Node{ID: dst, Kind: KindExternal, Name: t.Dst})
		}
		g.Edges = append(g.Edges, Edge{
			ID: src + ">" + dst, Source: src, Target: dst, Secured: t.Secured,
			Stats: makeStats(t.WindowRequests, t.WindowSuccesses, t.Latency, t.Requests, t.Successes, interval),
		})
	}
	for _, s := range routeSplits(snap) {
		ns, name, _ := strings.Cut(strings.TrimPrefix(s.Service, "svc:"), "/")
		addNode(Node{ID: s.Service, Kind: KindService, Namespace: ns, Name: name})
		g.Splits = append(g.Splits, s)
	}
	slices.SortFunc(g.Nodes, func(a, b Node) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(g.Edges, func(a, b Edge) int { return strings.Compare(a.ID, b.ID) })
	return g
}

// routeSplits are the backends of the HTTPRoutes with a Service parent,
// each with its weight, its share of its rule, and the workloads whose
// pods the backend Service selects.
func routeSplits(snap *Snapshot) []Split {
	var out []Split
	for _, r := range snap.Routes {
		var parents []string
		for _, p := range r.Spec.ParentRefs {
			if gamma.IsServiceParent(p) {
				parents = append(parents, serviceID(gamma.ParentNamespace(r.Namespace, p), string(p.Name)))
			}
		}
		for ri, rule := range r.Spec.Rules {
			var sum int32
			for _, b := range rule.BackendRefs {
				sum += gamma.BackendWeight(b)
			}
			for _, b := range rule.BackendRefs {
				if !gamma.IsService(b.Group, b.Kind, "Service") {
					continue
				}
				ns := r.Namespace
				if b.Namespace != nil && *b.Namespace != "" {
					ns = string(*b.Namespace)
				}
				backend := ns + "/" + string(b.Name)
				pct := 0.0
				if sum > 0 {
					pct = 100 * float64(gamma.BackendWeight(b)) / float64(sum)
				}
				for _, parent := range parents {
					out = append(out, Split{
						ID:    r.Namespace + "/" + r.Name + "#" + strconv.Itoa(ri) + ">" + backend + "@" + parent,
						Route: r.Namespace + "/" + r.Name, Service: parent, Backend: backend,
						Targets: backendWorkloads(snap, ns, string(b.Name)), Weight: gamma.BackendWeight(b), Percent: pct,
					})
				}
			}
		}
	}
	return out
}

// backendWorkloads are the node IDs of the workloads with a running pod
// the Service selects.
func backendWorkloads(snap *Snapshot, namespace, service string) []string {
	var sel labels.Selector
	for _, s := range snap.Services {
		if s.Namespace == namespace && s.Name == service && len(s.Spec.Selector) > 0 {
			sel = labels.SelectorFromSet(s.Spec.Selector)
		}
	}
	out := []string{}
	if sel == nil {
		return out
	}
	for _, w := range snap.Workloads {
		if w.Namespace != namespace {
			continue
		}
		for _, p := range w.Pods {
			if sel.Matches(labels.Set(snap.PodLabels[p.Namespace+"/"+p.Name])) {
				out = append(out, workloadID(w.Namespace, w.Name))
				break
			}
		}
	}
	return out
}

// filterGraph keeps the nodes whose ID contains text (case-insensitive),
// their direct neighbours, the edges between kept nodes and the splits of
// kept Services. An empty text keeps everything.
func filterGraph(g Graph, text string) Graph {
	text = strings.ToLower(strings.TrimSpace(text))
	if text == "" {
		return g
	}
	match := map[string]bool{}
	for _, n := range g.Nodes {
		if strings.Contains(strings.ToLower(n.ID), text) {
			match[n.ID] = true
		}
	}
	keep := map[string]bool{}
	for id := range match {
		keep[id] = true
	}
	for _, e := range g.Edges {
		if match[e.Source] || match[e.Target] {
			keep[e.Source], keep[e.Target] = true, true
		}
	}
	for _, s := range g.Splits {
		if match[s.Service] || slices.ContainsFunc(s.Targets, func(t string) bool { return match[t] }) {
			keep[s.Service] = true
			for _, t := range s.Targets {
				keep[t] = true
			}
		}
	}
	out := g
	out.Nodes, out.Edges, out.Splits = []Node{}, []Edge{}, []Split{}
	for _, n := range g.Nodes {
		if keep[n.ID] {
			out.Nodes = append(out.Nodes, n)
		}
	}
	for _, e := range g.Edges {
		if keep[e.Source] && keep[e.Target] {
			out.Edges = append(out.Edges, e)
		}
	}
	for _, s := range g.Splits {
		if keep[s.Service] {
			out.Splits = append(out.Splits, s)
		}
	}
	return out
}
