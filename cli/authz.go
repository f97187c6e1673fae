package cli

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/meshctl/meshctl/cli/proxystats"
	"github.com/meshctl/meshctl/internal/command"
	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/policyapi"
)

type authzOptions struct {
	kube     kubeOptions
	window   time.Duration
	output   string
	selector string
}

func newAuthzCommand(g *globalOptions) *cobra.Command {
	o := &authzOptions{}
	cmd := &cobra.Command{
		Use:   "authz TARGET | TYPE -l SELECTOR",
		Short: "Which authorization applies to a workload's ports, and what it decided",
		Long: `Show, for the pods of TARGET (deploy/NAME, pod/NAME, svc/NAME; or a TYPE with
-l: the pods of every such resource with those labels, taken together), what
decides who gets in on each port: the AuthorizationPolicies that select them (with their
paths and clients), or, on a port that none covers, the default inbound policy
(and where it comes from: the pod's annotation, its namespace's, or install's
--default-inbound-policy). Then what the proxies decided over the last -t (10s;
-t 0: since they started): requests and connections allowed, denied and rate
limited per second, by the rule that decided (an AuthorizationPolicy,
default:<policy>, probe, rate-limit, rate-limit-per-client).

` + command.ExitCodesHelp,
		Example: `  meshctl authz deploy/web -n shop
  meshctl authz deploy/web -n shop -t 0 -o json
  meshctl authz pod -l app=web,version=v2 -n shop`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(o.output); err != nil {
				return err
			}
			if o.window < 0 {
				return command.Usagef("-t must not be negative")
			}
			return runAuthz(cmd.Context(), o, args, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	o.kube.use(g)
	o.kube.addNamespaceFlag(f, "namespace of the target (default: the context's)")
	f.DurationVarP(&o.window, "time-window", "t", 10*time.Second, "the decisions of this last window (0: since the proxies started, at once)")
	addOutputFlag(f, &o.output, "")
	addSelectorFlag(f, &o.selector)
	cmd.ValidArgsFunction = completeTarget(&o.kube)
	addCompletions(cmd, &o.kube)
	return cmd
}

// authzReport is what authz prints.
type authzReport struct {
	Default       authzDefault  `json:"default"`
	Ports         []authzPort   `json:"ports"`
	Decisions     []authzRate   `json:"decisions"`
	WindowSeconds float64       `json:"window_seconds,omitempty"`
	Policies      []authzPolicy `json:"policies"`
	Errors        []string      `json:"errors,omitempty"`
	pods          []*corev1.Pod // the target's
}

type authzDefault struct {
	Policy string `json:"policy"`
	Source string `json:"source"`
}

type authzPort struct {
	Port int `json:"port"`
	// Policies cover the port; none: the default decides.
	Policies []string `json:"policies,omitempty"`
	Default  string   `json:"default,omitempty"`
}

type authzPolicy struct {
	Name         string   `json:"name"`
	Port         string   `json:"port,omitempty"`
	PathPrefixes []string `json:"path_prefixes,omitempty"`
	From         []string `json:"from"`
}

type authzRate struct {
	Rule        string  `json:"rule"`
	Allowed     float64 `json:"allowed"`
	Denied      float64 `json:"denied"`
	RateLimited float64 `json:"rate_limited"`
}

func runAuthz(ctx context.Context, o *authzOptions, args []string, stdout, stderr io.Writer) error {
	kind, name, err := parseTarget(args)
	if err != nil {
		return err
	}
	if kind == "namespace" {
		return command.Usagef("authz takes a workload: deploy/NAME, pod/NAME or svc/NAME (or a TYPE with -l)")
	}
	if name == "" && o.selector == "" {
		return command.Usagef("give a NAME (%s/NAME) or -l SELECTOR", kind)
	}
	client, _, resources, err := resolveTarget(ctx, &o.kube, false, o.selector, args)
	if err != nil {
		return err
	}
	kc, err := o.kube.clients()
	if err != nil {
		return err
	}
	ns := o.kube.defaultNamespace()
	r := &authzReport{}
	list, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, res := range resources {
		for _, p := range res.Pods {
			want[p.Name] = true
		}
	}
	for i := range list.Items {
		if want[list.Items[i].Name] {
			r.pods = append(r.pods, &list.Items[i])
		}
	}
	if r.Default, err = defaultPolicyOf(ctx, client, o.kube.controlNS(), ns, r.pods); err != nil {
		return err
	}
	if err := r.selectPolicies(ctx, kc.dynamic, ns); err != nil {
		return err
	}
	r.coverPorts()

	if err := sampleWindow(ctx, client, resources, o.window, stderr); err != nil {
		return err
	}
	r.rates(resources, o.window)
	if r.Default.Policy == defaultUnknown && r.defaultFromProxies(resources) {
		r.coverPorts()
	}
	return printAuthz(stdout, stderr, o.output, r)
}

// printAuthz prints authz's report in format (-o); warnings go to warn.
func printAuthz(w, warn io.Writer, format string, r *authzReport) error {
	if structured(format) {
		return writeStructured(w, format, r)
	}
	return writePrintable(w, func(w io.Writer) error { return r.write(w, warn) })
}

// defaultPolicyOf is the default inbound policy of the pods and where it
// comes from: the pods' annotation, their namespace's, or install's.
func defaultPolicyOf(ctx context.Context, client kubernetes.Interface, controlNS, ns string, pods []*corev1.Pod) (authzDefault, error) {
	seen, unannotated := map[string]bool{}, 0
	for _, p := range pods {
		if v := p.Annotations[meshnames.DefaultPolicyAnnotation]; v != "" {
			seen[v] = true
		} else {
			unannotated++
		}
	}
	if len(seen) > 0 {
		source := "the pods' annotation " + meshnames.DefaultPolicyAnnotation
		if unannotated > 0 { // the others' default comes from elsewhere
			rest, err := defaultPolicyOf(ctx, client, controlNS, ns, nil)
			if err != nil {
				return authzDefault{}, err
			}
			seen[rest.Policy] = true
			source = fmt.Sprintf("the annotation %s on %d of the %d pods; for the others, %s", meshnames.DefaultPolicyAnnotation, len(pods)-unannotated, len(pods), rest.Source)
		}
		vals := slices.Sorted(maps.Keys(seen))
		return authzDefault{Policy: strings.Join(vals, ","), Source: source}, nil
	}
	// A user bound in one namespace may not read it (namespaces are
	// cluster-scoped) nor the control plane's Deployment: then the default
	// is unknown, and said so, rather than guessed.
	n, err := client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if apierrors.IsForbidden(err) {
		return authzDefault{Policy: defaultUnknown, Source: "namespace " + ns + " cannot be read (RBAC: get on namespaces; meshctl diagnostics policy POD shows what a proxy holds)"}, nil
	}
	if err != nil {
		return authzDefault{}, fmt.Errorf("namespace %s: %w", ns, err)
	}
	if v := n.Annotations[meshnames.DefaultPolicyAnnotation]; v != "" {
		return authzDefault{Policy: v, Source: "namespace " + ns + "'s annotation " + meshnames.DefaultPolicyAnnotation}, nil
	}
	d, err := client.AppsV1().Deployments(controlNS).Get(ctx, meshnames.ServiceName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return authzDefault{Policy: meshnames.DefaultAllUnauthenticated, Source: "the mesh's default (no control plane in " + controlNS + ")"}, nil
	case err != nil:
		return authzDefault{Policy: defaultUnknown, Source: "install's --default-inbound-policy cannot be read: " + err.Error() + " (meshctl diagnostics policy POD shows what a proxy holds)"}, nil
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, a := range c.Args {
			if v, ok := strings.CutPrefix(a, "--default-inbound-policy="); ok {
				return authzDefault{Policy: v, Source: "meshctl install --default-inbound-policy"}, nil
			}
		}
	}
	return authzDefault{Policy: meshnames.DefaultAllUnauthenticated, Source: "the mesh's default"}, nil
}

// defaultFromProxies takes the default from the proxies' own decisions
// (their rule default:POLICY, since they started) when they agree on one,
// and reports whether it did.
func (r *authzReport) defaultFromProxies(resources []proxystats.Resource) bool {
	seen := map[string]bool{}
	for _, res := range resources {
		for _, p := range res.Pods {
			if p.End == nil {
				continue
			}
			for d := range p.End.Decisions {
				if v, ok := strings.CutPrefix(d.Rule, "default:"); ok {
					seen[v] = true
				}
			}
		}
	}
	if len(seen) != 1 {
		return false
	}
	for v := range seen {
		r.Default = authzDefault{Policy: v, Source: "the proxies' decisions since they started (rule default:" + v + "; " + r.Default.Source + ")"}
	}
	return true
}

// defaultUnknown is the default inbound policy authz shows when the user
// may not read where it comes from.
const defaultUnknown = "unknown"

// selectPolicies finds the AuthorizationPolicies of ns that select one of
// the pods.
func (r *authzReport) selectPolicies(ctx context.Context, dyn dynamic.Interface, ns string) error {
	list, err := dyn.Resource(policyapi.GroupVersionResource).Namespace(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list the AuthorizationPolicies of %s: %w", ns, err)
	}
	r.Policies = []authzPolicy{}
	for _, item := range list.Items {
		var ap policyapi.AuthorizationPolicy
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(item.Object, &ap); err != nil {
			r.Errors = append(r.Errors, fmt.Sprintf("AuthorizationPolicy %s/%s: %v", ns, item.GetName(), err))
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&ap.Spec.PodSelector)
		if err != nil {
			r.Errors = append(r.Errors, fmt.Sprintf("AuthorizationPolicy %s/%s: %v", ns, ap.Name, err))
			continue
		}
		if !slices.ContainsFunc(r.pods, func(p *corev1.Pod) bool { return sel.Matches(labels.Set(p.Labels)) }) {
			continue
		}
		pol := authzPolicy{Name: ns + "/" + ap.Name, PathPrefixes: ap.Spec.PathPrefixes, From: []string{}}
		if ap.Spec.Port != nil {
			pol.Port = ap.Spec.Port.String()
		}
		for _, c := range ap.Spec.From {
			switch {
			case c.SPIFFEID != "":
				pol.From = append(pol.From, c.SPIFFEID)
			case c.ServiceAccount != nil:
				sans := c.ServiceAccount.Namespace
				if sans == "" {
					sans = ns
				}
				pol.From = append(pol.From, "sa/"+c.ServiceAccount.Name+" -n "+sans)
			}
		}
		r.Policies = append(r.Policies, pol)
	}
	return nil
}

// coverPorts lists the pods' ports with the policies covering each (a
// policy's named port resolved on the pods' containers).
func (r *authzReport) coverPorts() {
	ports := map[int]string{} // number → name
	for _, p := range r.pods {
		for _, c := range p.Spec.Containers {
			for _, cp := range c.Ports {
				ports[int(cp.ContainerPort)] = cp.Name
			}
		}
	}
	for _, pol := range r.Policies {
		if n, err := strconv.Atoi(pol.Port); err == nil {
			if _, ok := ports[n]; !ok {
				ports[n] = ""
			}
		}
	}
	numbers := make([]int, 0, len(ports))
	for n := range ports {
		numbers = append(numbers, n)
	}
	slices.Sort(numbers)
	r.Ports = []authzPort{}
	for _, n := range numbers {
		ap := authzPort{Port: n}
		for _, pol := range r.Policies {
			if pol.Port == "" || pol.Port == strconv.Itoa(n) || (ports[n] != "" && pol.Port == ports[n]) {
				ap.Policies = append(ap.Policies, pol.Name)
			}
		}
		if len(ap.Policies) == 0 {
			ap.Default = r.Default.Policy
		}
		r.Ports = append(r.Ports, ap)
	}
}

// rates adds up the pods' decisions over the window (everything since
// their start when window is 0, or for a proxy that restarted).
func (r *authzReport) rates(resources []proxystats.Resource, window time.Duration) {
	sum := map[string]*authzRate{}
	for _, res := range resources {
		for _, p := range res.Pods {
			if p.Err != nil {
				r.Errors = append(r.Errors, "pod "+p.Namespace+"/"+p.Name+": "+p.Err.Error())
				continue
			}
			if p.End == nil || (window > 0 && p.Start == nil) {
				continue
			}
			for d, n := range p.End.Decisions {
				if window > 0 && p.Start.Started == p.End.Started {
					n -= p.Start.Decisions[d]
				}
				if n <= 0 {
					continue
				}
				a := sum[d.Rule]
				if a == nil {
					a = &authzRate{Rule: d.Rule}
					sum[d.Rule] = a
				}
				switch d.Decision {
				case "allow":
					a.Allowed += n
				case "deny":
					a.Denied += n
				case "rate_limited":
					a.RateLimited += n
				}
			}
		}
	}
	r.Decisions = []authzRate{}
	r.WindowSeconds = window.Seconds()
	for _, a := range sum {
		if window > 0 {
			s := window.Seconds()
			a.Allowed, a.Denied, a.RateLimited = a.Allowed/s, a.Denied/s, a.RateLimited/s
		}
		r.Decisions = append(r.Decisions, *a)
	}
	slices.SortFunc(r.Decisions, func(a, b authzRate) int { return strings.Compare(a.Rule, b.Rule) })
}

func (r *authzReport) write(w, warn io.Writer) error {
	fmt.Fprintf(w, "Default inbound policy: %s (from %s)\n\n", r.Default.Policy, r.Default.Source)
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "PORT\tDECIDED BY")
	for _, p := range r.Ports {
		by := "default: " + p.Default
		if len(p.Policies) > 0 {
			by = strings.Join(p.Policies, ", ")
		}
		fmt.Fprintf(tw, "%d\t%s\n", p.Port, by)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Policies) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
		fmt.Fprintln(tw, "AUTHORIZATION POLICY\tPORT\tPATHS\tFROM")
		for _, p := range r.Policies {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Name, orDash(p.Port), orDash(strings.Join(p.PathPrefixes, ",")), orDash(strings.Join(p.From, ", ")))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	unit := "/s"
	if r.WindowSeconds == 0 {
		unit = " (since start)"
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintf(tw, "RULE\tALLOWED%s\tDENIED%s\tRATE LIMITED%s\n", unit, unit, unit)
	for _, d := range r.Decisions {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.Rule, rate(d.Allowed), rate(d.Denied), rate(d.RateLimited))
	}
	if len(r.Decisions) == 0 {
		fmt.Fprintln(tw, "(none)\t\t\t")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, e := range r.Errors {
		fmt.Fprintf(warn, "warning: %s\n", e)
	}
	return nil
}

func rate(v float64) string {
	return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64)
}
