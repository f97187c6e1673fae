package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"

	"github.com/meshctl/meshctl/internal/adminclient"
	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/command"
	"github.com/meshctl/meshctl/internal/meshnames"
)

type diagnosticsPolicyOptions struct {
	kube   kubeOptions
	output string
}

func newDiagnosticsPolicyCommand(g *globalOptions) *cobra.Command {
	o := &diagnosticsPolicyOptions{}
	cmd := &cobra.Command{
		Use:   "policy pod/NAME [PORT]",
		Short: "The inbound policy a pod's proxy enforces, per port",
		Long: `Show the inbound policy a meshed pod's proxy holds now, as the controller sent
it (not as the cluster's objects say it should be: 'meshctl authz' reads
those): for each of the pod's container ports, and each port a rule names,
what decides there — the AuthorizationPolicies that cover it (their paths and
the client identities they allow; * is any meshed client) or the default
(all-unauthenticated, all-authenticated or deny) — and the kubelet's probes
that always get in; then the pod's rate limits. PORT (a number or a
container port's name) shows one port. A proxy still waiting for its policy
says so (it admits nothing until then). Read through the controller's admin
API (pods/policy in admin.meshctl.io: the ClusterRole meshctl-admin-viewer
grants it).`,
		Example: `  meshctl diagnostics policy pod/web-7d9f -n shop
  meshctl diagnostics policy pod/web-7d9f -n shop http -o json`,
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
			port := ""
			if len(args) == 2 {
				port = args[1]
				if n, err := strconv.Atoi(port); err == nil && (n < 1 || n > 65535) {
					return command.Usagef("port %q: want 1-65535 or a container port's name", port)
				}
			}
			return runDiagnosticsPolicy(cmd.Context(), o, name, port, cmd.OutOrStdout())
		},
	}
	o.kube.use(g)
	o.kube.addNamespaceFlag(cmd.Flags(), "namespace of the pod (default: the context's)")
	addOutputFlag(cmd.Flags(), &o.output, "")
	cmd.ValidArgsFunction = completeTarget(&o.kube, "pod")
	addCompletions(cmd, &o.kube)
	return cmd
}

func runDiagnosticsPolicy(ctx context.Context, o *diagnosticsPolicyOptions, name, port string, stdout io.Writer) error {
	kc, err := o.kube.clients()
	if err != nil {
		return err
	}
	ns := o.kube.defaultNamespace()
	pod, err := meshedPod(ctx, kc.typed, ns, name)
	if err != nil {
		return err
	}
	raw, err := adminclient.Do(ctx, kc.typed.CoreV1().RESTClient(), ns, name, meshnames.AdminPolicy)
	if err != nil {
		return fmt.Errorf("pod %s/%s: %w", ns, name, adminclient.Explain(err, meshnames.AdminPolicy))
	}
	var policy api.InboundPolicy
	if err := json.Unmarshal(raw, &policy); err != nil {
		return fmt.Errorf("pod %s/%s: its /policy: %w", ns, name, err)
	}
	view, err := policyView(ns+"/"+name, policy, containerPorts(pod), port)
	if err != nil {
		return err
	}
	return printPolicy(stdout, o.output, view)
}

// podPolicy is what diagnostics policy prints.
type podPolicy struct {
	Pod                string       `json:"pod"`
	Default            string       `json:"default"`
	Ports              []portPolicy `json:"ports"`
	RateLimit          float64      `json:"rate_limit,omitempty"`
	RateLimitPerClient float64      `json:"rate_limit_per_client,omitempty"`
}

// portPolicy is what decides on one port.
type portPolicy struct {
	Port int    `json:"port"`
	Name string `json:"name,omitempty"`
	// Rules are the AuthorizationPolicies that cover the port; none: the
	// default decides.
	Rules   []api.AuthorizationRule `json:"rules,omitempty"`
	Default string                  `json:"default,omitempty"`
	// Probes are the kubelet's probes on the port ("" path: a connection).
	Probes []api.Probe `json:"probes,omitempty"`
}

