package proxystats

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/meshctl/meshctl/internal/meshnames"
)

// Pod is one pod of a resource, with its proxy's samples (nil when it has
// no proxy or could not be read).
type Pod struct {
	Namespace, Name string
	// Workload is the pod's meshctl.io/workload label.
	Workload string
	// Meshed says the pod has a proxy.
	Meshed bool
	// Start and End are the samples at the window's ends.
	Start, End *Sample
	// Err says why the pod's proxy could not be read.
	Err error
}

// Resource is a row's subject: a Deployment, a Service, a Namespace, a Pod.
type Resource struct {
	Kind, Namespace, Name string
	Pods                  []*Pod
}

// Row is what `meshctl stat` prints for one resource.
type Row struct {
	Namespace string  `json:"namespace"`
	Kind      string  `json:"kind"`
	Name      string  `json:"name"`
	Meshed    int     `json:"meshed"`
	Pods      int     `json:"pods"`
	Requests  float64 `json:"requests"`
	Successes float64 `json:"successes"`
	// SuccessRate is 0..1, NaN (null in JSON) without requests.
	SuccessRate float64 `json:"-"`
	RPS         float64 `json:"rps"`
	// WindowSeconds is how long the figures cover (the longest of the
	// pods' own windows when they kept them).
	WindowSeconds float64 `json:"window_seconds"`
	// P50, P95 and P99 are histogram bucket upper bounds in ms (NaN: no data).
	P50, P95, P99 float64   `json:"-"`
	TCPConns      float64   `json:"tcp_connections"`
	Bounds        []float64 `json:"-"`
	Errors        []string  `json:"errors,omitempty"`
}

// MarshalJSON writes NaN as null.
func (r Row) MarshalJSON() ([]byte, error) {
	type plain Row
	num := func(v float64) *float64 {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil
		}
		return &v
	}
	return json.Marshal(struct {
		plain
		SuccessRate *float64 `json:"success_rate"`
		P50         *float64 `json:"latency_p50_ms"`
		P95         *float64 `json:"latency_p95_ms"`
		P99         *float64 `json:"latency_p99_ms"`
	}{plain(r), num(r.SuccessRate), num(r.P50), num(r.P95), num(r.P99)})
}

// Filter selects the series a row counts.
type Filter func(Series) bool

// Inbound counts what the resource's pods served.
func Inbound(s Series) bool { return s.Direction == "inbound" }

// Stat computes a row per resource over a window (the kubelet's probes are
// not counted: they are no client's requests): the time between each
// pod's Start and End samples, or, when window is 0, the window each End
// sample covers by itself (a proxy asked for its last minute).
func Stat(resources []Resource, window time.Duration, keep Filter) []Row {
	rows := make([]Row, 0, len(resources))
	for _, res := range resources {
		row := Row{Namespace: res.Namespace, Kind: res.Kind, Name: res.Name, Pods: len(res.Pods), SuccessRate: math.NaN(), WindowSeconds: window.Seconds()}
		var hist Histogram
		for _, p := range res.Pods {
			if p.Meshed {
				row.Meshed++
			}
			if p.Err != nil {
				row.Errors = append(row.Errors, fmt.Sprintf("pod %s/%s: %v", p.Namespace, p.Name, p.Err))
				continue
			}
			if p.End == nil {
				continue
			}
			d := Delta(p.Start, p.End)
			var requests float64
			for s, n := range d.Responses {
				if !keep(s) || s.Authority == meshnames.ProbeAuthority {
					continue
				}
				requests += n
				if s.Success {
					row.Successes += n
				}
			}
			row.Requests += requests
			if window == 0 && p.End.Window > 0 {
				row.RPS += requests / p.End.Window
				row.WindowSeconds = max(row.WindowSeconds, p.End.Window)
			}
			for s, h := range d.Latency {
				if keep(s) && s.Authority != meshnames.ProbeAuthority {
					hist = add(hist, h)
				}
			}
			row.TCPConns += p.End.OpenConns["inbound"]
		}
		if row.Requests > 0 {
			row.SuccessRate = row.Successes / row.Requests
		}
		if window > 0 {
			row.RPS = row.Requests / window.Seconds()
		}
		row.P50, row.P95, row.P99 = hist.Quantile(0.5), hist.Quantile(0.95), hist.Quantile(0.99)
		row.Bounds = hist.Bounds
		rows = append(rows, row)
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].Namespace != rows[j].Namespace {
			return rows[i].Namespace < rows[j].Namespace
		}
		return rows[i].Name < rows[j].Name
	})
	return rows
}

// TableOptions shape stat's table.
type TableOptions struct {
	// Namespace adds a NAMESPACE column first (-A).
	Namespace bool
	// Wide adds the request count, and the NAMESPACE column.
	Wide bool
}

