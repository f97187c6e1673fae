//go:build e2e

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"

	"github.com/meshctl/meshctl/e2e/localcluster"
)

// testappImage is the test workload, loaded by `make cluster-load`.
const testappImage = "meshctl/testapp:dev"

// newNamespace creates a namespace for one test and deletes it afterwards.
func newNamespace(t *testing.T, prefix string) string {
	t.Helper()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	name := prefix + "-" + hex.EncodeToString(b)
	ctx := context.Background()
	_, err := cluster.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			dumpNamespace(t, name)
		}
		_ = cluster.client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}

// meshedNamespace creates a namespace annotated for injection.
func meshedNamespace(t *testing.T, prefix string) string {
	t.Helper()
	ns := newNamespace(t, prefix)
	ctx := context.Background()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		obj, err := cluster.client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil {
			return err
		}
		obj.Annotations = map[string]string{"meshctl.io/inject": "enabled"}
		_, err = cluster.client.CoreV1().Namespaces().Update(ctx, obj, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// dumpNamespace logs the pods, their states and the events of a namespace,
// and the end of the cluster components' logs.
func dumpNamespace(t *testing.T, ns string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pods, err := cluster.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err == nil {
		for _, p := range pods.Items {
			t.Logf("pod %s: phase %s, node %s, IP %s", p.Name, p.Status.Phase, p.Spec.NodeName, p.Status.PodIP)
			for _, cs := range p.Status.ContainerStatuses {
				t.Logf("  container %s: ready %v restarts %d state %+v", cs.Name, cs.Ready, cs.RestartCount, cs.State)
			}
			var names []string
			for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
				names = append(names, c.Name)
			}
			tail := int64(15)
			for _, c := range names {
				logs, err := cluster.client.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{Container: c, TailLines: &tail}).DoRaw(ctx)
				if err == nil && len(logs) > 0 {
					t.Logf("  logs of %s/%s:\n%s", p.Name, c, logs)
				}
			}
		}
	}
	events, err := cluster.client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err == nil {
		for _, e := range events.Items {
			t.Logf("event %s %s/%s: %s", e.Type, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Message)
		}
	}
	t.Logf("cluster component logs:\n%s", localcluster.Diagnose(cluster.local, 15))
}

// eventually polls cond until it returns nil or the timeout passes.
func eventually(t *testing.T, what string, timeout time.Duration, cond func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for {
		if last = cond(ctx); last == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not after %s: %v", what, timeout, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// webDeployment is an HTTP test app answering on 8080 with its pod name.
func webDeployment(name string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: new(int64),
					Containers: []corev1.Container{{
						Name:            "web",
						Image:           testappImage,
						ImagePullPolicy: corev1.PullNever,
						Args:            []string{"serve", "--listen", ":8080"},
						Ports:           []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}},
							PeriodSeconds: 1,
						},
					}},
				},
			},
		},
	}
}

// serviceFor is a ClusterIP Service on port 80 in front of a web deployment.
func serviceFor(name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
		},
	}
}

// waitReady waits until a deployment has all its replicas ready.
func waitReady(t *testing.T, ns, name string, timeout time.Duration) {
	t.Helper()
	eventually(t, fmt.Sprintf("deployment %s/%s ready", ns, name), timeout, func(ctx context.Context) error {
		d, err := cluster.client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Spec.Replicas == nil || d.Status.ReadyReplicas != *d.Spec.Replicas {
			return fmt.Errorf("%d of %d replicas ready", d.Status.ReadyReplicas, *d.Spec.Replicas)
		}
		return nil
	})
}

// runToCompletion runs a one-shot pod and returns its output; the test fails
// if the pod does not succeed, unless mayFail.
func runToCompletion(t *testing.T, ns, name string, args []string, timeout time.Duration, mayFail ...bool) string {
	t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name: "main", Image: testappImage, ImagePullPolicy: corev1.PullNever, Args: args,
			}},
		},
	}
	if _, err := cluster.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s: %v", name, err)
	}
	var phase corev1.PodPhase
	eventually(t, "pod "+name+" to finish", timeout, func(ctx context.Context) error {
		p, err := cluster.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		phase = p.Status.Phase
		if phase == corev1.PodSucceeded || phase == corev1.PodFailed {
			return nil
		}
		return fmt.Errorf("phase %s", phase)
	})
	logs, err := cluster.client.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		t.Fatalf("logs of %s: %v", name, err)
	}
	if phase != corev1.PodSucceeded && (len(mayFail) == 0 || !mayFail[0]) {
		t.Fatalf("pod %s %s; output:\n%s", name, phase, logs)
	}
	return strings.TrimSpace(string(logs))
}
