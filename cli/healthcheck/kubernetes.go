package healthcheck

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshctl/meshctl/internal/meshnames"
)

// minMinor is the oldest Kubernetes minor version supported: native
// sidecars (init containers with restartPolicy Always) are on by default
// from 1.29.
const minMinor = 29

// KubernetesAPI checks the cluster can be used at all.
func KubernetesAPI() Category {
	return Category{Settled: true, Name: "kubernetes-api", Checks: []Check{
		{
			Name:  "can reach the Kubernetes API",
			Hint:  "check --kubeconfig/--context and that the cluster is up (kubectl get nodes)",
			Fatal: true,
			Run: func(ctx context.Context, env *Env) error {
				_, err := env.Client.Discovery().ServerVersion()
				return err
			},
		},
		{
			Name: fmt.Sprintf("Kubernetes is v1.%d or newer", minMinor),
			Hint: "upgrade the cluster: the proxy runs as a native sidecar",
			Run: func(ctx context.Context, env *Env) error {
				v, err := env.Client.Discovery().ServerVersion()
				if err != nil {
					return err
				}
				minor, err := strconv.Atoi(strings.TrimRight(v.Minor, "+"))
				if err != nil {
					return fmt.Errorf("cannot read the version %q", v.GitVersion)
				}
				if v.Major != "1" || minor < minMinor {
					return fmt.Errorf("the cluster runs %s", v.GitVersion)
				}
				return nil
			},
		},
		{
			Name: "native sidecars are available",
			Hint: "enable the SidecarContainers feature gate (on by default since v1.29)",
			Run: func(ctx context.Context, env *Env) error {
				always := corev1.ContainerRestartPolicyAlways
				pod := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{GenerateName: "meshctl-sidecar-probe-", Annotations: map[string]string{meshnames.InjectAnnotation: "disabled"}},
					Spec: corev1.PodSpec{
						InitContainers: []corev1.Container{{Name: "sidecar", Image: "meshctl/probe", RestartPolicy: &always}},
						Containers:     []corev1.Container{{Name: "main", Image: "meshctl/probe"}},
					},
				}
				got, err := env.Client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
				if apierrors.IsNotFound(err) {
					return Warnf("no default namespace to try a dry-run pod in")
				}
				if err != nil {
					return fmt.Errorf("a dry-run pod with a sidecar was refused: %w", err)
				}
				if rp := got.Spec.InitContainers[0].RestartPolicy; rp == nil || *rp != always {
					return fmt.Errorf("the API server dropped the init container's restartPolicy")
				}
				return nil
			},
		},
	}}
}