// WriteTable prints rows as `meshctl stat` does to w, and a warning for
// each pod that could not be read to warn (stderr).
func WriteTable(w, warn io.Writer, rows []Row, opts TableOptions) error {
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	wide, namespace := opts.Wide, opts.Namespace || opts.Wide
	head := "NAME\tMESHED\tSUCCESS\tRPS\tLATENCY_P50\tLATENCY_P95\tLATENCY_P99\tTCP_CONN"
	if namespace {
		head = "NAMESPACE\t" + head
	}
	if wide {
		head += "\tREQUESTS"
	}
	fmt.Fprintln(tw, head)
	for _, r := range rows {
		success := "-"
		if !math.IsNaN(r.SuccessRate) {
			success = fmt.Sprintf("%.2f%%", 100*r.SuccessRate)
		}
		line := fmt.Sprintf("%s\t%d/%d\t%s\t%.1f\t%s\t%s\t%s\t%.0f", r.Name, r.Meshed, r.Pods, success, r.RPS,
			FormatMs(r.P50, r.Bounds), FormatMs(r.P95, r.Bounds), FormatMs(r.P99, r.Bounds), r.TCPConns)
		if namespace {
			line = r.Namespace + "\t" + line
		}
		if wide {
			line += fmt.Sprintf("\t%.0f", r.Requests)
		}
		fmt.Fprintln(tw, line)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rows {
		for _, e := range r.Errors {
			if _, err := fmt.Fprintln(warn, "warning: "+e); err != nil {
				return err
			}
		}
	}
	return nil
}

// WriteJSON prints rows for scripts.
func WriteJSON(w io.Writer, rows []Row) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rows)
}

// Edge is who talks to whom.
type Edge struct {
	SrcNamespace string `json:"src_namespace"`
	Src          string `json:"src"`
	DstNamespace string `json:"dst_namespace"`
	Dst          string `json:"dst"`
	// Secured says every request on the edge went over mutual TLS with the
	// server's identity checked (the client's own is its proxy's).
	Secured  bool    `json:"secured"`
	Requests float64 `json:"requests"`
	// DstIDs are the identities the destination proved (sorted).
	DstIDs []string `json:"dst_ids,omitempty"`
	// Reason says why an edge is not secured.
	Reason string `json:"reason,omitempty"`
}

// Reasons an edge is not secured.
const (
	// ReasonNotMeshed: the destination has no proxy (or is outside the
	// cluster), so the hop was plaintext.
	ReasonNotMeshed = "destination not meshed: plaintext"
	// ReasonPlaintextToMeshed: the destination is meshed but the hop was
	// plaintext (a skipped port, opaque traffic, a client-side opt-out).
	ReasonPlaintextToMeshed = "plaintext to a meshed destination (a skipped or opaque port?)"
	// ReasonNoIdentity: TLS without a verified server identity.
	ReasonNoIdentity = "TLS without a verified server identity"
	// ReasonClientNotMeshed: an inbound edge from clients without a proxy.
	ReasonClientNotMeshed = "client not meshed: plaintext"
	// UnmeshedClients names the source of inbound edges from clients
	// without a proxy (their proxies' metrics do not say who they are).
	UnmeshedClients = "(unmeshed clients)"
)

// reasonRank orders the reasons an edge is not secured, the worst last.
var reasonRank = map[string]int{ReasonNoIdentity: 1, ReasonPlaintextToMeshed: 2, ReasonNotMeshed: 3}

// reasonOf is why a series' requests were not secured ("" when they were).
func reasonOf(s Series) string {
	switch {
	case s.TLS && s.ServerID != "":
		return ""
	case s.TLS:
		return ReasonNoIdentity
	case s.DstWorkload != "":
		return ReasonPlaintextToMeshed
	}
	return ReasonNotMeshed
}

// Traffic is an edge and what crossed it.
type Traffic struct {
	Edge
	// ToWorkload says the destination is a workload of the mesh (its name
	// came from the proxy's dst_workload label), not an authority.
	ToWorkload bool
	// Successes counts, like Edge.Requests, since the proxies started.
	Successes float64
	// Window is what crossed the edge between each pod's Start and End
	// samples (all of End for a pod without Start): requests, successes
	// and the latency histogram.
	WindowRequests, WindowSuccesses float64
	Latency                         Histogram
}

// Edges lists the edges out of the resources' pods (of the series keep
// takes, all when nil), from their outbound metrics (cumulative: every edge seen since the proxies started).
func Edges(resources []Resource, keep Filter) []Edge {
	traffic := EdgeTraffic(resources, keep, true)
	out := make([]Edge, len(traffic))
	for i, t := range traffic {
		out[i] = t.Edge
	}
	return out
}

