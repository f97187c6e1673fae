package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/meshctl/meshctl/cli/proxystats"
	"github.com/meshctl/meshctl/internal/command"
	"github.com/meshctl/meshctl/internal/meshnames"
)

// resourceKind normalizes kubectl's names for the kinds stat, edges and top take.
func resourceKind(s string) (string, error) {
	switch strings.ToLower(s) {
	case "deploy", "deployment", "deployments":
		return "deployment", nil
	case "po", "pod", "pods":
		return "pod", nil
	case "ns", "namespace", "namespaces":
		return "namespace", nil
	case "svc", "service", "services":
		return "service", nil
	}
	return "", command.Usagef("unknown resource type %q: want deploy, pod, ns or svc", s)
}

// parseTarget reads "TYPE [NAME]" or "TYPE/NAME".
func parseTarget(args []string) (kind, name string, err error) {
	if len(args) == 0 || len(args) > 2 {
		return "", "", command.Usagef("give a resource type and optionally a name: deploy [NAME], pod/NAME, ns, svc")
	}
	t := args[0]
	if k, n, ok := strings.Cut(t, "/"); ok {
		if len(args) == 2 {
			return "", "", command.Usagef("give either TYPE/NAME or TYPE NAME")
		}
		t, name = k, n
	} else if len(args) == 2 {
		name = args[1]
	}
	kind, err = resourceKind(t)
	return kind, name, err
}

// addSelectorFlag adds -l/--selector, kubectl's label selector.
func addSelectorFlag(f *pflag.FlagSet, p *string) {
	f.StringVarP(p, "selector", "l", "", "only resources with these labels (a label selector: app=web,tier!=db; the TYPE's own labels: a namespace's for ns)")
}

// resolveTarget reads "TYPE [NAME]", connects, and finds the resources in
// the namespace (-n, the context's) or in every namespace (-A), those
// whose labels match selector (-l) when it is not "".
func resolveTarget(ctx context.Context, kube *kubeOptions, all bool, selector string, args []string) (kubernetes.Interface, string, []proxystats.Resource, error) {
	kind, name, err := parseTarget(args)
	if err != nil {
		return nil, "", nil, err
	}
	if selector != "" {
		if name != "" {
			return nil, "", nil, command.Usagef("give a NAME or -l, not both")
		}
		if _, err := labels.Parse(selector); err != nil {
			return nil, "", nil, command.Usagef("-l %q: %v", selector, err)
		}
	}
	kc, err := kube.clients()
	if err != nil {
		return nil, "", nil, err
	}
	client := kc.typed
	ns := kube.defaultNamespace()
	if all {
		ns = ""
	}
	resources, err := resolveResources(ctx, client, ns, kind, name, selector)
	if err != nil {
		return nil, "", nil, err
	}
	if len(resources) == 0 {
		what := kind
		if selector != "" {
			what += " with labels " + selector
		}
		hint := ""
		if ns != "" {
			hint = " (-n NAMESPACE or -A to look elsewhere)"
		}
		return nil, "", nil, command.NotFound(fmt.Errorf("no %s found in %s%s", what, nsOrAll(ns), hint))
	}
	return client, kind, resources, nil
}

func nsOrAll(ns string) string {
	if ns == "" {
		return "any namespace"
	}
	return "namespace " + ns
}

