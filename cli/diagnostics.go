package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshctl/meshctl/internal/adminclient"
	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/command"
	"github.com/meshctl/meshctl/internal/meshnames"
)

func newDiagnosticsCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "diagnostics",
		Short: "What a proxy knows: its endpoints, its inbound policy, its raw metrics",
		Long: `Read what a meshed pod's proxy holds, to see why a request went where it went:

  meshctl diagnostics endpoints pod/NAME [AUTHORITY]   the destinations and endpoints it balances over
  meshctl diagnostics policy pod/NAME [PORT]           the inbound policy it enforces, per port
  meshctl diagnostics proxy-metrics TARGET             its metrics, as Prometheus text

` + command.ExitCodesHelp,
	}
	cmd.AddCommand(newDiagnosticsEndpointsCommand(g), newDiagnosticsPolicyCommand(g), newDiagnosticsMetricsCommand(g))
	return cmd
}

type diagnosticsEndpointsOptions struct {
	kube   kubeOptions
	output string
}

func newDiagnosticsEndpointsCommand(g *globalOptions) *cobra.Command {
	o := &diagnosticsEndpointsOptions{}
	cmd := &cobra.Command{
		Use:   "endpoints pod/NAME [AUTHORITY]",
		Short: "The destinations and endpoints a pod's proxy balances over",
		Long: `List every destination a pod's proxy has asked discovery about (a Service's
host:port, or an address), and the endpoints it knows for each: address, the
identity the endpoint must prove over mutual TLS (- when it is not meshed, and
so reached in plaintext), and whether its port is opaque (TCP without protocol
detection). The proxy knows destinations by the address the application
connected to (a Service's cluster IP and port); the SERVICE column names the
Service there. AUTHORITY keeps one destination: an address, or a Service's
name (NAME, NAME.NAMESPACE, NAME.NAMESPACE.svc.cluster.local), with or without
a port. Read through the controller's admin API (pods/destinations in
admin.meshctl.io: the ClusterRole meshctl-admin-viewer grants it).`,
		Example: `  meshctl diagnostics endpoints pod/load-7d9f -n demo
  meshctl diagnostics endpoints pod/load-7d9f -n demo web.demo.svc.cluster.local:80 -o json`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(o.output); err != nil {
				return err
			}
			kind, name, err := parseTarget(args[:1])
			if err != nil {
				return err
			}
			if kind != "pod" || name == "" {
				return command.Usagef("give a pod: pod/NAME")
			}
			authority := ""
			if len(args) == 2 {
				authority = args[1]
			}
			return runDiagnosticsEndpoints(cmd.Context(), o, name, authority, cmd.OutOrStdout())
		},
	}
	o.kube.use(g)
	o.kube.addNamespaceFlag(cmd.Flags(), "the pod's namespace (default: the context's)")
	addOutputFlag(cmd.Flags(), &o.output, "")
	cmd.ValidArgsFunction = completeTarget(&o.kube, "pod")
	addCompletions(cmd, &o.kube)
	return cmd
}

func runDiagnosticsEndpoints(ctx context.Context, o *diagnosticsEndpointsOptions, name, authority string, stdout io.Writer) error {
	kc, err := o.kube.clients()
	if err != nil {
		return err
	}
	ns := o.kube.defaultNamespace()
	if _, err := meshedPod(ctx, kc.typed, ns, name); err != nil {
		return err
	}
	raw, err := adminclient.Do(ctx, kc.typed.CoreV1().RESTClient(), ns, name, meshnames.AdminDestinations)
	if err != nil {
		return fmt.Errorf("pod %s/%s: %w", ns, name, adminclient.Explain(err, meshnames.AdminDestinations))
	}
	var raw2 map[string][]api.DestinationEndpoint
	if err := json.Unmarshal(raw, &raw2); err != nil {
		return fmt.Errorf("pod %s/%s: its /destinations: %w", ns, name, err)
	}
	services := serviceAddrs(ctx, kc.typed)
	dsts := make([]destinationView, 0, len(raw2))
	for dst, eps := range raw2 {
		dsts = append(dsts, destinationView{Destination: dst, Service: services[hostOf(dst)], Endpoints: eps})
	}
	if authority != "" {
		want, err := authorityAddrs(ctx, kc.typed, authority, ns)
		if err != nil {
			return err
		}
		dsts = slices.DeleteFunc(dsts, func(d destinationView) bool { return !want(d.Destination) })
		if len(dsts) == 0 {
			return command.NotFound(fmt.Errorf("pod %s/%s's proxy knows no destination %s (it asks discovery on the first request to one); it knows %d others", ns, name, authority, len(raw2)))
		}
	}
	slices.SortFunc(dsts, func(a, b destinationView) int { return strings.Compare(a.Destination, b.Destination) })
	return printEndpoints(stdout, o.output, dsts)
}

// printEndpoints prints a proxy's destinations in format (-o).
func printEndpoints(w io.Writer, format string, dsts []destinationView) error {
	if structured(format) {
		return writeStructured(w, format, dsts)
	}
	return writePrintable(w, func(w io.Writer) error { return writeEndpoints(w, dsts) })
}

