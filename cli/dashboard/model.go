package dashboard

import (
	"time"

	"github.com/meshctl/meshctl/cli/healthcheck"
	"github.com/meshctl/meshctl/internal/api"
)

// Node kinds of the graph. Workload kinds are the owner's kind in lower
// case; a pod without an owner is its own workload.
const (
	KindDeployment  = "deployment"
	KindStatefulSet = "statefulset"
	KindDaemonSet   = "daemonset"
	KindJob         = "job"
	KindPod         = "pod"
	// KindUnmeshed stands for the callers without a proxy of a namespace:
	// the proxies see their plaintext requests, not who sent them.
	KindUnmeshed = "unmeshed"
	// KindExternal is a destination outside the mesh (a host, or a
	// Service without meshed endpoints), named by its authority.
	KindExternal = "external"
	// KindService is a Service that an HTTPRoute splits.
	KindService = "service"
	// KindWorkload is a workload outside the namespace shown, named by a
	// proxy's dst_workload label.
	KindWorkload = "workload"
)

// Stats are golden metrics over the last scrape interval. The success
// rate and latencies are null without requests in the interval (or before
// the second scrape, when there is no interval yet).
type Stats struct {
	// RPS is requests per second (0 before the second scrape).
	RPS float64 `json:"rps"`
	// SuccessRate is 0..1; null without requests.
	SuccessRate *float64 `json:"success_rate"`
	// P50, P95 and P99 are latency histogram bucket upper bounds in ms
	// (the true value is at most that); null without requests.
	P50 *float64 `json:"p50_ms"`
	P95 *float64 `json:"p95_ms"`
	P99 *float64 `json:"p99_ms"`
	// Requests and Successes are counts since the proxies started
	// (cumulative), for comparing with what a client counted.
	Requests  float64 `json:"requests"`
	Successes float64 `json:"successes"`
}

// Node is a workload (or a stand-in: unmeshed callers, an external
// destination, a split Service) in the graph.
type Node struct {
	// ID is "namespace/name" for workloads, "svc:namespace/name" for
	// Services, "unmeshed:namespace" and "external:authority" for the
	// stand-ins.
	ID        string `json:"id"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// Pods and Meshed count the workload's running pods, and those with a proxy.
	Pods   int `json:"pods"`
	Meshed int `json:"meshed"`
	// Inbound is what the workload's proxies served.
	Inbound Stats `json:"inbound"`
}

// Edge is traffic from one node to another, as the source's proxies (or,
// from unmeshed callers, the destination's) saw it.
type Edge struct {
	ID     string `json:"id"`
	Source string `json:"source"`
	Target string `json:"target"`
	// Secured: every request on the edge went over mutual TLS with both
	// identities known (the rule of `meshctl edges`).
	Secured bool `json:"secured"`
	Stats
}

// Split is an HTTPRoute's share of a Service's traffic sent to a backend.
type Split struct {
	ID string `json:"id"`
	// Route is the HTTPRoute, "namespace/name".
	Route string `json:"route"`
	// Service is the split Service's node ID.
	Service string `json:"service"`
	// Backend is the backend Service, "namespace/name"; Targets are the
	// node IDs of the workloads behind it.
	Backend string   `json:"backend"`
	Targets []string `json:"targets"`
	// Weight is the backendRef's weight; Percent its share of the rule.
	Weight  int32   `json:"weight"`
	Percent float64 `json:"percent"`
}

// Graph is the mesh's topology in a namespace ("" all).
type Graph struct {
	Namespace string    `json:"namespace"`
	Time      time.Time `json:"time"`
	// Interval is the seconds between the two scrapes rates are over (0
	// before the second scrape).
	Interval float64 `json:"interval_s"`
	Nodes    []Node  `json:"nodes"`
	Edges    []Edge  `json:"edges"`
	Splits   []Split `json:"splits"`
	// Errors name the pods whose proxies could not be read, and other
	// things that could not be shown, with the cause.
	Errors []string `json:"errors,omitempty"`
}

// Point is one scrape of a workload's golden metrics.
type Point struct {
	Time time.Time `json:"t"`
	Stats
}

// PodInfo is one pod of a workload.
type PodInfo struct {
	Name   string `json:"name"`
	Ready  bool   `json:"ready"`
	Meshed bool   `json:"meshed"`
	// ProxyVersion is the pod's meshctl.io/proxy-version label.
	ProxyVersion string `json:"proxy_version,omitempty"`
	// Identity is the proxy's certificate (nil when it could not be read;
	// IdentityError says why).
	Identity      *api.IdentityInfo `json:"identity,omitempty"`
	IdentityError string            `json:"identity_error,omitempty"`
}

// PolicyInfo is an AuthorizationPolicy rule that applies to a workload.
type PolicyInfo struct {
	Name         string   `json:"name"`
	Port         int      `json:"port,omitempty"`
	Clients      []string `json:"clients"`
	PathPrefixes []string `json:"path_prefixes,omitempty"`
}

// RouteInfo is an HTTPRoute that shapes traffic to a workload: it has a
// backend Service that selects the workload's pods.
type RouteInfo struct {
	Name     string   `json:"name"`
	Parents  []string `json:"parents"`
	Backends []Split  `json:"backends"`
}

// Workload is the workload page.
type Workload struct {
	Node
	Pods []PodInfo `json:"pod_list"`
	// History is the workload's inbound golden metrics since the dashboard
	// started watching its namespace, oldest first.
	History  []Point `json:"history"`
	Inbound  []Edge  `json:"inbound_edges"`
	Outbound []Edge  `json:"outbound_edges"`
	// DefaultPolicy and the rate limits come from the pod's and its
	// namespace's annotations, as the controller computes them.
	DefaultPolicy      string       `json:"default_policy"`
	RateLimit          float64      `json:"rate_limit_rps,omitempty"`
	RateLimitPerClient float64      `json:"rate_limit_per_client_rps,omitempty"`
	Policies           []PolicyInfo `json:"policies"`
	Routes             []RouteInfo  `json:"routes"`
	Errors             []string     `json:"errors,omitempty"`
}

// Cert is a certificate of the mesh's identity.
type Cert struct {
	Subject     string    `json:"subject"`
	Fingerprint string    `json:"fingerprint"` // SHA-256, hex
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
}

// ProxyIssuer is a meshed pod and the issuer of its certificate.
type ProxyIssuer struct {
	Namespace string    `json:"namespace"`
	Pod       string    `json:"pod"`
	Issuer    string    `json:"issuer_fingerprint"`
	NotAfter  time.Time `json:"not_after"`
	Error     string    `json:"error,omitempty"`
}

// Identity is the identity page.
type Identity struct {
	TrustAnchors []Cert `json:"trust_anchors"`
	Issuer       *Cert  `json:"issuer,omitempty"`
	// Proxies counts the meshed proxies read; OnOldIssuer lists those
	// whose certificate another issuer signed, Unread those that could
	// not be read.
	Proxies     int           `json:"proxies"`
	OnOldIssuer []ProxyIssuer `json:"on_old_issuer"`
	Unread      []ProxyIssuer `json:"unread,omitempty"`
	Errors      []string      `json:"errors,omitempty"`
}

// Health is the health page: `meshctl check --proxy`'s results.
type Health struct {
	Passed  bool                 `json:"passed"`
	Results []healthcheck.Result `json:"results"`
}

// TapEvent is one event of the live tap stream (text/event-stream, one
// JSON object per "data:" line): the pod that saw it, and the proxy's
// event (type start, headers, end or dropped).
type TapEvent struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	api.TapEvent
}
