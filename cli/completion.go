package cli

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// completionTimeout bounds what one shell completion asks the cluster.
const completionTimeout = 5 * time.Second

// completeFn is what cobra asks for completions.
type completeFn = func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective)

// completeWords offers fixed values (-o, --sort).
func completeWords(words ...string) completeFn {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return words, cobra.ShellCompDirectiveNoFileComp
	}
}

// withClient runs list against the cluster the command's flags name, with
// a short deadline; nothing when it cannot.
func withClient(cmd *cobra.Command, k *kubeOptions, list func(context.Context, kubernetes.Interface) []string) []string {
	kc, err := k.clients()
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
	defer cancel()
	return list(ctx, kc.typed)
}

// namesOf lists the names of a kind in ns (kinds as parseTarget and
// parsePeer name them).
func namesOf(ctx context.Context, client kubernetes.Interface, kind, ns string) []string {
	var names []string
	opts := metav1.ListOptions{}
	switch kind {
	case "deployment", "deploy":
		if l, err := client.AppsV1().Deployments(ns).List(ctx, opts); err == nil {
			for _, d := range l.Items {
				names = append(names, d.Name)
			}
		}
	case "pod":
		if l, err := client.CoreV1().Pods(ns).List(ctx, opts); err == nil {
			for _, p := range l.Items {
				names = append(names, p.Name)
			}
		}
	case "service", "svc":
		if l, err := client.CoreV1().Services(ns).List(ctx, opts); err == nil {
			for _, s := range l.Items {
				names = append(names, s.Name)
			}
		}
	case "sa":
		if l, err := client.CoreV1().ServiceAccounts(ns).List(ctx, opts); err == nil {
			for _, s := range l.Items {
				names = append(names, s.Name)
			}
		}
	case "namespace", "ns":
		if l, err := client.CoreV1().Namespaces().List(ctx, opts); err == nil {
			for _, n := range l.Items {
				names = append(names, n.Name)
			}
		}
	}
	return names
}

// completeNamespaces offers the cluster's namespaces (-n).
func completeNamespaces(k *kubeOptions) completeFn {
	return func(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
		return withClient(cmd, k, func(ctx context.Context, c kubernetes.Interface) []string {
			return namesOf(ctx, c, "ns", "")
		}), cobra.ShellCompDirectiveNoFileComp
	}
}

// completeTarget offers a target's TYPE (deploy, pod, ns, svc), then its
// names: TYPE/NAME in one word, or NAME as the second argument. Given
// types, a command that takes one resource of those: only TYPE/ of them.
func completeTarget(k *kubeOptions, types ...string) completeFn {
	bare := len(types) == 0 // a TYPE alone is a target too
	if bare {
		types = []string{"deploy", "pod", "ns", "svc"}
	}
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		allowed := func(t string) (string, bool) {
			kind, err := resourceKind(t)
			return kind, err == nil && slices.ContainsFunc(types, func(a string) bool { k, _ := resourceKind(a); return k == kind })
		}
		switch {
		case len(args) == 0 && !strings.Contains(toComplete, "/"):
			var out []string
			if bare {
				out = append(out, types...)
			}
			for _, t := range types {
				out = append(out, t+"/")
			}
			return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
		case len(args) == 0:
			t, _, _ := strings.Cut(toComplete, "/")
			kind, ok := allowed(t)
			if !ok {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return prefixed(t+"/", withClient(cmd, k, func(ctx context.Context, c kubernetes.Interface) []string {
				return namesOf(ctx, c, kind, k.defaultNamespace())
			})), cobra.ShellCompDirectiveNoFileComp
		case len(args) == 1 && !strings.Contains(args[0], "/"):
			kind, ok := allowed(args[0])
			if !ok {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return withClient(cmd, k, func(ctx context.Context, c kubernetes.Interface) []string {
				return namesOf(ctx, c, kind, k.defaultNamespace())
			}), cobra.ShellCompDirectiveNoFileComp
		}
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
}

// completePeer offers --to's or --from's TYPE/ and then the names, in the
// namespace namespaceFlag gives (else the target's).
func completePeer(k *kubeOptions, namespaceFlag string, kinds ...string) completeFn {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		t, _, ok := strings.Cut(toComplete, "/")
		if !ok {
			out := make([]string, len(kinds))
			for i, kind := range kinds {
				out[i] = kind + "/"
			}
			return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
		}
		ns := k.defaultNamespace()
		if f := cmd.Flags().Lookup(namespaceFlag); f != nil && f.Value.String() != "" {
			ns = f.Value.String()
		}
		return prefixed(t+"/", withClient(cmd, k, func(ctx context.Context, c kubernetes.Interface) []string {
			return namesOf(ctx, c, strings.ToLower(t), ns)
		})), cobra.ShellCompDirectiveNoFileComp
	}
}

func prefixed(prefix string, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = prefix + n
	}
	return out
}

// addCompletions registers the completions of the flags a command has
// (-o: the read commands' formats).
func addCompletions(cmd *cobra.Command, k *kubeOptions) {
	f := cmd.Flags()
	if f.Lookup("namespace") != nil {
		_ = cmd.RegisterFlagCompletionFunc("namespace", completeNamespaces(k))
	}
	if f.Lookup("to") != nil {
		_ = cmd.RegisterFlagCompletionFunc("to", completePeer(k, "to-namespace", "deploy", "sa", "ns", "svc"))
	}
	if f.Lookup("from") != nil {
		_ = cmd.RegisterFlagCompletionFunc("from", completePeer(k, "from-namespace", "deploy", "sa", "ns"))
	}
	for _, ns := range []string{"to-namespace", "from-namespace"} {
		if f.Lookup(ns) != nil {
			_ = cmd.RegisterFlagCompletionFunc(ns, completeNamespaces(k))
		}
	}
	if f.Lookup("output") != nil {
		_ = cmd.RegisterFlagCompletionFunc("output", completeWords(outputFormats...))
	}
}
