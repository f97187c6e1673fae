package cli

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshctl/meshctl/cli/healthcheck"
	"github.com/meshctl/meshctl/internal/command"
	"github.com/meshctl/meshctl/internal/version"
)

type checkOptions struct {
	kube    kubeOptions
	pre     bool
	proxy   bool
	wait    bool
	timeout time.Duration
	output  string
}

func (o *checkOptions) validate() error {
	if err := checkOutput(o.output); err != nil {
		return err
	}
	if o.pre && o.proxy {
		return errors.New("--pre and --proxy do not go together: there are no proxies before install")
	}
	if o.timeout < 0 {
		return errors.New("--timeout must not be negative")
	}
	if o.kube.namespace != "" && !o.proxy {
		return errors.New("-n chooses the namespace of --proxy's pods: give --proxy too (the control plane's namespace is --control-plane-namespace)")
	}
	return nil
}

// errChecksFailed makes the exit status non-zero once the report is printed.
var errChecksFailed = errors.New("some checks failed")

func newCheckCommand(g *globalOptions) *cobra.Command {
	o := &checkOptions{}
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check that the mesh works, and say what to do when it does not",
		Long: `Run grouped checks and print each as ✔ (passed), ‼ (warning) or × (failed), with a
hint under every failure, or ? when your RBAC does not let meshctl look (the
API server's refusal names what is missing; the status line counts them). The
exit status is 0 only when nothing failed; a ? fails a check of the whole mesh,
not one scoped to a namespace (--proxy -n NS: it vouches for what you may read).

  meshctl check --pre        before install: the cluster can run the mesh, you may install it
  meshctl check              the control plane: pods, control API, webhook, identity, versions;
                             and policy: HTTPRoutes and AuthorizationPolicies that point at
                             nothing (warnings)
  meshctl check --proxy      and every meshed pod's proxy (-n to one namespace)

Each result is printed as soon as it is known. A failing check is retried
for up to --timeout (2m) while --wait (the default), saying what it waits for:
right after install or a rollout, check waits for the mesh to settle rather
than fail. --wait=false runs each check once. -o json and -o yaml are for
scripts.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return command.Usage(err)
			}
			return runCheck(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	o.kube.use(g)
	o.kube.addNamespaceFlag(f, "with --proxy: check only this namespace's pods (default: all namespaces)")
	f.BoolVar(&o.pre, "pre", false, "check the cluster before installing")
	f.BoolVar(&o.proxy, "proxy", false, "also check every meshed pod's proxy")
	f.BoolVar(&o.wait, "wait", true, "retry failing checks until they pass or --timeout is up (false: run each once)")
	f.DurationVar(&o.timeout, "timeout", 2*time.Minute, "how long --wait waits")
	addOutputFlag(f, &o.output, "")
	addCompletions(cmd, &o.kube)
	return cmd
}

func runCheck(ctx context.Context, o *checkOptions, stdout, stderr io.Writer) error {
	kc, err := o.kube.clients()
	if err != nil {
		return err
	}
	env := &healthcheck.Env{
		Config: kc.config, Client: kc.typed, Dynamic: kc.dynamic, Namespace: o.kube.controlNS(), ProxyNamespace: o.kube.namespace,
		Version: version.Version, Now: time.Now(),
	}
	cats := []healthcheck.Category{healthcheck.KubernetesAPI()}
	switch {
	case o.pre:
		cats = append(cats, healthcheck.PreInstall())
	default:
		cats = append(cats, healthcheck.ControlPlane(), healthcheck.Identity(), healthcheck.Policy())
		if o.proxy {
			cats = append(cats, healthcheck.Proxies())
		}
	}
	opts := healthcheck.Options{}
	if o.wait {
		opts.Wait = o.timeout
	}
	var table *healthcheck.Table
	if !structured(o.output) {
		// Each result as soon as it is known, not all at the end.
		table = healthcheck.NewTable(stdout)
		opts.Progress, opts.Done = stderr, table.Add
	}
	results := healthcheck.Run(ctx, env, cats, opts)
	// Scoped to a namespace's proxies, check vouches for what the user may
	// read; of the whole mesh, a check it could not run has not passed.
	scoped := o.kube.namespace != ""
	if structured(o.output) {
		err = writeStructured(stdout, o.output, healthcheck.NewReport(results, scoped))
	} else {
		err = table.Finish(results, scoped)
	}
	if err != nil {
		return err
	}
	if !healthcheck.Passed(results, scoped) {
		return errChecksFailed
	}
	return nil
}
