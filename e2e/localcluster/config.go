package localcluster

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/meshctl/meshctl/internal/meshnames"
)

// The cluster's fixed network plan. Nothing depends on the machine's own
// interfaces: the node address sits on a bridge with no ports (this kernel has
// no dummy interfaces), which works as a dummy does.
const (
	NodeName     = "meshctl-node"
	NodeIP       = "10.199.0.1"
	nodeLink     = "mesh-node0"
	cniBridge    = "mesh-cni0"
	PodCIDR      = "10.244.0.0/24"
	clusterCIDR  = "10.244.0.0/16"
	ServiceCIDR  = "10.96.0.0/16"
	APIServiceIP = "10.96.0.1"
	DNSServiceIP = "10.96.0.10"
	// ClusterDomain is the DNS suffix of Services and Pods.
	ClusterDomain = meshnames.ClusterDomain
	apiPort       = 6443
)

// Versions of what the cluster runs. The Go modules under e2e/tools pin the
// same versions; the cache directories are keyed by them.
const (
	KubeVersion       = "v1.37.2"
	ContainerdVersion = "v2.4.2"
	CoreDNSVersion    = "v1.15.0"
	// PauseImage is the sandbox image containerd starts for every pod.
	PauseImage = "registry.k8s.io/pause:3.10"
	// CoreDNSImage is the image of the cluster DNS Deployment.
	CoreDNSImage = "meshctl/coredns:" + CoreDNSVersion
)

// Config says where the cluster's files go. The zero value works when the
// current directory is the repository root.
type Config struct {
	// RepoDir is the repository root, holding e2e/tools. Default: the current directory.
	RepoDir string
	// OutDir receives the kubeconfig and the components' logs. Default: RepoDir/.cluster.
	OutDir string
	// CacheDir holds the built Kubernetes, containerd and CoreDNS binaries, keyed by
	// version, so they survive the repository and the cluster.
	// Default: $XDG_CACHE_HOME/meshctl, else ~/.cache/meshctl.
	CacheDir string
	// StateDir holds persistent cluster state (PKI, etcd, kubelet, containerd).
	// Default: /var/lib/meshctl-cluster. Removed entirely by Down.
	StateDir string
	// RunDir holds runtime state (sockets, PIDs, containerd state). Default:
	// /run/meshctl-cluster. Removed entirely by Down.
	RunDir string
	// Log receives progress. Default: discard.
	Log *slog.Logger
	// Stdout receives the output of the builds and package installs, so that long
	// steps show progress. Default: discard.
	Stdout io.Writer
}

// withDefaults returns c with every empty field set to its default.
func (c Config) withDefaults() (Config, error) {
	if c.RepoDir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return c, fmt.Errorf("find repository: %w", err)
		}
		c.RepoDir = wd
	}
	abs, err := filepath.Abs(c.RepoDir)
	if err != nil {
		return c, fmt.Errorf("find repository: %w", err)
	}
	c.RepoDir = abs
	if c.OutDir == "" {
		c.OutDir = filepath.Join(c.RepoDir, ".cluster")
	}
	if c.CacheDir == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return c, fmt.Errorf("find cache directory: %w", err)
			}
			base = filepath.Join(home, ".cache")
		}
		c.CacheDir = filepath.Join(base, "meshctl")
	}
	if c.StateDir == "" {
		c.StateDir = "/var/lib/meshctl-cluster"
	}
	if c.RunDir == "" {
		c.RunDir = "/run/meshctl-cluster"
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Stdout == nil {
		c.Stdout = io.Discard
	}
	return c, nil
}

// Validate reports a configuration the cluster cannot run with.
func (c Config) Validate() error {
	c, err := c.withDefaults()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(c.RepoDir, "e2e", "tools", "kube", "go.mod")); err != nil {
		return fmt.Errorf("%s is not the meshctl repository (no e2e/tools/kube/go.mod): %w", c.RepoDir, err)
	}
	for _, d := range []string{c.StateDir, c.RunDir} {
		if !filepath.IsAbs(d) || filepath.Clean(d) == "/" {
			return fmt.Errorf("state directory %q must be an absolute path below /", d)
		}
	}
	if os.Geteuid() != 0 {
		return errors.New("the local cluster needs root (it creates network interfaces, mounts and cgroups)")
	}
	return nil
}

// paths names every file and directory the cluster uses.
type paths struct {
	cfg Config
}

func (p paths) pki(name string) string    { return filepath.Join(p.cfg.StateDir, "pki", name) }
func (p paths) etcdData() string          { return filepath.Join(p.cfg.StateDir, "etcd") }
func (p paths) kubeletRoot() string       { return filepath.Join(p.cfg.StateDir, "kubelet") }
func (p paths) podLogs() string           { return filepath.Join(p.cfg.StateDir, "pod-logs") }
func (p paths) containerdRoot() string    { return filepath.Join(p.cfg.StateDir, "containerd") }
func (p paths) cniConfDir() string        { return filepath.Join(p.cfg.StateDir, "cni", "net.d") }
func (p paths) cniDataDir() string        { return filepath.Join(p.cfg.StateDir, "cni", "networks") }
func (p paths) config(name string) string { return filepath.Join(p.cfg.StateDir, "config", name) }
func (p paths) containerdState() string   { return filepath.Join(p.cfg.RunDir, "containerd") }
func (p paths) containerdSocket() string {
	return filepath.Join(p.cfg.RunDir, "containerd", "containerd.sock")
}
func (p paths) pidFile(name string) string { return filepath.Join(p.cfg.RunDir, "pids", name+".pid") }
func (p paths) pidDir() string             { return filepath.Join(p.cfg.RunDir, "pids") }
func (p paths) logFile(name string) string { return filepath.Join(p.cfg.OutDir, "logs", name+".log") }
func (p paths) logDir() string             { return filepath.Join(p.cfg.OutDir, "logs") }
func (p paths) kubeconfig(name string) string {
	return filepath.Join(p.cfg.StateDir, "kubeconfig", name+".kubeconfig")
}

// TrustAnchorFile is where the demo keeps its mesh's trust anchor (removed
// with the cluster).
func (c Config) TrustAnchorFile() string {
	c, _ = c.withDefaults()
	return filepath.Join(c.OutDir, "trust-anchor.pem")
}

// Kubeconfig is the administrator kubeconfig that Up writes for users and tests.
func (c Config) Kubeconfig() string {
	c, _ = c.withDefaults()
	return filepath.Join(c.OutDir, "kubeconfig")
}
