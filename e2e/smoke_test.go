//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestClusterServesPodsDNSServicesAndAPI deploys a two-replica app behind a
// Service and checks, from inside another pod, that cluster DNS resolves the
// Service, that the ClusterIP balances new connections over both replicas,
// and that the pod's ServiceAccount token authenticates it to the API server.
func TestClusterServesPodsDNSServicesAndAPI(t *testing.T) {
	ns := newNamespace(t, "smoke")
	ctx := context.Background()
	if _, err := cluster.client.AppsV1().Deployments(ns).Create(ctx, webDeployment("web", 2), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc, err := cluster.client.CoreV1().Services(ns).Create(ctx, serviceFor("web"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, ns, "web", 2*time.Minute)
	// Ready pods are in the EndpointSlice before kube-proxy has written
	// them into its rules; on a busy node (a CI run, right after other
	// tests' teardown) every request once went to the one replica it had.
	waitServiceProgrammed(t, ns, "web", "http", 2)
	pods, err := cluster.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, p := range pods.Items {
		want = append(want, p.Name)
	}

	host := fmt.Sprintf("web.%s.svc.cluster.local", ns)
	out := runToCompletion(t, ns, "checker", []string{
		"check", "--resolve", host, "--get", "http://" + host + "/", "--requests", "40", "--apiserver",
	}, 2*time.Minute)
	var report struct {
		Resolved      []string       `json:"resolved"`
		Backends      map[string]int `json:"backends"`
		APIServerUser string         `json:"apiserver_user"`
	}
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("checker output %q: %v", out, err)
	}
	if !slices.Equal(report.Resolved, []string{svc.Spec.ClusterIP}) {
		t.Errorf("%s resolved to %v, want the ClusterIP [%s]", host, report.Resolved, svc.Spec.ClusterIP)
	}
	for _, pod := range want {
		if report.Backends[pod] == 0 {
			t.Errorf("replica %s got no request through the ClusterIP; backends: %v", pod, report.Backends)
		}
	}
	if len(report.Backends) != len(want) {
		t.Errorf("answers came from %v, want exactly the replicas %v", report.Backends, want)
	}
	if wantUser := "system:serviceaccount:" + ns + ":default"; report.APIServerUser != wantUser {
		t.Errorf("API server saw the pod as %q, want %q", report.APIServerUser, wantUser)
	}
}
