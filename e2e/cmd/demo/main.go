// Command demo puts the demo application on the local cluster and shows it
// working: `make demo` runs it after bringing the cluster up and loading the
// images. It prints the pods and what the load generator sees.
package main

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshctl/meshctl/internal/kubeapply"
)

//go:embed demo.yaml
var manifests []byte

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	kubeconfig := flag.String("kubeconfig", ".cluster/kubeconfig", "kubeconfig of the cluster")
	flag.Parse()
	err := run(ctx, *kubeconfig, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, kubeconfig string, out io.Writer) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	objs, err := kubeapply.Decode(manifests)
	if err != nil {
		return err
	}
	applier, err := kubeapply.New(cfg, "meshctl-demo")
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "==> deploying the demo app (namespace demo)")
	if err := applier.Apply(ctx, objs); err != nil {
		return err
	}
	fmt.Fprintln(out, "==> waiting for its pods to be ready")
	if err := waitPodsReady(ctx, cs, "demo", 4, 2*time.Minute); err != nil {
		return err
	}
	pods, err := cs.CoreV1().Pods("demo").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POD\tIP\tNODE\tPHASE")
	var loadPod string
	for _, p := range pods.Items {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Name, p.Status.PodIP, p.Spec.NodeName, p.Status.Phase)
		if p.Labels["app"] == "load" && p.DeletionTimestamp == nil {
			loadPod = p.Name
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(out, "==> what the load generator sees (20 requests/s over one keep-alive connection)")
	line, err := waitLoadReport(ctx, cs, loadPod, 30*time.Second)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, line)
	fmt.Fprintln(out, `Without a mesh, kube-proxy balances connections, not requests: one keep-alive
client sends everything to one replica. (Next: meshctl install and inject.)`)
	return nil
}

// waitPodsReady waits until n pods of the namespace are Running and Ready.
func waitPodsReady(ctx context.Context, cs kubernetes.Interface, ns string, n int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		ready := 0
		if err == nil {
			for _, p := range pods.Items {
				for _, c := range p.Status.Conditions {
					if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && p.DeletionTimestamp == nil {
						ready++
					}
				}
			}
		}
		if ready >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("only %d of %d pods ready in %s after %s", ready, n, ns, timeout)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// waitLoadReport returns the first summary line the load generator prints.
func waitLoadReport(ctx context.Context, cs kubernetes.Interface, pod string, timeout time.Duration) (string, error) {
	if pod == "" {
		return "", errors.New("no load generator pod")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		logs, err := cs.CoreV1().Pods("demo").GetLogs(pod, &corev1.PodLogOptions{}).DoRaw(ctx)
		if err == nil {
			s := bufio.NewScanner(bytes.NewReader(logs))
			var last string
			for s.Scan() {
				if strings.HasPrefix(s.Text(), "{") {
					last = s.Text()
				}
			}
			if last != "" {
				return last, nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no report from the load generator %s after %s", pod, timeout)
		case <-time.After(time.Second):
		}
	}
}
