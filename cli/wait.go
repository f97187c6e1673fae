package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshctl/meshctl/internal/adminclient"
	"github.com/meshctl/meshctl/internal/meshnames"
)

// waitControlPlane waits until the controller's replicas are ready and the
// API server reaches the injector, printing each change of state.
func waitControlPlane(ctx context.Context, client kubernetes.Interface, ns string, progress io.Writer) error {
	last := ""
	say := func(s string) {
		if s != last {
			fmt.Fprintln(progress, "  "+s)
			last = s
		}
	}
	err := poll(ctx, time.Second, func(ctx context.Context) (bool, error) {
		d, err := client.AppsV1().Deployments(ns).Get(ctx, meshnames.ServiceName, metav1.GetOptions{})
		if err != nil {
			say(fmt.Sprintf("waiting for Deployment %s/%s: %v", ns, meshnames.ServiceName, err))
			return false, nil
		}
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		say(fmt.Sprintf("waiting for %s: %d/%d replicas ready (%d up to date)", meshnames.ServiceName, d.Status.ReadyReplicas, want, d.Status.UpdatedReplicas))
		return d.Status.ObservedGeneration >= d.Generation && d.Status.UpdatedReplicas == want && d.Status.ReadyReplicas == want && d.Status.Replicas == want, nil
	})
	if err != nil {
		return fmt.Errorf("the control plane is not ready (%s): %w; see 'kubectl -n %s describe pods' and 'meshctl check'", last, err, ns)
	}
	err = poll(ctx, time.Second, func(ctx context.Context) (bool, error) {
		ok, why := injectorAnswers(ctx, client)
		say("waiting for the API server to reach the proxy injector: " + why)
		return ok, nil
	})
	if err != nil {
		return fmt.Errorf("the proxy injector is not reachable (%s): %w; see 'meshctl check'", last, err)
	}
	// The admin API: tap, top, identity show and the rotations need it, the
	// mesh itself does not, so a minute without it is a warning.
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	err = poll(wctx, time.Second, func(ctx context.Context) (bool, error) {
		ok, why, err := adminclient.Available(ctx, client.Discovery().RESTClient())
		if err != nil {
			why = err.Error()
		}
		say("waiting for the API server to reach the admin API (APIService " + meshnames.AdminAPIServiceName + "): " + why)
		return ok, nil
	})
	if err != nil && ctx.Err() == nil {
		fmt.Fprintf(progress, "  warning: the admin API is not available yet (%s): tap, top, identity show and the rotations need it; see 'meshctl check'\n", last)
	}
	return nil
}

// injectorAnswers asks the API server to create, as a dry run, a pod that
// wants the proxy: the webhook answers only if everything on the way works
// (Service, endpoints, certificate, CA bundle).
func injectorAnswers(ctx context.Context, client kubernetes.Interface) (bool, string) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "meshctl-injector-probe-", Annotations: map[string]string{meshnames.InjectAnnotation: "enabled"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "probe", Image: "meshctl/probe"}}},
	}
	got, err := client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if apierrors.IsNotFound(err) {
		return true, "no default namespace to probe from; skipped"
	}
	if err != nil {
		return false, err.Error()
	}
	for _, c := range got.Spec.InitContainers {
		if c.Name == meshnames.ProxyContainerName {
			return true, "it answers"
		}
	}
	return false, "a pod asking for the proxy was not injected (the API server could not call the webhook)"
}

// poll calls cond every interval until it returns true, an error, or ctx ends.
func poll(ctx context.Context, interval time.Duration, cond func(context.Context) (bool, error)) error {
	for {
		ok, err := cond(ctx)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return errors.New("timed out")
			}
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}
