package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/meshctl/meshctl/cli/manifests"
	"github.com/meshctl/meshctl/install"
	"github.com/meshctl/meshctl/install/podpatch"
	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/version"
)

type injectOptions struct {
	manual      bool
	proxyConfig map[string]*string
	values      install.Values
}

// proxyConfigFlags map inject's flags to the annotations the webhook reads.
var proxyConfigFlags = []struct{ flag, annotation, usage string }{
	{"proxy-cpu-request", meshnames.ProxyCPURequest, "the proxy's CPU request, e.g. 10m"},
	{"proxy-memory-request", meshnames.ProxyMemoryRequest, "the proxy's memory request, e.g. 20Mi"},
	{"proxy-cpu-limit", meshnames.ProxyCPULimit, "the proxy's CPU limit"},
	{"proxy-memory-limit", meshnames.ProxyMemoryLimit, "the proxy's memory limit, e.g. 128Mi"},
	{"proxy-log-level", meshnames.ProxyLogLevel, "the proxy's log level: debug, info, warn or error"},
	{"skip-inbound-ports", meshnames.SkipInboundPorts, "inbound ports that bypass the proxy, e.g. 22,9000-9100"},
	{"skip-outbound-ports", meshnames.SkipOutboundPorts, "outbound ports that bypass the proxy"},
	{"skip-outbound-subnets", meshnames.SkipOutboundSubnets, "outbound CIDRs that bypass the proxy"},
	{"opaque-ports", meshnames.OpaquePorts, "ports proxied as TCP without protocol detection, e.g. 5432,6379"},
}

func newInjectCommand(g *globalOptions) *cobra.Command {
	o := &injectOptions{proxyConfig: map[string]*string{}}
	cmd := &cobra.Command{
		Use:   "inject (FILE | DIR | URL | -)...",
		Short: "Add the proxy to the workloads in Kubernetes manifests",
		Long: `Add meshctl.io/inject: enabled to the pod templates of Deployments, StatefulSets,
DaemonSets, ReplicaSets, Jobs, CronJobs and Pods, and to Namespaces, in the
manifests read from files, directories (recursively), URLs or standard input
(-); the proxy injector then adds the proxy when their pods are created.
Proxy flags become config.meshctl.io annotations. Everything else is written
back as it was, in order. What was done, and why something was skipped, is
reported on standard error.

With --manual the proxy is rendered into the pod templates here, by the same
code the injector runs.`,
		Example: `  kubectl get deploy -n demo -o yaml | meshctl inject - | kubectl apply -f -
  meshctl inject --opaque-ports 5432 k8s/ > meshed.yaml
  meshctl inject --manual deployment.yaml | kubectl apply -f -`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := manifests.Options{Mode: manifests.Annotate, Annotations: map[string]string{}}
			if o.manual {
				opts.Mode = manifests.Manual
			}
			for _, f := range proxyConfigFlags {
				if v := *o.proxyConfig[f.flag]; v != "" {
					opts.Annotations[f.annotation] = v
				}
			}
			o.values.Namespace = g.controlNS
			opts.Injector = injectorConfig(o.values)
			return runTransform(cmd.Context(), args, opts, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.manual, "manual", false, "render the proxy into the pod templates instead of leaving it to the injector")
	for _, pf := range proxyConfigFlags {
		o.proxyConfig[pf.flag] = f.String(pf.flag, "", pf.usage)
	}
	f.StringVar(&o.values.Registry, "registry", "meshctl", "with --manual: registry and path of the proxy image")
	f.StringVar(&o.values.ImageTag, "image-tag", version.Version, "with --manual: tag of the proxy image")
	f.StringVar(&o.values.ImagePullPolicy, "image-pull-policy", "IfNotPresent", "with --manual: pull policy of the proxy image")
	f.StringVar(&o.values.TrustDomain, "trust-domain", meshnames.TrustDomain, "with --manual: the mesh's trust domain")
	f.StringVar(&o.values.ClusterDomain, "cluster-domain", meshnames.ClusterDomain, "with --manual: the cluster's DNS domain")
	return cmd
}

// injectorConfig is what the controller's webhook would inject with.
func injectorConfig(v install.Values) podpatch.Config {
	v = v.WithDefaults()
	return podpatch.Config{
		ProxyImage: v.ProxyImage(), ProxyVersion: v.ImageTag, ImagePullPolicy: v.ImagePullPolicy,
		ControllerAddr:        fmt.Sprintf("%s.%s.svc.%s:%d", meshnames.ServiceName, v.Namespace, v.ClusterDomain, meshnames.ControlPort),
		TrustDomain:           v.TrustDomain,
		ControlPlaneNamespace: v.Namespace,
	}
}

func newUninjectCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "uninject (FILE | DIR | URL | -)...",
		Short: "Remove the proxy from the workloads in Kubernetes manifests",
		Long: `Reverse meshctl inject, in both its forms: remove the meshctl.io/inject and
config.meshctl.io annotations and, where the proxy was rendered in (--manual),
its containers, volumes and labels. Reads and writes as inject does.`,
		Example: `  kubectl get deploy -n demo -o yaml | meshctl uninject - | kubectl apply -f -`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTransform(cmd.Context(), args, manifests.Options{Mode: manifests.Uninject}, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
}

// runTransform reads every source, transforms it, and writes the result
// only when all of it succeeded: nothing is half-written.
func runTransform(ctx context.Context, sources []string, opts manifests.Options, stdin io.Reader, stdout, stderr io.Writer) error {
	if err := opts.Injector.Validate(); err != nil && opts.Mode != manifests.Uninject {
		return err
	}
	inputs, err := manifests.Read(ctx, sources, stdin)
	if err != nil {
		return err
	}
	var out [][]byte
	changed, total := 0, 0
	for _, in := range inputs {
		data, reports, err := manifests.Transform(in.Data, opts)
		if err != nil {
			return fmt.Errorf("%s: %w", in.Name, err)
		}
		for _, r := range reports {
			total++
			if r.Changed {
				changed++
			}
			fmt.Fprintln(stderr, r.String())
		}
		if len(data) > 0 {
			out = append(out, data)
		}
	}
	for i, data := range out {
		if i > 0 {
			if _, err := io.WriteString(stdout, "---\n"); err != nil {
				return err
			}
		}
		if _, err := stdout.Write(data); err != nil {
			return err
		}
	}
	verb := "injected"
	if opts.Mode == manifests.Uninject {
		verb = "uninjected"
	}
	fmt.Fprintf(stderr, "%d of %d workloads and namespaces %s\n", changed, total, verb)
	return nil
}
