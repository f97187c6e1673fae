package localcluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// kubeCommands are built from k8s.io/kubernetes by the e2e/tools/kube module.
var kubeCommands = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl"}

// containerdCommands are built from containerd by the e2e/tools/containerd module.
var containerdCommands = []string{"containerd", "containerd-shim-runc-v2", "ctr"}

// binDirs are the directories holding the cluster's built binaries.
type binDirs struct {
	kube       string
	containerd string
	coredns    string
}

// Kubectl returns the path of the cached kubectl (built by Up).
func (c Config) Kubectl() string {
	c, _ = c.withDefaults()
	return filepath.Join(cachedBinDirs(c).kube, "kubectl")
}

// ctr returns the path of the cached ctr.
func (b binDirs) ctr() string { return filepath.Join(b.containerd, "ctr") }

// cachedBinDirs returns where the binaries are cached, without building them.
func cachedBinDirs(cfg Config) binDirs {
	return binDirs{
		kube:       filepath.Join(cfg.CacheDir, "kube-"+KubeVersion, "bin"),
		containerd: filepath.Join(cfg.CacheDir, "containerd-"+ContainerdVersion, "bin"),
		coredns:    filepath.Join(cfg.CacheDir, "coredns-"+CoreDNSVersion, "bin"),
	}
}

// ensureBinaries builds whatever is not cached yet and returns where everything is.
// A cold build takes 30 to 40 minutes on two cores (Kubernetes about 20 of them); a warm one is free.
func ensureBinaries(ctx context.Context, cfg Config) (binDirs, error) {
	dirs := cachedBinDirs(cfg)
	v := strings.TrimPrefix(KubeVersion, "v")
	major, minor, _ := strings.Cut(v, ".")
	minor, _, _ = strings.Cut(minor, ".")
	kubeLD := strings.Join([]string{
		"-s -w",
		"-X k8s.io/component-base/version.gitVersion=" + KubeVersion,
		"-X k8s.io/component-base/version.gitMajor=" + major,
		"-X k8s.io/component-base/version.gitMinor=" + minor,
		"-X k8s.io/component-base/version.gitTreeState=clean",
		"-X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z",
		"-X k8s.io/client-go/pkg/version.gitVersion=" + KubeVersion,
	}, " ")
	builds := []struct {
		what   string
		module string
		out    string
		tags   string
		ld     string
		pkgs   []string
	}{
		{"Kubernetes " + KubeVersion, "kube", dirs.kube, "", kubeLD, prefixed("k8s.io/kubernetes/cmd/", kubeCommands)},
		{"containerd " + ContainerdVersion, "containerd", dirs.containerd, "no_btrfs", "-s -w -X github.com/containerd/containerd/v2/version.Version=" + ContainerdVersion,
			prefixed("github.com/containerd/containerd/v2/cmd/", containerdCommands)},
		{"CoreDNS " + CoreDNSVersion, "coredns", dirs.coredns, "", "-s -w", []string{"."}},
	}
	for _, b := range builds {
		marker := filepath.Join(b.out, ".complete")
		if _, err := os.Stat(marker); err == nil {
			cfg.Log.Info("using cached binaries", "what", b.what, "dir", b.out)
			continue
		}
		cfg.Log.Info("building (cached afterwards; Kubernetes takes ~20 min cold on 2 cores)", "what", b.what, "dir", b.out)
		start := time.Now()
		if err := os.MkdirAll(b.out, 0o755); err != nil {
			return dirs, fmt.Errorf("create %s: %w", b.out, err)
		}
		out := b.out + string(filepath.Separator)
		if b.module == "coredns" {
			out = filepath.Join(b.out, "coredns")
		}
		args := []string{"build", "-trimpath", "-ldflags", b.ld, "-o", out}
		if b.tags != "" {
			args = append(args, "-tags", b.tags)
		}
		args = append(args, b.pkgs...)
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = filepath.Join(cfg.RepoDir, "e2e", "tools", b.module)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Stdout, cmd.Stderr = cfg.Stdout, cfg.Stdout
		if err := cmd.Run(); err != nil {
			return dirs, fmt.Errorf("build %s in %s: %w", b.what, cmd.Dir, err)
		}
		if err := os.WriteFile(marker, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
			return dirs, fmt.Errorf("mark %s complete: %w", b.out, err)
		}
		cfg.Log.Info("built", "what", b.what, "took", time.Since(start).Round(time.Second))
	}
	return dirs, nil
}

func prefixed(prefix string, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = prefix + n
	}
	return out
}
