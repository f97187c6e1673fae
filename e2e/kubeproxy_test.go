//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshctl/meshctl/e2e/localcluster"
)

// A test that sends to a Service's ClusterIP through a proxy that knows
// nothing but that address (no discovery) depends on kube-proxy having
// written the Service's rules. After the scale test the node runs at 100 %
// CPU for a minute and kube-proxy lags; a keep-alive connection made while
// the rules are wrong carries every later request to the wrong place. These
// helpers wait for the rules and, when a test fails, show them.

// serviceRules reads the node's NAT table and returns, for the Service port
// ns/name:port, whether its ClusterIP rule is there and the addresses its
// DNAT rules send to.
func serviceRules(ctx context.Context, ns, name, port string) (clusterIP bool, dnat []string, err error) {
	out, err := exec.CommandContext(ctx, "iptables-save", "-t", "nat").Output()
	if err != nil {
		return false, nil, fmt.Errorf("iptables-save: %w", err)
	}
	comment := fmt.Sprintf("--comment \"%s/%s:%s", ns, name, port)
	for line := range strings.SplitSeq(string(out), "\n") {
		if !strings.Contains(line, comment) {
			continue
		}
		switch {
		case strings.Contains(line, comment+" cluster IP\""):
			clusterIP = true
		case strings.Contains(line, comment+"\"") && strings.Contains(line, "-j DNAT --to-destination "):
			_, to, _ := strings.Cut(line, "--to-destination ")
			dnat = append(dnat, strings.Fields(to)[0])
		}
	}
	slices.Sort(dnat)
	return clusterIP, dnat, nil
}

// readyEndpoints returns the ready addresses (ip:port) of the Service port
// ns/name:port from its EndpointSlices.
func readyEndpoints(ctx context.Context, ns, name, port string) ([]string, error) {
	list, err := cluster.client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + name})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range list.Items {
		for _, p := range s.Ports {
			if p.Name == nil || *p.Name != port || p.Port == nil {
				continue
			}
			for _, e := range s.Endpoints {
				if e.Conditions.Ready != nil && !*e.Conditions.Ready {
					continue
				}
				for _, a := range e.Addresses {
					out = append(out, net.JoinHostPort(a, strconv.Itoa(int(*p.Port))))
				}
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// waitServiceProgrammed waits until kube-proxy's rules for the Service port
// ns/name:port send its ClusterIP to exactly its ready endpoints, and at
// least want of them.
func waitServiceProgrammed(t *testing.T, ns, name, port string, want int) {
	t.Helper()
	start := time.Now()
	eventually(t, fmt.Sprintf("kube-proxy's rules for %s/%s:%s", ns, name, port), 2*time.Minute, func(ctx context.Context) error {
		eps, err := readyEndpoints(ctx, ns, name, port)
		if err != nil {
			return err
		}
		if len(eps) < want {
			return fmt.Errorf("%d ready endpoints, want %d", len(eps), want)
		}
		cip, dnat, err := serviceRules(ctx, ns, name, port)
		if err != nil {
			return err
		}
		if !cip || !slices.Equal(dnat, eps) {
			return fmt.Errorf("ClusterIP rule %v, DNAT to %v; endpoints %v", cip, dnat, eps)
		}
		return nil
	})
	t.Logf("kube-proxy had the rules for %s/%s:%s after %v", ns, name, port, time.Since(start).Round(time.Millisecond))
}

// explainServicePath logs what a request to the Service ns/name would meet
// on the way: kube-proxy's rules and its log, each endpoint's answer to a
// GET from the node, and which pods hold the endpoints' addresses now.
func explainServicePath(t *testing.T, ns, name, port string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if cip, dnat, err := serviceRules(ctx, ns, name, port); err != nil {
		t.Logf("kube-proxy rules: %v", err)
	} else {
		t.Logf("kube-proxy rules for %s/%s:%s now: ClusterIP rule %v, DNAT to %v", ns, name, port, cip, dnat)
	}
	t.Logf("kube-proxy's log:\n%s", localcluster.ComponentLog(cluster.local, "kube-proxy", 30))
	eps, err := readyEndpoints(ctx, ns, name, port)
	if err != nil {
		t.Logf("endpoints: %v", err)
	}
	targets := eps
	if svc, err := cluster.client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
		for _, p := range svc.Spec.Ports {
			if p.Name == port {
				targets = append(targets, net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(int(p.Port))))
			}
		}
	}
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for _, addr := range targets {
		t.Logf("GET http://%s/ from the node: %s", addr, describeGET(ctx, client, "http://"+addr+"/"))
	}
	for _, addr := range eps {
		ip, _, _ := net.SplitHostPort(addr)
		pods, err := cluster.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "status.podIP=" + ip})
		if err != nil {
			t.Logf("pods with %s: %v", ip, err)
			continue
		}
		var names []string
		for _, p := range pods.Items {
			names = append(names, p.Namespace+"/"+p.Name+" ("+string(p.Status.Phase)+")")
		}
		neigh, _ := exec.CommandContext(ctx, "ip", "neigh", "show", ip).CombinedOutput()
		t.Logf("%s is held by %v; neighbour entry %q", ip, names, strings.TrimSpace(string(neigh)))
	}
}

// describeGET says who answered a GET: status, Server header and the start
// of the body, or the error.
func describeGET(ctx context.Context, client *http.Client, url string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err.Error()
	}
	res, err := client.Do(req)
	if err != nil {
		return err.Error()
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 200))
	return fmt.Sprintf("%s, Server %q, body %q", res.Status, res.Header.Get("Server"), body)
}
