//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshctl/meshctl/identity/ca"
)

// getThroughPod sends GET path to a pod's port through the API server's
// pods/proxy and returns the status the pod answered with (0 and the error
// when there was no answer).
func getThroughPod(ctx context.Context, ns, pod, port, path string) (int, string, error) {
	res := cluster.client.CoreV1().RESTClient().Get().Namespace(ns).Resource("pods").
		Name(pod + ":" + port).SubResource("proxy").Suffix(path).Do(ctx)
	var status int
	res.StatusCode(&status)
	body, err := res.Raw()
	return status, string(body), err
}

// TestSecurityOnTheCluster runs the security scenarios on real pods: a port
// the application binds to loopback only stays private; a destination the
// controller has not described while it is away is never reached in
// plaintext.
func TestSecurityOnTheCluster(t *testing.T) {
	anchor := mustCA(t)(ca.NewTrustAnchor("cluster.local", 24*time.Hour))
	issuer := mustCA(t)(ca.NewIssuer(anchor, "cluster.local", 12*time.Hour))
	deployControlPlane(t, "24h", issuer, anchor)
	ns := meshedNamespace(t, "sec")
	applyTemplate(t, "security.yaml", map[string]any{"Namespace": ns})
	for _, name := range []string{"server", "front", "late"} {
		waitReady(t, ns, name, 3*time.Minute)
	}

	t.Run("a port bound to loopback only is not reachable from other pods", func(t *testing.T) {
		open := runToCompletion(t, ns, "get-open", []string{"check", "--get", "http://server." + ns + ".svc.cluster.local/", "--requests", "3"}, 2*time.Minute)
		private := runToCompletion(t, ns, "get-private", []string{"check", "--get", "http://server." + ns + ".svc.cluster.local:9090/", "--requests", "3"}, 2*time.Minute, true)
		t.Logf("the open port: %s\nthe loopback-only port: %s", open, private)
		if !strings.Contains(private, `"errors"`) || strings.Contains(private, `"errors":null`) {
			t.Errorf("a meshed pod reached the server's loopback-only port 9090: %s", private)
		}
	})

	t.Run("a new destination while the controller is away fails instead of going out in plaintext", func(t *testing.T) {
		ctx := context.Background()
		front := podsOf(t, ns, "app=front")[0]
		scale(t, "meshctl", "mesh-controller", 0)
		eventually(t, "the controller gone", 2*time.Minute, func(ctx context.Context) error {
			pods, err := cluster.client.CoreV1().Pods("meshctl").List(ctx, metav1.ListOptions{LabelSelector: controllerSelector})
			if err != nil || len(pods.Items) > 0 {
				return fmt.Errorf("%d controller pods (%v)", len(pods.Items), err)
			}
			return nil
		})
		// The front has never called late: its proxy must ask the controller
		// first, and the controller is not there.
		statuses := map[int]int{}
		for range 3 {
			status, _, _ := getThroughPod(ctx, ns, front, "8080", "/")
			statuses[status]++
		}
		// The kubelet's probes reach late's proxy in plaintext all along:
		// what counts is the front's side, where plaintext would leave.
		fm, err := proxyMetrics(ctx, ns, front)
		if err != nil {
			t.Fatal(err)
		}
		plain := sumMatching(fm, "plaintext_connections_total{")
		t.Logf("with the controller away, the front answered %v; its proxy made %v plaintext connections into the cluster", statuses, plain)
		if statuses[200] > 0 || plain > 0 {
			t.Errorf("a destination the controller never described was reached (%v; %v plaintext connections)", statuses, plain)
		}
		if n := sumMatching(fm, "balancer_unavailable_total{", "reason=no_endpoints"); n == 0 {
			t.Errorf("the front's proxy did not count its refusals as no_endpoints")
		}

		scale(t, "meshctl", "mesh-controller", 1)
		eventually(t, "the front reaching late over mutual TLS once the controller is back", 3*time.Minute, func(ctx context.Context) error {
			status, body, err := getThroughPod(ctx, ns, front, "8080", "/")
			if status != 200 {
				return fmt.Errorf("front answered %d %q (%v)", status, body, err)
			}
			return nil
		})
		fm, err = proxyMetrics(ctx, ns, front)
		if err != nil {
			t.Fatal(err)
		}
		if plain := sumMatching(fm, "plaintext_connections_total{"); plain > 0 {
			t.Errorf("the front's proxy made %v plaintext connections into the cluster", plain)
		}
		if meshed := sumMatching(fm, "response_total{", "direction=outbound", "status_code=200", "tls=true", "server_id=spiffe://cluster.local/ns/"+ns+"/sa/default"); meshed == 0 {
			t.Error("the front's proxy reached late, but not over mutual TLS")
		}
	})
}