// containerPorts maps the pod's container port numbers to their names
// ("" when unnamed).
func containerPorts(pod *corev1.Pod) map[int]string {
	out := map[int]string{}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.Protocol == "" || p.Protocol == corev1.ProtocolTCP {
				out[int(p.ContainerPort)] = p.Name
			}
		}
	}
	return out
}

// policyView lays policy out per port: the pod's container ports and every
// port a rule or a probe names; only want (a number or a port's name) when
// it is not "".
func policyView(pod string, policy api.InboundPolicy, ports map[int]string, want string) (podPolicy, error) {
	all := map[int]string{}
	for p, n := range ports {
		all[p] = n
	}
	for _, r := range policy.Rules {
		if r.Port != 0 {
			if _, ok := all[r.Port]; !ok {
				all[r.Port] = ""
			}
		}
	}
	for _, pr := range policy.Probes {
		if _, ok := all[pr.Port]; !ok {
			all[pr.Port] = ""
		}
	}
	if want != "" {
		n, err := strconv.Atoi(want)
		if err != nil {
			n = -1
			for p, name := range all {
				if name == want {
					n = p
				}
			}
			if n < 0 {
				return podPolicy{}, command.NotFound(fmt.Errorf("pod %s has no container port named %q", pod, want))
			}
		} else if n < 1 || n > 65535 {
			return podPolicy{}, command.Usagef("port %q: want 1-65535 or a container port's name", want)
		}
		all = map[int]string{n: all[n]}
	}
	view := podPolicy{Pod: pod, Default: policy.Default, RateLimit: policy.RateLimit, RateLimitPerClient: policy.RateLimitPerClient}
	for p, name := range all {
		pp := portPolicy{Port: p, Name: name}
		for _, r := range policy.Rules {
			if r.Port == 0 || r.Port == p {
				pp.Rules = append(pp.Rules, r)
			}
		}
		if len(pp.Rules) == 0 {
			pp.Default = policy.Default
		}
		for _, pr := range policy.Probes {
			if pr.Port == p {
				pp.Probes = append(pp.Probes, pr)
			}
		}
		view.Ports = append(view.Ports, pp)
	}
	slices.SortFunc(view.Ports, func(a, b portPolicy) int { return a.Port - b.Port })
	return view, nil
}

// printPolicy prints a pod's inbound policy in format (-o).
func printPolicy(w io.Writer, format string, v podPolicy) error {
	if structured(format) {
		return writeStructured(w, format, v)
	}
	return writePrintable(w, func(w io.Writer) error { return writePolicyTable(w, v) })
}

func writePolicyTable(w io.Writer, v podPolicy) error {
	fmt.Fprintf(w, "Pod %s: inbound policy as its proxy holds it\n", v.Pod)
	fmt.Fprintf(w, "Default (ports no AuthorizationPolicy covers): %s\n", v.Default)
	if v.RateLimit > 0 || v.RateLimitPerClient > 0 {
		fmt.Fprintf(w, "Rate limits: %s requests/s in all, %s per client\n", limit(v.RateLimit), limit(v.RateLimitPerClient))
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "PORT\tDECIDED BY\tPATHS\tCLIENTS\tPROBES")
	for _, p := range v.Ports {
		port := strconv.Itoa(p.Port)
		if p.Name != "" {
			port += " (" + p.Name + ")"
		}
		var probes []string
		for _, pr := range p.Probes {
			switch {
			case pr.TLS:
				probes = append(probes, "https")
			case pr.Path == "":
				probes = append(probes, "tcp")
			default:
				probes = append(probes, pr.Path)
			}
		}
		if len(p.Rules) == 0 {
			fmt.Fprintf(tw, "%s\tdefault: %s\t-\t-\t%s\n", port, p.Default, orDash(strings.Join(probes, ",")))
			continue
		}
		for i, r := range p.Rules {
			probeCol := ""
			if i == 0 {
				probeCol = orDash(strings.Join(probes, ","))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", port, r.Name, orDash(strings.Join(r.PathPrefixes, ",")), orDash(strings.Join(r.Identities, ",")), probeCol)
		}
	}
	return tw.Flush()
}

func limit(v float64) string {
	if v <= 0 {
		return "no limit"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
