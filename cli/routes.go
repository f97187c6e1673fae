package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshctl/meshctl/cli/proxystats"
	"github.com/meshctl/meshctl/internal/command"
	"github.com/meshctl/meshctl/internal/gamma"
)

type routesOptions struct {
	kube   kubeOptions
	window time.Duration
	output string
}

func newRoutesCommand(g *globalOptions) *cobra.Command {
	o := &routesOptions{}
	cmd := &cobra.Command{
		Use:   "routes svc/NAME",
		Short: "A Service's HTTPRoutes: each rule's backends, weights and how they do",
		Long: `Show the HTTPRoutes (Gateway API, in the mesh: parentRefs naming the Service)
of a Service: each rule's matches and backends with their weights and share,
whether the mesh accepted the route (and why not), and, from the meshed
clients of the Service's namespace and the routes' namespaces, what each
backend served over the last -t (10s): requests per second, success rate and
p50 latency (the upper bound of the histogram bucket holding it).

` + command.ExitCodesHelp,
		Example: `  meshctl routes svc/web -n shop
  meshctl routes svc/web -n shop -t 30s -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(o.output); err != nil {
				return err
			}
			if o.window <= 0 {
				return command.Usagef("-t must be above zero")
			}
			kind, name, err := parseTarget(args)
			if err != nil {
				return err
			}
			if kind != "service" || name == "" {
				return command.Usagef("give a Service: svc/NAME")
			}
			return runRoutes(cmd.Context(), o, name, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	o.kube.use(g)
	o.kube.addNamespaceFlag(f, "the Service's namespace (default: the context's)")
	f.DurationVarP(&o.window, "time-window", "t", 10*time.Second, "how long to measure the backends")
	addOutputFlag(f, &o.output, "")
	cmd.ValidArgsFunction = completeTarget(&o.kube, "svc")
	addCompletions(cmd, &o.kube)
	return cmd
}

// routeBackend is one backend of one rule of one route.
type routeBackend struct {
	Route     string   `json:"route"`
	Rule      int      `json:"rule"`
	Matches   string   `json:"matches"`
	Accepted  string   `json:"accepted"`
	Backend   string   `json:"backend"`
	Weight    int32    `json:"weight"`
	Percent   float64  `json:"percent"`
	Workloads []string `json:"workloads"`
	RPS       float64  `json:"rps"`
	Success   *float64 `json:"success_rate"`
	P50       *float64 `json:"p50_ms"`

	requests, successes float64
	latency             proxystats.Histogram
}

func runRoutes(ctx context.Context, o *routesOptions, name string, stdout, stderr io.Writer) error {
	kc, err := o.kube.clients()
	if err != nil {
		return err
	}
	client := kc.typed
	ns := o.kube.defaultNamespace()
	if _, err := client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		return command.NotFound(fmt.Errorf("service %s/%s not found", ns, name))
	} else if err != nil {
		return err
	}
	list, err := kc.dynamic.Resource(httpRouteResource).Namespace("").List(ctx, metav1.ListOptions{})
	if apierrors.IsForbidden(err) { // the Service's namespace, at least
		list, err = kc.dynamic.Resource(httpRouteResource).Namespace(ns).List(ctx, metav1.ListOptions{})
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("list the HTTPRoutes: %w", err)
	}
	var routes []gatewayv1.HTTPRoute
	if list != nil {
		for _, u := range list.Items {
			var r gatewayv1.HTTPRoute
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &r); err != nil {
				fmt.Fprintf(stderr, "warning: HTTPRoute %s/%s: %v\n", u.GetNamespace(), u.GetName(), err)
				continue
			}
			if routeOf(r, ns, name) {
				routes = append(routes, r)
			}
		}
	}
	if len(routes) == 0 {
		if structured(o.output) { // an empty list, for scripts
			fmt.Fprintf(stderr, "No HTTPRoute names Service %s/%s as its parent: its requests go to its own endpoints.\n", ns, name)
			return printRoutes(stdout, o.output, []*routeBackend{})
		}
		fmt.Fprintf(stdout, "No HTTPRoute names Service %s/%s as its parent: its requests go to its own endpoints.\n", ns, name)
		return nil
	}
	backends := routeBackends(ctx, client, routes, ns, name)

	// The clients: meshed pods of the Service's and the routes' namespaces.
	spaces := map[string]bool{ns: true}
	for _, r := range routes {
		spaces[r.Namespace] = true
	}
	var resources []proxystats.Resource
	for space := range spaces {
		res, err := resolveResources(ctx, client, space, "namespace", space, "")
		if err != nil {
			return err
		}
		resources = append(resources, res...)
	}
	if err := sampleWindow(ctx, client, resources, o.window, stderr); err != nil {
		return err
	}
	target, err := resolvePeer(ctx, client, "--to", "svc/"+name, ns, clusterDomainOf(ctx, client, o.kube.controlNS()), true)
	if err != nil {
		return err
	}
	measureBackends(backends, resources, target, o.window)
	return printRoutes(stdout, o.output, backends)
}

// printRoutes prints the backends of routes in format (-o).
func printRoutes(w io.Writer, format string, backends []*routeBackend) error {
	if structured(format) {
		return writeStructured(w, format, backends)
	}
	return writePrintable(w, func(w io.Writer) error { return writeRoutes(w, backends) })
}

// routeOf says whether r names Service ns/name as a parent.
func routeOf(r gatewayv1.HTTPRoute, ns, name string) bool {
	return slices.ContainsFunc(r.Spec.ParentRefs, func(p gatewayv1.ParentReference) bool {
		return gamma.IsServiceParent(p) && gamma.ParentNamespace(r.Namespace, p) == ns && string(p.Name) == name
	})
}

// routeBackends lists every rule's backends with their weights, shares,
// the route's acceptance, and the workloads behind each backend Service.
func routeBackends(ctx context.Context, client kubernetes.Interface, routes []gatewayv1.HTTPRoute, ns, name string) []*routeBackend {
	var out []*routeBackend
	for _, r := range routes {
		accepted := acceptance(r, ns, name)
		for ri, rule := range r.Spec.Rules {
			var sum int32
			for _, b := range rule.BackendRefs {
				sum += gamma.BackendWeight(b)
			}
			for _, b := range rule.BackendRefs {
				bns := r.Namespace
				if b.Namespace != nil && *b.Namespace != "" {
					bns = string(*b.Namespace)
				}
				backend := bns + "/" + string(b.Name)
				if b.Port != nil {
					backend += ":" + strconv.Itoa(int(*b.Port))
				}
				rb := &routeBackend{Route: r.Namespace + "/" + r.Name, Rule: ri, Matches: matchesOf(rule.Matches), Accepted: accepted,
					Backend: backend, Weight: gamma.BackendWeight(b), Workloads: []string{}}
				if sum > 0 {
					rb.Percent = 100 * float64(gamma.BackendWeight(b)) / float64(sum)
				}
				if gamma.IsService(b.Group, b.Kind, "Service") {
					rb.Workloads = workloadsBehind(ctx, client, bns, string(b.Name))
				}
				out = append(out, rb)
			}
		}
	}
	return out
}

// acceptance is the route's Accepted condition for the Service, as the
// mesh's controller wrote it.
func acceptance(r gatewayv1.HTTPRoute, ns, name string) string {
	for _, p := range r.Status.Parents {
		if p.ControllerName != gamma.ControllerName || string(p.ParentRef.Name) != name || gamma.ParentNamespace(r.Namespace, p.ParentRef) != ns {
			continue
		}
		for _, c := range p.Conditions {
			if c.Type == string(gatewayv1.RouteConditionAccepted) {
				if c.Status == metav1.ConditionTrue {
					return "True"
				}
				return fmt.Sprintf("%s (%s: %s)", c.Status, c.Reason, c.Message)
			}
		}
	}
	return "unknown (no status from the mesh yet)"
}

// matchesOf summarizes a rule's matches.
func matchesOf(ms []gatewayv1.HTTPRouteMatch) string {
	if len(ms) == 0 {
		return "all"
	}
	var out []string
	for _, m := range ms {
		var parts []string
		if m.Method != nil {
			parts = append(parts, string(*m.Method))
		}
		if m.Path != nil && m.Path.Value != nil {
			kind := "PathPrefix"
			if m.Path.Type != nil {
				kind = string(*m.Path.Type)
			}
			parts = append(parts, kind+" "+*m.Path.Value)
		}
		for _, h := range m.Headers {
			parts = append(parts, "header "+string(h.Name)+"="+h.Value)
		}
		for _, q := range m.QueryParams {
			parts = append(parts, "query "+string(q.Name)+"="+q.Value)
		}
		if len(parts) == 0 {
			parts = append(parts, "all")
		}
		out = append(out, strings.Join(parts, " "))
	}
	return strings.Join(out, " | ")
}

// workloadsBehind names the workloads of the running pods a Service
// selects.
func workloadsBehind(ctx context.Context, client kubernetes.Interface, ns, name string) []string {
	svc, err := client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil || len(svc.Spec.Selector) == 0 {
		return []string{}
	}
	pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(svc.Spec.Selector).String()})
	if err != nil {
		return []string{}
	}
	seen := []string{}
	for i := range pods.Items {
		if w := workloadOfPod(&pods.Items[i]); w != "" && !slices.Contains(seen, w) {
			seen = append(seen, w)
		}
	}
	slices.Sort(seen)
	return seen
}

// measureBackends adds to each backend what the clients sent to the
// Service and the backend's workloads answered, over the window.
func measureBackends(backends []*routeBackend, resources []proxystats.Resource, target *peer, window time.Duration) {
	byWorkload := map[string][]*routeBackend{}
	for _, b := range backends {
		for _, w := range b.Workloads {
			byWorkload[w] = append(byWorkload[w], b)
		}
	}
	for _, res := range resources {
		for _, p := range res.Pods {
			if p.End == nil || p.Err != nil {
				continue
			}
			d := proxystats.Delta(p.Start, p.End)
			for s, n := range d.Responses {
				if s.Direction != "outbound" || !target.matchAuthority(s.Authority) {
					continue
				}
				for _, b := range byWorkload[s.DstWorkload] {
					b.requests += n
					if s.Success {
						b.successes += n
					}
					if h, ok := d.Latency[s]; ok {
						b.latency = proxystats.AddHistograms(b.latency, h)
					}
				}
			}
		}
	}
	for _, b := range backends {
		b.RPS = b.requests / window.Seconds()
		if b.requests > 0 {
			rate := b.successes / b.requests
			p50 := b.latency.Quantile(0.5)
			b.Success, b.P50 = &rate, &p50
		}
	}
}

func writeRoutes(w io.Writer, backends []*routeBackend) error {
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "ROUTE\tRULE\tMATCHES\tBACKEND\tWEIGHT\tSHARE\tWORKLOADS\tRPS\tSUCCESS\tP50\tACCEPTED")
	for _, b := range backends {
		success, p50 := "-", "-"
		if b.Success != nil {
			success = fmt.Sprintf("%.2f%%", 100**b.Success)
			p50 = proxystats.FormatMs(*b.P50, b.latency.Bounds)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%.0f%%\t%s\t%.1f\t%s\t%s\t%s\n", b.Route, b.Rule, b.Matches, b.Backend, b.Weight, b.Percent,
			orDash(strings.Join(b.Workloads, ",")), b.RPS, success, p50, b.Accepted)
	}
	return tw.Flush()
}