// EdgeTraffic is Edges with what crossed each edge (of the series keep
// takes, all when nil; withInbound adds the edges from unmeshed clients
// into the resources), in total and in the
// window between the pods' Start and End samples. The source of an edge
// is the resource, its destination the series' dst_workload, else its
// authority.
func EdgeTraffic(resources []Resource, keep Filter, withInbound bool) []Traffic {
	type key struct{ srcNS, src, dstNS, dst string }
	agg := map[key]*Traffic{}
	for _, res := range resources {
		for _, p := range res.Pods {
			if p.End == nil || !p.Meshed {
				continue
			}
			d := Delta(p.Start, p.End)
			for s, n := range p.End.Responses {
				if s.Direction != "outbound" || noEndpoint(s) || (keep != nil && !keep(s)) {
					continue
				}
				dst, dstNS := s.DstWorkload, namespaceOf(s)
				if dst == "" {
					dst = s.Authority
				}
				k := key{p.Namespace, res.Name, dstNS, dst}
				e := agg[k]
				if e == nil {
					e = &Traffic{Edge: Edge{SrcNamespace: k.srcNS, Src: k.src, DstNamespace: k.dstNS, Dst: k.dst, Secured: true}, ToWorkload: s.DstWorkload != ""}
					agg[k] = e
				}
				e.Requests += n
				w := d.Responses[s]
				e.WindowRequests += w
				if s.Success {
					e.Successes += n
					e.WindowSuccesses += w
				}
				if h, ok := d.Latency[s]; ok {
					e.Latency = add(e.Latency, h)
				}
				if r := reasonOf(s); r != "" {
					e.Secured = false
					if reasonRank[r] > reasonRank[e.Reason] { // the worst, whatever the order of the series
						e.Reason = r
					}
				} else if !slices.Contains(e.DstIDs, s.ServerID) {
					e.DstIDs = append(e.DstIDs, s.ServerID)
				}
			}
			if !withInbound {
				continue
			}
			// Inbound, the requests of clients without a proxy: an edge of
			// their own into the resource, never secured.
			for s, n := range p.End.Responses {
				if s.Direction != "inbound" || s.TLS || s.ClientID != "" || s.Authority == meshnames.ProbeAuthority || (keep != nil && !keep(s)) {
					continue
				}
				k := key{"", UnmeshedClients, p.Namespace, res.Name}
				e := agg[k]
				if e == nil {
					e = &Traffic{Edge: Edge{Src: UnmeshedClients, DstNamespace: p.Namespace, Dst: res.Name, Reason: ReasonClientNotMeshed}, ToWorkload: true}
					agg[k] = e
				}
				e.Requests += n
				e.WindowRequests += d.Responses[s]
				if s.Success {
					e.Successes += n
					e.WindowSuccesses += d.Responses[s]
				}
				if h, ok := d.Latency[s]; ok {
					e.Latency = add(e.Latency, h)
				}
			}
		}
	}
	for _, e := range agg {
		slices.Sort(e.DstIDs)
	}
	out := make([]Traffic, 0, len(agg))
	for _, e := range agg {
		out = append(out, *e)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		return a.SrcNamespace+"/"+a.Src+">"+a.DstNamespace+"/"+a.Dst < b.SrcNamespace+"/"+b.Src+">"+b.DstNamespace+"/"+b.Dst
	})
	return out
}

// noEndpoint is the proxy's own 503 for a destination with no ready
// endpoint: the request never left the pod, so it makes no edge.
func noEndpoint(s Series) bool {
	return !s.TLS && s.ServerID == "" && s.DstWorkload == "" && s.Status == "503"
}

// namespaceOf finds a destination's namespace: from the server's SPIFFE ID,
// else from a Service authority (name.ns[.svc...][:port]).
func namespaceOf(s Series) string {
	if _, rest, ok := strings.Cut(s.ServerID, "/ns/"); ok {
		ns, _, _ := strings.Cut(rest, "/")
		return ns
	}
	host, _, _ := strings.Cut(s.Authority, ":")
	if parts := strings.Split(host, "."); len(parts) >= 2 {
		return parts[1]
	}
	return ""
}

// WriteEdges prints edges as `meshctl edges` does; wide adds the requests,
// the identities the destination proved and why an edge is not secured.
func WriteEdges(w io.Writer, edges []Edge, wide bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	if wide {
		fmt.Fprintln(tw, "SRC\tDST\tSRC_NS\tDST_NS\tSECURED\tREQUESTS\tDST_ID\tWHY NOT SECURED")
	} else {
		fmt.Fprintln(tw, "SRC\tDST\tSRC_NS\tDST_NS\tSECURED")
	}
	for _, e := range edges {
		secured := "×"
		if e.Secured {
			secured = "✔"
		}
		if !wide {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Src, e.Dst, dash(e.SrcNamespace), e.DstNamespace, secured)
			continue
		}
		ids := strings.Join(e.DstIDs, ",")
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.0f\t%s\t%s\n", e.Src, e.Dst, dash(e.SrcNamespace), e.DstNamespace, secured, e.Requests, dash(ids), dash(e.Reason))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