// resolveResources finds the resources (one when named; else those whose
// labels match selector) and their pods. ns "" means every namespace.
func resolveResources(ctx context.Context, client kubernetes.Interface, ns, kind, name, selector string) ([]proxystats.Resource, error) {
	var out []proxystats.Resource
	listOpts := metav1.ListOptions{LabelSelector: selector}
	podsFor := func(namespace string, sel labels.Selector) ([]*proxystats.Pod, error) {
		list, err := client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
		if err != nil {
			return nil, err
		}
		var pods []*proxystats.Pod
		for i := range list.Items {
			p := &list.Items[i]
			if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
				continue
			}
			_, meshed := p.Labels[meshnames.VersionLabel]
			pods = append(pods, &proxystats.Pod{Namespace: p.Namespace, Name: p.Name, Workload: p.Labels[meshnames.WorkloadLabel], Meshed: meshed})
		}
		return pods, nil
	}
	notFound := func(err error) error {
		if apierrors.IsNotFound(err) {
			where := ns
			if where == "" {
				where = "any namespace"
			}
			return command.NotFound(fmt.Errorf("%s %q not found in %s", kind, name, where))
		}
		return err
	}
	switch kind {
	case "deployment":
		var items []metav1.Object
		selectors := map[string]labels.Selector{}
		if name != "" {
			d, err := client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return nil, notFound(err)
			}
			sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
			if err != nil {
				return nil, err
			}
			items, selectors[d.Namespace+"/"+d.Name] = append(items, d), sel
		} else {
			list, err := client.AppsV1().Deployments(ns).List(ctx, listOpts)
			if err != nil {
				return nil, err
			}
			for i := range list.Items {
				d := &list.Items[i]
				sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
				if err != nil {
					return nil, err
				}
				items, selectors[d.Namespace+"/"+d.Name] = append(items, d), sel
			}
		}
		for _, d := range items {
			pods, err := podsFor(d.GetNamespace(), selectors[d.GetNamespace()+"/"+d.GetName()])
			if err != nil {
				return nil, err
			}
			out = append(out, proxystats.Resource{Kind: kind, Namespace: d.GetNamespace(), Name: d.GetName(), Pods: pods})
		}
	case "service":
		var svcs []corev1.Service
		if name != "" {
			s, err := client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return nil, notFound(err)
			}
			svcs = append(svcs, *s)
		} else {
			list, err := client.CoreV1().Services(ns).List(ctx, listOpts)
			if err != nil {
				return nil, err
			}
			svcs = list.Items
		}
		for _, s := range svcs {
			var pods []*proxystats.Pod
			if len(s.Spec.Selector) > 0 {
				var err error
				if pods, err = podsFor(s.Namespace, labels.SelectorFromSet(s.Spec.Selector)); err != nil {
					return nil, err
				}
			}
			out = append(out, proxystats.Resource{Kind: kind, Namespace: s.Namespace, Name: s.Name, Pods: pods})
		}
	case "namespace":
		var names []string
		if name != "" {
			if _, err := client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{}); err != nil {
				return nil, notFound(err)
			}
			names = []string{name}
		} else if ns != "" && selector == "" {
			names = []string{ns}
		} else {
			list, err := client.CoreV1().Namespaces().List(ctx, listOpts)
			if err != nil {
				return nil, err
			}
			for _, n := range list.Items {
				names = append(names, n.Name)
			}
		}
		for _, n := range names {
			pods, err := podsFor(n, labels.Everything())
			if err != nil {
				return nil, err
			}
			out = append(out, proxystats.Resource{Kind: kind, Namespace: n, Name: n, Pods: pods})
		}
	case "pod":
		var pods []corev1.Pod
		if name != "" {
			p, err := client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return nil, notFound(err)
			}
			if p.Status.Phase != corev1.PodRunning {
				return nil, fmt.Errorf("pod %s/%s is %s, not Running: it has no proxy to read", p.Namespace, p.Name, p.Status.Phase)
			}
			pods = append(pods, *p)
		} else {
			list, err := client.CoreV1().Pods(ns).List(ctx, listOpts)
			if err != nil {
				return nil, err
			}
			pods = list.Items
		}
		for _, p := range pods {
			// A finished pod (a Job's) has no proxy left to read: asking
			// the API server for it waits out a dial to a dead address.
			if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
				continue
			}
			_, meshed := p.Labels[meshnames.VersionLabel]
			out = append(out, proxystats.Resource{Kind: kind, Namespace: p.Namespace, Name: p.Name, Pods: []*proxystats.Pod{{
				Namespace: p.Namespace, Name: p.Name, Workload: p.Labels[meshnames.WorkloadLabel], Meshed: meshed,
			}}})
		}
	}
	return out, nil
}

// scrapeConcurrency bounds the proxies read at once.
const scrapeConcurrency = 16

// scrape reads every meshed pod's metrics, at most scrapeConcurrency at a
// time, with the query params (nil: none); a pod that cannot be read gets
// an error naming the cause, the others are read regardless.
func scrape(ctx context.Context, client kubernetes.Interface, resources []proxystats.Resource, end bool, params map[string]string) {
	sem := make(chan struct{}, scrapeConcurrency)
	var wg sync.WaitGroup
	for _, res := range resources {
		for _, p := range res.Pods {
			if !p.Meshed {
				continue
			}
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				raw, err := client.CoreV1().Pods(p.Namespace).ProxyGet("http", p.Name, proxyAdminPort, "/metrics", params).DoRaw(ctx)
				if err != nil {
					p.Err = explainProxyError(err)
					return
				}
				s, err := proxystats.Parse(bytes.NewReader(raw))
				if err != nil {
					p.Err = err
					return
				}
				if end {
					p.End = s
				} else {
					p.Start = s
				}
			}()
		}
	}
	wg.Wait()
}

// sampleWindow reads the pods' proxies at the start of a window (when it
// is above zero), waits it out saying so on progress, and reads them again
// at its end: each pod's error is its last read's (a pod not read at the
// start has no Start sample).
func sampleWindow(ctx context.Context, client kubernetes.Interface, resources []proxystats.Resource, window time.Duration, progress io.Writer) error {
	if window > 0 {
		scrape(ctx, client, resources, false, nil)
		fmt.Fprintf(progress, "measuring for %s ...\n", window)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(window):
		}
		for _, r := range resources {
			for _, p := range r.Pods {
				p.Err = nil
			}
		}
	}
	scrape(ctx, client, resources, true, nil)
	return nil
}

// explainProxyError says what to do about a failed pods/proxy call.
func explainProxyError(err error) error {
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Errorf("you may not use pods/proxy here (RBAC: get on pods/proxy): %w", err)
	case apierrors.IsNotFound(err):
		return fmt.Errorf("the pod is gone: %w", err)
	}
	return fmt.Errorf("its proxy did not answer: %w", err)
}
