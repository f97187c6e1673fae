//go:build e2e

package e2e

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshctl/meshctl/e2e/localcluster"
)

// TestClusterComesBackAfterEveryProcessIsKilled kills every process of the
// cluster with SIGKILL (daemons, shims, containers), then runs Up, which must
// clean what was left behind and bring a working cluster back; the smoke test
// then passes again. It leaves a new, empty cluster, so `make e2e` runs it
// last, alone (E2E_CLUSTER_CRASH=1).
func TestClusterComesBackAfterEveryProcessIsKilled(t *testing.T) {
	clusterCrashTest(t)
	n, err := localcluster.Crash()
	if err != nil {
		t.Fatal(err)
	}
	if n < 7 {
		t.Fatalf("killed %d processes; the cluster has at least 7 daemons", n)
	}
	ctx := context.Background()
	cfg := cluster.local
	cfg.Log = slog.New(slog.NewTextHandler(t.Output(), nil))
	eventually(t, "the crashed cluster to be reported unhealthy", 30*time.Second, func(ctx context.Context) error {
		if localcluster.Healthy(ctx, cfg) == nil {
			return errors.New("still healthy")
		}
		return nil
	})
	start := time.Now()
	if err := localcluster.Up(ctx, cfg); err != nil {
		t.Fatalf("Up after a crash: %v", err)
	}
	measure(t, "cluster.up_after_crash_s", time.Since(start).Seconds(), "s", "")
	if err := connect(); err != nil {
		t.Fatal(err)
	}
	images, _ := filepath.Glob(filepath.Join(cfg.RepoDir, "bin", "images", "*.tar"))
	if err := localcluster.LoadImages(ctx, cfg, images); err != nil {
		t.Fatal(err)
	}
	TestClusterServesPodsDNSServicesAndAPI(t)
}
