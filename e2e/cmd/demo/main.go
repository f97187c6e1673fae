// Command demo installs the mesh and a meshed demo application on the local
// cluster and shows it working: `make demo` runs it after bringing the
// cluster up and loading the images. It prints the pods, what the load
// generator sees, `meshctl check`, `meshctl stat` and `meshctl edges`.
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
	"os/exec"
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
	meshctl := flag.String("meshctl", "bin/meshctl", "the meshctl binary")
	anchor := flag.String("trust-anchor-file", ".cluster/trust-anchor.pem", "where meshctl install keeps the mesh's trust anchor")
	flag.Parse()
	err := run(ctx, *kubeconfig, cli{bin: *meshctl, kubeconfig: *kubeconfig}, *anchor, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// cli runs meshctl against the cluster.
type cli struct{ bin, kubeconfig string }

func (c cli) run(ctx context.Context, out io.Writer, args ...string) error {
	fmt.Fprintf(out, "==> meshctl %s\n", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, c.bin, append(args, "--kubeconfig", c.kubeconfig)...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("meshctl %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

func run(ctx context.Context, kubeconfig string, meshctl cli, anchorFile string, out io.Writer) error {
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
	if err := meshctl.run(ctx, out, "install", "--image-pull-policy", "Never", "--trust-anchor-file", anchorFile); err != nil {
		return err
	}
	fmt.Fprintln(out, "==> deploying the demo app, meshed (namespace demo)")
	if err := applier.Apply(ctx, objs); err != nil {
		return err
	}
	fmt.Fprintln(out, "==> waiting for its pods to be ready")
	if err := waitPodsReady(ctx, cs, "demo", 8, 3*time.Minute); err != nil {
		return err
	}
	pods, err := cs.CoreV1().Pods("demo").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POD\tIP\tPHASE\tPROXY")
	var loadPod string
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		proxy := "-"
		if v := p.Labels["meshctl.io/proxy-version"]; v != "" {
			proxy = v
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Name, p.Status.PodIP, p.Status.Phase, proxy)
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
	fmt.Fprintln(out, `The proxies balance requests, not connections: the one keep-alive client's
requests are spread over the web replicas (the quickest get more), and every hop (load → web → api over HTTP/1,
web → greeter over gRPC) is mutual TLS between the pods' proxies.`)
	if err := meshctl.run(ctx, out, "check", "--proxy", "-n", "demo", "--timeout", "2m"); err != nil {
		return err
	}
	if err := meshctl.run(ctx, out, "stat", "deploy", "-n", "demo", "-t", "10s"); err != nil {
		return err
	}
	if err := meshctl.run(ctx, out, "edges", "deploy", "-n", "demo"); err != nil {
		return err
	}
	fmt.Fprintf(out, `==> see it in a browser: the topology, golden metrics, identity and live requests
    bin/meshctl dashboard -n demo --kubeconfig %s
(it opens your browser, or prints the address to open; Ctrl-C stops it)
==> the mesh's trust anchor key is in %s (never in the cluster); rotate the issuer with it:
    bin/meshctl identity rotate-issuer --trust-anchor-file %s --kubeconfig %s
`, kubeconfig, anchorFile, anchorFile, kubeconfig)
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

// waitLoadReport returns a summary line the load generator printed after
// the call: one covering only time when every pod was ready.
func waitLoadReport(ctx context.Context, cs kubernetes.Interface, pod string, timeout time.Duration) (string, error) {
	if pod == "" {
		return "", errors.New("no load generator pod")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	before := -1
	for {
		logs, err := cs.CoreV1().Pods("demo").GetLogs(pod, &corev1.PodLogOptions{}).DoRaw(ctx)
		if err == nil {
			s := bufio.NewScanner(bytes.NewReader(logs))
			var last string
			n := 0
			for s.Scan() {
				if strings.HasPrefix(s.Text(), "{") {
					last = s.Text()
					n++
				}
			}
			if before < 0 {
				before = n // the reports so far may cover start-up
			} else if n >= before+2 {
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
