//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshctl/meshctl/e2e/localcluster"
)

// cluster is the cluster every test runs against, set up by TestMain.
var cluster struct {
	cfg    *rest.Config
	client kubernetes.Interface
	local  localcluster.Config
}

// TestMain refuses to run the suite against an unhealthy cluster, and says
// why with the end of every component's log.
func TestMain(m *testing.M) {
	repo, err := filepath.Abs("..")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(2)
	}
	cluster.local = localcluster.Config{RepoDir: repo}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	err = localcluster.Healthy(ctx, cluster.local)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: the local cluster is not healthy: %v\n(start it with `make cluster-up`)\n\n%s",
			err, localcluster.Diagnose(cluster.local, 40))
		os.Exit(2)
	}
	if err := connect(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(2)
	}
	code := m.Run()
	if err := writeReport(repo); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		code = 1
	}
	os.Exit(code)
}

// connect (re)makes the clients from the cluster's kubeconfig; a cluster that
// was started again has new certificates.
func connect() error {
	cfg, err := clientcmd.BuildConfigFromFlags("", cluster.local.Kubeconfig())
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	cluster.cfg, cluster.client = cfg, client
	return nil
}

// clusterCrashTest skips t unless E2E_CLUSTER_CRASH=1. A test that kills the
// whole cluster leaves a new, empty one behind (no images, nothing deployed),
// so `make e2e` runs it alone, after everything else.
func clusterCrashTest(t *testing.T) {
	t.Helper()
	if os.Getenv("E2E_CLUSTER_CRASH") != "1" {
		t.Skip("kills the whole cluster: `make e2e` runs it last, alone, with E2E_CLUSTER_CRASH=1")
	}
}
