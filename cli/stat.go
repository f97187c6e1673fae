package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/meshctl/meshctl/cli/proxystats"
	"github.com/meshctl/meshctl/internal/command"
)

type statOptions struct {
	kube          kubeOptions
	allNamespaces bool
	selector      string
	window        time.Duration
	peers         peerFlags
	output        string
	watch         bool
	// lastMinute: neither -t nor -w given, so the proxies' own last minute
	// answers at once.
	lastMinute bool
}

func (o *statOptions) validate() error {
	if err := checkOutput(o.output); err != nil {
		return err
	}
	if o.window < time.Second {
		return command.Usagef("-t must be at least 1s")
	}
	return o.peers.validate()
}

func newStatCommand(g *globalOptions) *cobra.Command {
	o := &statOptions{}
	cmd := &cobra.Command{
		Use:   "stat TYPE [NAME]",
		Short: "Success rate, request rate, latency and connections per resource",
		Long: `Show, per resource (deploy, pod, ns, svc), how many of its pods are meshed and what
its proxies served lately: success rate, requests per second, latency
percentiles and open TCP connections. It reads the proxies' own counters and
histograms through the API server (pods/proxy, with your credentials); no
Prometheus is needed. Latency percentiles are the
upper bound of the histogram bucket that holds them (≤ that many ms).

Without -t it answers at once for the last minute, as the proxies keep it
(their own snapshots, every 15 s: the last 45 to 60 s, or since a proxy
started; JSON's window_seconds says how long). With -t it measures a window
of its own, reading at its start and end; -w/--watch goes on, printing each
window's figures (a table under the time, or one JSON array or YAML document
a window).

Without --to it counts the requests the resources' pods receive.
` + peerHelp,
		Example: `  meshctl stat deploy -n demo
  meshctl stat deploy web -n demo -t 10s -o json
  meshctl stat ns -A
  meshctl stat deploy -n demo -w -t 5s
  meshctl stat deploy/load -n demo --to deploy/web
  meshctl stat deploy/web -n demo --from sa/load
  meshctl stat deploy/load -n demo --to svc/api --to-namespace shop`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			o.lastMinute = !cmd.Flags().Changed("time-window") && !o.watch
			return runStat(cmd.Context(), o, args, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	o.kube.use(g)
	o.kube.addNamespaceFlag(f, "namespace of the resources (default: the context's)")
	f.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "resources in every namespace")
	addSelectorFlag(f, &o.selector)
	f.DurationVarP(&o.window, "time-window", "t", 10*time.Second, "measure a window of this length (with -w: each time; the default is for -w); without -t or -w: the proxies' last minute, at once")
	f.BoolVarP(&o.watch, "watch", "w", false, "measure again and again, printing each window's figures (Ctrl-C stops)")
	o.peers.addFlags(f, true)
	addOutputFlag(f, &o.output, "the namespace and the request count")
	cmd.ValidArgsFunction = completeTarget(&o.kube)
	addCompletions(cmd, &o.kube)
	return cmd
}

func runStat(ctx context.Context, o *statOptions, args []string, stdout, stderr io.Writer) error {
	client, _, resources, err := resolveTarget(ctx, &o.kube, o.allNamespaces, o.selector, args)
	if err != nil {
		return err
	}
	peers, err := o.peers.resolve(ctx, client, o.kube.defaultNamespace(), o.kube.controlNS())
	if err != nil {
		return err
	}
	if o.lastMinute {
		if rows, ok := lastMinute(ctx, client, resources, peers, stderr); ok {
			return printStat(stdout, stderr, o.output, rows, o.allNamespaces, false)
		}
		fmt.Fprintln(stderr, "some proxies keep no window of their last minute (older than this meshctl): measuring one")
	}
	scrape(ctx, client, resources, false, nil)
	if o.watch {
		fmt.Fprintf(stderr, "measuring every %s (Ctrl-C stops) ...\n", o.window)
	} else {
		fmt.Fprintf(stderr, "measuring for %s ...\n", o.window)
	}
	for {
		select {
		case <-ctx.Done():
			if o.watch {
				return nil // stopped, as asked
			}
			return ctx.Err()
		case <-time.After(o.window):
		}
		// Read again, without the first read's errors.
		for _, r := range resources {
			for _, p := range r.Pods {
				p.Err = nil
			}
		}
		scrape(ctx, client, resources, true, nil)
		rows := proxystats.Stat(resources, o.window, peers.series(proxystats.Inbound))
		if o.watch && !structured(o.output) {
			fmt.Fprintf(stdout, "\n%s\n", time.Now().Format(time.TimeOnly))
		}
		if err := printStat(stdout, stderr, o.output, rows, o.allNamespaces, o.watch); err != nil || !o.watch {
			return err
		}
		// The next window starts where this one ended.
		for _, r := range resources {
			for _, p := range r.Pods {
				if p.End != nil {
					p.Start, p.End = p.End, nil
				}
			}
		}
	}
}

type edgesOptions struct {
	kube          kubeOptions
	allNamespaces bool
	selector      string
	window        time.Duration
	peers         peerFlags
	output        string
}

func newEdgesCommand(g *globalOptions) *cobra.Command {
	o := &edgesOptions{}
	cmd := &cobra.Command{
		Use:   "edges TYPE [NAME]",
		Short: "Who talks to whom, and whether it is secured",
		Long: `List the edges out of the resources of a type (deploy, pod, ns, svc): source,
destination, their namespaces, and SECURED ✔ when every request went over mutual
TLS with the destination's identity verified. Clients without a proxy that call
the resources show as edges from "(unmeshed clients)", never secured. It reads
the proxies' metrics through the API server (pods/proxy).

The edges are those with requests in the last -t (10s by default: it reads the
proxies at its start and its end), so a fixed edge shows secured at once;
-t 0 answers at once with every edge since the proxies started.

-o wide adds the requests, the identities the destination proved, and why an
edge is not secured: the destination is not meshed, plaintext to a meshed
destination (a skipped or opaque port), TLS without a verified identity, or a
client without a proxy.

--to TYPE/NAME keeps the edges to that resource (deploy/, sa/, ns/ or svc/, in
the target's namespace unless --to-namespace; exact, as in stat), --authority
HOST[:PORT] those to that authority. The sources are the resources given, so
edges takes no --from: name the source instead (edges deploy/load).`,
		Example: `  meshctl edges deploy -n demo
  meshctl edges deploy -n demo -o wide -t 30s
  meshctl edges deploy -n demo -t 0 --to deploy/web`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(o.output); err != nil {
				return err
			}
			if o.window < 0 {
				return command.Usagef("-t must not be negative")
			}
			if err := o.peers.validate(); err != nil {
				return err
			}
			return runEdges(cmd.Context(), o, args, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	o.kube.use(g)
	o.kube.addNamespaceFlag(f, "namespace of the resources (default: the context's)")
	f.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "resources in every namespace")
	addSelectorFlag(f, &o.selector)
	f.DurationVarP(&o.window, "time-window", "t", 10*time.Second, "the edges with requests in this last window (0: since the proxies started, at once)")
	o.peers.addFlags(f, false)
	addOutputFlag(f, &o.output, "requests, the destination's identities and why an edge is not secured")
	cmd.ValidArgsFunction = completeTarget(&o.kube)
	addCompletions(cmd, &o.kube)
	return cmd
}

func runEdges(ctx context.Context, o *edgesOptions, args []string, stdout, stderr io.Writer) error {
	client, _, resources, err := resolveTarget(ctx, &o.kube, o.allNamespaces, o.selector, args)
	if err != nil {
		return err
	}
	peers, err := o.peers.resolve(ctx, client, o.kube.defaultNamespace(), o.kube.controlNS())
	if err != nil {
		return err
	}
	if err := sampleWindow(ctx, client, resources, o.window, stderr); err != nil {
		return err
	}
	keepWindow(resources, o.window, stderr)
	return printEdges(stdout, o.output, proxystats.Edges(resources, peers.series(nil)))
}

// keepWindow leaves in each pod's End only what happened in the window
// (between its two reads) when window is above zero, leaving out a pod not
// read at its start; pods that could not be read are named on warn.
func keepWindow(resources []proxystats.Resource, window time.Duration, warn io.Writer) {
	for _, r := range resources {
		for _, p := range r.Pods {
			switch {
			case p.Err != nil:
				fmt.Fprintf(warn, "warning: pod %s/%s: %v\n", p.Namespace, p.Name, p.Err)
			case window > 0 && p.Start == nil && p.End != nil:
				fmt.Fprintf(warn, "warning: pod %s/%s: not read at the window's start: left out\n", p.Namespace, p.Name)
				p.End = nil
			case window > 0 && p.End != nil:
				p.End, p.Start = proxystats.Delta(p.Start, p.End), nil
			}
		}
	}
}

// printStat prints stat's rows in format (-o), with a NAMESPACE column
// when allNamespaces (-A); warnings go to warn.
func printStat(w, warn io.Writer, format string, rows []proxystats.Row, allNamespaces, watch bool) error {
	switch {
	case format == outputJSON:
		return writeJSON(w, rows)
	case format == outputYAML && watch:
		return writeYAMLDocument(w, rows) // one document a window
	case format == outputYAML:
		return writeYAML(w, rows)
	}
	return proxystats.WriteTable(w, warn, rows, proxystats.TableOptions{Namespace: allNamespaces, Wide: format == outputWide})
}

// printEdges prints edges in format (-o).
func printEdges(w io.Writer, format string, edges []proxystats.Edge) error {
	if structured(format) {
		return writeStructured(w, format, edges)
	}
	return proxystats.WriteEdges(w, edges, format == outputWide)
}

// lastMinute reads what the resources' proxies kept of their last minute;
// ok is false when a proxy keeps no window (an older one), so that stat
// measures one itself.
func lastMinute(ctx context.Context, client kubernetes.Interface, resources []proxystats.Resource, peers resolvedPeers, progress io.Writer) ([]proxystats.Row, bool) {
	scrape(ctx, client, resources, true, map[string]string{"window": "60s"})
	for _, r := range resources {
		for _, p := range r.Pods {
			if p.End != nil && p.End.Window == 0 {
				for _, r := range resources {
					for _, p := range r.Pods {
						p.End, p.Err = nil, nil
					}
				}
				return nil, false
			}
		}
	}
	fmt.Fprintln(progress, "showing the last minute, as the proxies keep it; -t 10s measures a new window")
	return proxystats.Stat(resources, 0, peers.series(proxystats.Inbound)), true
}