// meshedPod reads pod ns/name, which must have a proxy.
func meshedPod(ctx context.Context, client kubernetes.Interface, ns, name string) (*corev1.Pod, error) {
	pod, err := client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, command.NotFound(fmt.Errorf("pod %s/%s not found", ns, name))
	}
	if err != nil {
		return nil, fmt.Errorf("pod %s/%s: %w", ns, name, err)
	}
	if !hasProxy(pod.Spec.InitContainers) {
		return nil, fmt.Errorf("pod %s/%s has no proxy (it is not meshed)", ns, name)
	}
	return pod, nil
}

// destinationView is one destination a proxy knows: the original
// destination address its requests had, the Service at that address, and
// the endpoints.
type destinationView struct {
	Destination string                    `json:"destination"`
	Service     string                    `json:"service,omitempty"`
	Endpoints   []api.DestinationEndpoint `json:"endpoints"`
}

// serviceAddrs maps the cluster's Service IPs to "name.namespace" (empty
// when Services may not be listed).
func serviceAddrs(ctx context.Context, client kubernetes.Interface) map[string]string {
	out := map[string]string{}
	list, err := client.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return out
	}
	for _, svc := range list.Items {
		for _, ip := range svc.Spec.ClusterIPs {
			if ip != "" && ip != corev1.ClusterIPNone {
				out[ip] = svc.Name + "." + svc.Namespace
			}
		}
	}
	return out
}

// authorityAddrs reads AUTHORITY (an address, or a Service's name: NAME,
// NAME.NS, NAME.NS.svc[.DOMAIN], with or without a port) into a test of
// the destination addresses it names.
func authorityAddrs(ctx context.Context, client kubernetes.Interface, authority, ns string) (func(string) bool, error) {
	host, port := authority, ""
	if h, p, err := net.SplitHostPort(authority); err == nil {
		host, port = h, p
	}
	samePort := func(dst string) bool {
		_, p, _ := net.SplitHostPort(dst)
		return port == "" || p == port
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return func(dst string) bool { return hostOf(dst) == host && samePort(dst) }, nil
	}
	name, rest, _ := strings.Cut(strings.TrimSuffix(host, "."), ".")
	if svcNS, _, _ := strings.Cut(rest, "."); svcNS != "" {
		ns = svcNS
	}
	svc, err := client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, command.NotFound(fmt.Errorf("%s: no Service %s in namespace %s", authority, name, ns))
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", authority, err)
	}
	ips := svc.Spec.ClusterIPs
	return func(dst string) bool { return slices.Contains(ips, hostOf(dst)) && samePort(dst) }, nil
}

// writeEndpoints prints destinations and their endpoints, sorted.
func writeEndpoints(w io.Writer, dsts []destinationView) error {
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "DESTINATION\tSERVICE\tENDPOINT\tIDENTITY\tOPAQUE")
	for _, d := range dsts {
		eps := slices.Clone(d.Endpoints)
		slices.SortFunc(eps, func(a, b api.DestinationEndpoint) int { return strings.Compare(a.Addr, b.Addr) })
		if len(eps) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t(none)\t-\t-\n", d.Destination, orDash(d.Service))
		}
		for _, e := range eps {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%t\n", d.Destination, orDash(d.Service), e.Addr, orDash(e.Identity), e.Opaque)
		}
	}
	return tw.Flush()
}

type diagnosticsMetricsOptions struct {
	kube          kubeOptions
	allNamespaces bool
	selector      string
}

func newDiagnosticsMetricsCommand(g *globalOptions) *cobra.Command {
	o := &diagnosticsMetricsOptions{}
	cmd := &cobra.Command{
		Use:   "proxy-metrics TARGET",
		Short: "The raw metrics of the target's proxies",
		Long: `Print the metrics of every meshed pod of the target (deploy/NAME, pod/NAME,
ns/NAME, svc/NAME), as the proxies serve them (Prometheus text), each under a
"# pod NAMESPACE/NAME" line. Read through the API server (pods/proxy, port 4191).`,
		Example: `  meshctl diagnostics proxy-metrics deploy/web -n demo
  meshctl diagnostics proxy-metrics pod/web-5d7ff55cf9-abcde -n demo | grep response_total`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			client, _, resources, err := resolveTarget(ctx, &o.kube, o.allNamespaces, o.selector, args)
			if err != nil {
				return err
			}
			read := 0
			for _, r := range resources {
				for _, p := range r.Pods {
					if !p.Meshed {
						continue
					}
					raw, err := client.CoreV1().Pods(p.Namespace).ProxyGet("http", p.Name, proxyAdminPort, "/metrics", nil).DoRaw(ctx)
					if err != nil {
						fmt.Fprintf(cmd.ErrOrStderr(), "warning: pod %s/%s: %v\n", p.Namespace, p.Name, explainProxyError(err))
						continue
					}
					read++
					fmt.Fprintf(cmd.OutOrStdout(), "# pod %s/%s\n", p.Namespace, p.Name)
					if _, err := cmd.OutOrStdout().Write(raw); err != nil {
						return err
					}
				}
			}
			if read == 0 {
				return fmt.Errorf("no meshed pod's proxy could be read behind %s", strings.Join(args, " "))
			}
			return nil
		},
	}
	o.kube.use(g)
	o.kube.addNamespaceFlag(cmd.Flags(), "namespace of the target (default: the context's)")
	cmd.Flags().BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "every namespace (with ns, or with a TYPE and no NAME)")
	addSelectorFlag(cmd.Flags(), &o.selector)
	cmd.ValidArgsFunction = completeTarget(&o.kube)
	addCompletions(cmd, &o.kube)
	return cmd
}
