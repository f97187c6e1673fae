package cli

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"k8s.io/client-go/kubernetes"

	"github.com/meshctl/meshctl/cli/proxystats"
	"github.com/meshctl/meshctl/cli/tapstream"
	"github.com/meshctl/meshctl/internal/adminclient"
	"github.com/meshctl/meshctl/internal/command"
	"github.com/meshctl/meshctl/internal/meshnames"
)

// maxTapPods bounds the streams one command follows.
const maxTapPods = 200

type tapOptions struct {
	kube          kubeOptions
	allNamespaces bool
	selector      string
	peers         peerFlags
	path          string
	method        string
	maxRPS        int
	output        string
}

func (o *tapOptions) addFlags(cmd *cobra.Command, g *globalOptions) {
	f := cmd.Flags()
	o.kube.use(g)
	o.kube.addNamespaceFlag(f, "namespace of the target (default: the context's)")
	f.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "every namespace (with ns, or with a TYPE and no NAME)")
	addSelectorFlag(f, &o.selector)
	o.peers.addFlags(f, true)
	f.StringVar(&o.path, "path", "", "only requests whose path starts with this")
	f.StringVar(&o.method, "method", "", "only requests with this method")
	f.IntVar(&o.maxRPS, "max-rps", 100, "at most this many requests a second from each proxy")
}

// validate checks the flags tap and top share, before connecting.
func (o *tapOptions) validate() error {
	if o.maxRPS <= 0 {
		return command.Usagef("--max-rps %d: want at least 1", o.maxRPS)
	}
	return o.peers.validate()
}

// filter is what the proxies are asked to send, and checked again here.
func (o *tapOptions) filter(ctx context.Context, client kubernetes.Interface) (tapstream.Filter, error) {
	f := tapstream.Filter{Path: o.path, Method: o.method, MaxRPS: o.maxRPS}
	peers, err := o.peers.resolve(ctx, client, o.kube.defaultNamespace(), o.kube.controlNS())
	if err != nil {
		return f, err
	}
	return tapFilter(peers, f), nil
}

// tapFilter adds to f what the proxies are asked and what is checked here
// for the flags resolved in peers.
func tapFilter(peers resolvedPeers, f tapstream.Filter) tapstream.Filter {
	f.Authority = peers.authority // host:port, or a host at any port
	switch {
	case peers.to != nil:
		// The identity a destination proves is known at a request's end
		// (the endpoint chosen), not at its start: decided there.
		f.Direction = "outbound"
	case peers.from != nil:
		f.Direction, f.ClientIDPath = "inbound", peers.from.idPath
	}
	if peers.to != nil || peers.from != nil || peers.authority != "" {
		f.Keep = peers.tapEvent
	}
	if peers.to != nil && peers.to.idPath != "" {
		f.KeepEnd = func(_, end tapstream.Event) bool { return peers.to.matchID(end.ServerID) }
	}
	return f
}

// tapPods resolves the target to the meshed pods to follow.
func (o *tapOptions) tapPods(ctx context.Context, args []string, stderr io.Writer) ([]tapstream.Pod, error) {
	_, kind, resources, err := resolveTarget(ctx, &o.kube, o.allNamespaces, o.selector, args)
	if err != nil {
		return nil, err
	}
	var pods []tapstream.Pod
	unmeshed := 0
	for _, r := range resources {
		for _, p := range r.Pods {
			if !p.Meshed {
				unmeshed++
				if kind == "pod" {
					return nil, fmt.Errorf("pod %s/%s has no proxy (it is not meshed): nothing to tap", p.Namespace, p.Name)
				}
				continue
			}
			pods = append(pods, tapstream.Pod{Namespace: p.Namespace, Name: p.Name, Workload: workloadOf(r, p)})
		}
	}
	if len(pods) == 0 {
		return nil, fmt.Errorf("no meshed pod behind %s (%d without a proxy)", strings.Join(args, " "), unmeshed)
	}
	if len(pods) > maxTapPods {
		fmt.Fprintf(stderr, "following the first %d of %d pods\n", maxTapPods, len(pods))
		pods = pods[:maxTapPods]
	}
	return pods, nil
}

func workloadOf(r proxystats.Resource, p *proxystats.Pod) string {
	if p.Workload != "" {
		return p.Workload
	}
	return r.Name
}

// openTap opens a pod's /tap stream through the controller's admin API
// (pods/tap in admin.meshctl.io, a watch), with the user's credentials.
func openTap(client kubernetes.Interface) tapstream.Opener {
	return func(ctx context.Context, p tapstream.Pod, q url.Values) (io.ReadCloser, error) {
		req := adminclient.Request(client.CoreV1().RESTClient(), p.Namespace, p.Name, meshnames.AdminTap)
		for k := range q {
			req = req.Param(k, q.Get(k))
		}
		rc, err := req.Stream(ctx)
		if err != nil {
			return nil, adminclient.Explain(err, meshnames.AdminTap)
		}
		return rc, nil
	}
}

func newTapCommand(g *globalOptions) *cobra.Command {
	o := &tapOptions{}
	cmd := &cobra.Command{
		Use:   "tap TARGET",
		Short: "Stream the requests of a workload's pods as they happen",
		Long: `Stream every request the target's proxies handle, live, from their /tap
(through the controller's admin API, pods/tap in admin.meshctl.io, with your
credentials: the ClusterRole meshctl-admin-viewer grants it): a "req" line when
a request starts, "rsp" when its response headers come, "end" when it ends,
with identities, authority, path, status, latency and bytes; the "end" line
also says where the request went (endpoint=, the identity it proved), whether
the hop was mutual TLS (tls=), its retries, and, when a proxy answered it
itself, why (reason=): the policy rule of a 403 or 429; for a 503 no
endpoints, all failing (every endpoint ejected) or queue full, after the queue
timeout (3s); request timeout (504); a meshed TLS failure such as an identity
mismatch (502); retry budget exhausted. -o wide adds the pods at both ends (src_pod=, dst_pod=: an inbound
request's client pod by its address, an outbound one's destination pod at its
end; naming them lists pods in every namespace). -o json and -o yaml print the
events as they come, one JSON line or YAML document each. With --to deploy/, sa/ or
ns/, a request is shown when it ends: the identity its destination proved is
known only then (tap tells workloads apart by identity only: two Deployments
running as one ServiceAccount look the same to it; stat and edges use the
workload too). A pod that cannot be followed is named with the cause;
the others keep streaming. Each proxy sends at most --max-rps requests a second
and says how many it dropped beyond that.

` + peerHelp,
		Example: `  meshctl tap deploy/web -n demo
  meshctl tap deploy web -n demo --path /api --method GET -o json
  meshctl tap deploy/load -n demo --to svc/web
  meshctl tap deploy/web -n demo --from deploy/load`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(o.output); err != nil {
				return err
			}
			if err := o.validate(); err != nil {
				return err
			}
			return runTap(cmd.Context(), o, args, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.addFlags(cmd, g)
	addOutputFlag(cmd.Flags(), &o.output, "the pods at both ends")
	cmd.Flags().Lookup("output").Usage = "table (a line per event), " + strings.TrimPrefix(cmd.Flags().Lookup("output").Usage, "table, ") + ": one JSON line or YAML document per event"
	cmd.ValidArgsFunction = completeTarget(&o.kube)
	addCompletions(cmd, &o.kube)
	return cmd
}

func runTap(ctx context.Context, o *tapOptions, args []string, stdout, stderr io.Writer) error {
	pods, err := o.tapPods(ctx, args, stderr)
	if err != nil {
		return err
	}
	kc, err := o.kube.streamClients()
	if err != nil {
		return err
	}
	streams := kc.typed
	filter, err := o.filter(ctx, streams)
	if err != nil {
		return err
	}
	var names *podNames
	if o.output == outputWide {
		names = newPodNames(kc.typed, stderr)
	}
	events := make(chan tapstream.PodEvent, 256)
	failed := 0
	done := make(chan struct{})
	go func() {
		tapstream.Follow(ctx, pods, openTap(streams), filter, events,
			func(p tapstream.Pod, err error) {
				failed++
				fmt.Fprintf(stderr, "pod %s/%s: %v\n", p.Namespace, p.Name, err)
			}, func() { fmt.Fprintf(stderr, "tapping %d pods\n", len(pods)) })
		close(done)
	}()
	for {
		select {
		case <-done:
			if failed == len(pods) {
				return fmt.Errorf("no pod could be tapped")
			}
			return nil
		case e := <-events:
			if err := printTapEvent(ctx, stdout, o.output, names, e); err != nil {
				return err
			}
		}
	}
}

// printTapEvent prints one event in format (-o): a line (table; wide
// with the pods names names), a JSON line or a YAML document.
func printTapEvent(ctx context.Context, w io.Writer, format string, names *podNames, e tapstream.PodEvent) error {
	switch format {
	case outputJSON:
		return writeJSONLine(w, e)
	case outputYAML:
		return writeYAMLDocument(w, e)
	}
	line := tapLine(e)
	if line == "" {
		return nil
	}
	if format == outputWide {
		line += tapstream.Printable(wideTapFields(ctx, names, e))
	}
	_, err := fmt.Fprintln(w, line)
	return err
}

// tapLine formats an event the way `meshctl tap` prints it, made
// tapstream.Printable: its fields come from the clients' requests.
func tapLine(e tapstream.PodEvent) string { return tapstream.Printable(rawTapLine(e)) }

// rawTapLine is tapLine before escaping.
func rawTapLine(e tapstream.PodEvent) string {
	id := fmt.Sprintf("%s:%d", e.Pod, e.ID)
	switch e.Type {
	case "start":
		dir := "in"
		if e.Direction == "outbound" {
			dir = "out"
		}
		return fmt.Sprintf("req id=%s proxy=%s src=%s dst=%s :method=%s :authority=%s :path=%s",
			id, dir, orDash(e.ClientID), orDash(e.ServerID), e.Method, e.Authority, e.Path)
	case "headers":
		return fmt.Sprintf("rsp id=%s :status=%d latency=%.1fms", id, e.Status, e.LatencyMs)
	case "end":
		line := fmt.Sprintf("end id=%s status=%d latency=%.1fms bytes=%d", id, e.Status, e.LatencyMs, e.Bytes)
		if e.GRPCStatus != "" {
			line += " grpc-status=" + e.GRPCStatus
		}
		if e.Endpoint != "" {
			line += " endpoint=" + e.Endpoint
		}
		if e.ServerID != "" {
			line += " dst=" + e.ServerID
		}
		if e.TLS != nil {
			line += fmt.Sprintf(" tls=%t", *e.TLS)
		}
		if e.Retries > 0 {
			line += fmt.Sprintf(" retries=%d", e.Retries)
		}
		if e.Reason != "" {
			line += fmt.Sprintf(" reason=%q", e.Reason)
		}
		return line
	case "dropped":
		return fmt.Sprintf("# %s dropped %d requests (over --max-rps)", e.Pod, e.Count)
	}
	return ""
}

// wideTapFields are what -o wide adds to a tap line: the pods at both ends
// where they are known (an outbound request's destination pod at its end).
func wideTapFields(ctx context.Context, names *podNames, e tapstream.PodEvent) string {
	self := e.Namespace + "/" + e.Pod
	switch {
	case e.Type == "start" && e.Direction == "inbound":
		return " src_pod=" + orDash(names.name(ctx, e.ClientAddr)) + " dst_pod=" + self
	case e.Type == "start":
		return " src_pod=" + self
	case e.Type == "end" && e.Endpoint != "":
		return " dst_pod=" + orDash(names.name(ctx, e.Endpoint))
	}
	return ""
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// writeJSONLine writes v as one line of JSON, control characters escaped.
func writeJSONLine(w io.Writer, v any) error { return tapstream.WriteJSONLine(w, v) }

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
