package localcluster

import (
	"context"
	"errors"
	"fmt"
	"github.com/meshctl/meshctl/internal/mountinfo"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshctl/meshctl/internal/kubeapply"
)

// Up starts the cluster and returns once the node is Ready and cluster DNS
// answers. A cluster that is already up and healthy is left as it is, except
// for an API server running with other flags than this version gives it,
// which is restarted in place (see refreshAPIServer); any other leftover (a
// crashed or half-stopped cluster) is cleaned away first.
func Up(ctx context.Context, cfg Config) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	p := paths{cfg}
	started := time.Now()
	if err := Healthy(ctx, cfg); err == nil {
		if err := refreshAPIServer(ctx, p, cachedBinDirs(cfg), cfg.Log); err != nil {
			return fmt.Errorf("bring the running API server up to date: %w", err)
		}
		cfg.Log.Info("the local cluster is already up", "kubeconfig", cfg.Kubeconfig())
		return nil
	}
	if len(Traces(ctx, cfg)) > 0 {
		cfg.Log.Info("cleaning up what an earlier cluster left behind")
		if err := Down(ctx, cfg); err != nil {
			return fmt.Errorf("clean up the earlier cluster: %w", err)
		}
	}
	if err := ensurePackages(ctx, cfg); err != nil {
		return err
	}
	bins, err := ensureBinaries(ctx, cfg)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(p.logDir()); err != nil {
		return fmt.Errorf("clear old logs: %w", err)
	}
	for _, d := range []string{cfg.StateDir, cfg.RunDir, cfg.OutDir, p.logDir(), p.podLogs(), p.kubeletRoot()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	if err := joinTrackingCgroup(); err != nil {
		return err
	}
	if err := writePKI(p); err != nil {
		return err
	}
	if err := writeConfigs(p); err != nil {
		return err
	}
	if err := setUpNetwork(ctx, p); err != nil {
		return err
	}
	comps := map[string]component{}
	for _, c := range components(p, bins) {
		comps[c.name] = c
	}
	start := func(names ...string) error {
		for _, n := range names {
			id, err := startComponent(p, comps[n])
			if err != nil {
				return err
			}
			cfg.Log.Info("started", "name", n, "pid", id.pid)
		}
		return nil
	}
	restCfg, err := clientcmd.BuildConfigFromFlags("", p.kubeconfig("admin"))
	if err != nil {
		return fmt.Errorf("load admin kubeconfig: %w", err)
	}
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}

	if err := start("etcd"); err != nil {
		return err
	}
	if err := waitFor(ctx, p, "etcd", time.Minute, []string{"etcd"}, httpOK(fmt.Sprintf("http://127.0.0.1:%d/health", etcdPort))); err != nil {
		return err
	}
	if err := start("kube-apiserver"); err != nil {
		return err
	}
	if err := waitFor(ctx, p, "the API server", 2*time.Minute, []string{"etcd", "kube-apiserver"}, apiReady(cs)); err != nil {
		return err
	}
	if err := copyFile(p.kubeconfig("admin"), cfg.Kubeconfig(), 0o600); err != nil {
		return err
	}
	if err := start("kube-controller-manager", "kube-scheduler", "containerd"); err != nil {
		return err
	}
	if err := waitFor(ctx, p, "containerd", time.Minute, []string{"containerd"}, func(ctx context.Context) error {
		if !fileExists(p.containerdSocket()) {
			return errors.New("no socket yet")
		}
		return run(ctx, bins.ctr(), "--address", p.containerdSocket(), "version")
	}); err != nil {
		return err
	}
	images, err := buildSystemImages(ctx, p, bins)
	if err != nil {
		return err
	}
	if err := importImages(ctx, p, bins, images); err != nil {
		return err
	}
	if err := start("kubelet"); err != nil {
		return err
	}
	all := []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "containerd", "kubelet"}
	if err := waitFor(ctx, p, "the node to be Ready", 3*time.Minute, all, nodeReady(cs)); err != nil {
		return err
	}
	if err := start("kube-proxy"); err != nil {
		return err
	}
	all = append(all, "kube-proxy")
	if err := waitFor(ctx, p, "kube-proxy", time.Minute, all, httpOK("http://127.0.0.1:10256/healthz")); err != nil {
		return err
	}
	manifests, err := renderCoreDNS()
	if err != nil {
		return err
	}
	objs, err := kubeapply.Decode(manifests)
	if err != nil {
		return err
	}
	applier, err := kubeapply.New(restCfg, "meshctl-localcluster")
	if err != nil {
		return err
	}
	// The API server creates its default RBAC objects shortly after it is
	// ready; retry until the apply goes through.
	if err := waitFor(ctx, p, "the CoreDNS objects to apply", time.Minute, all, func(ctx context.Context) error {
		return applier.Apply(ctx, objs)
	}); err != nil {
		return err
	}
	if err := waitFor(ctx, p, "cluster DNS to answer", 3*time.Minute, all, dnsAnswers); err != nil {
		return err
	}
	cfg.Log.Info("the local cluster is up", "took", time.Since(started).Round(time.Second), "kubeconfig", cfg.Kubeconfig())
	return nil
}

// LoadImages imports image tarballs into the running cluster's containerd.
func LoadImages(ctx context.Context, cfg Config, tarballs []string) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	p := paths{cfg}
	if _, ok := runningComponents(p)["containerd"]; !ok {
		return fmt.Errorf("%w: containerd is not running (run make cluster-up)", errNotRunning)
	}
	for _, t := range tarballs {
		cfg.Log.Info("importing image", "file", t)
	}
	return importImages(ctx, p, cachedBinDirs(cfg), tarballs)
}

// Healthy reports whether every component is running, the API server is
// ready and the node is Ready.
func Healthy(ctx context.Context, cfg Config) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	p := paths{cfg}
	running := runningComponents(p)
	var missing []string
	for _, c := range components(p, cachedBinDirs(cfg)) {
		if _, ok := running[c.name]; !ok {
			missing = append(missing, c.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: not running: %s", errNotRunning, strings.Join(missing, ", "))
	}
	restCfg, err := clientcmd.BuildConfigFromFlags("", p.kubeconfig("admin"))
	if err != nil {
		return fmt.Errorf("%w: %v", errNotRunning, err)
	}
	restCfg.Timeout = 5 * time.Second
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	if err := apiReady(cs)(ctx); err != nil {
		return fmt.Errorf("%w: %v", errNotRunning, err)
	}
	if err := nodeReady(cs)(ctx); err != nil {
		return fmt.Errorf("%w: %v", errNotRunning, err)
	}
	return nil
}

// Traces lists what of a cluster is still on this machine: processes in its
// cgroups, mounts and directories under its state directories, its network
// interfaces and its iptables chains. It is empty after Down.
func Traces(ctx context.Context, cfg Config) []string {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	if cgs, _ := clusterCgroups(); len(cgs) > 0 {
		out = append(out, fmt.Sprintf("cgroups %v (processes %v)", cgs, cgroupPIDs(cgs)))
	}
	if mounts, err := mountinfo.Read(); err == nil {
		for _, m := range mounts {
			for _, d := range []string{cfg.StateDir, cfg.RunDir} {
				if m.Point == d || strings.HasPrefix(m.Point, d+"/") {
					out = append(out, "mount "+m.Point)
				}
			}
		}
	}
	for _, d := range []string{cfg.StateDir, cfg.RunDir} {
		if fileExists(d) {
			out = append(out, "directory "+d)
		}
	}
	for _, l := range []string{nodeLink, cniBridge} {
		if fileExists("/sys/class/net/" + l) {
			out = append(out, "network interface "+l)
		}
	}
	for _, family := range []string{"iptables-save", "ip6tables-save"} {
		if rules, err := exec.CommandContext(ctx, family).Output(); err == nil {
			if _, changed := filterIPTablesSave(rules); changed {
				out = append(out, family+" shows KUBE-* or CNI-* chains")
			}
		}
	}
	return out
}

// stopOrder stops the node first, so nothing restarts what is being stopped.
var stopOrder = []string{"kube-proxy", "kubelet", "kube-scheduler", "kube-controller-manager", "containerd", "kube-apiserver", "etcd"}

// Down stops the cluster and removes every trace of it: processes (recorded
// ones by PID, then whatever is left in the cluster's cgroups), mounts,
// network interfaces, iptables and nftables rules, changed sysctls and state
// directories. The component logs under OutDir/logs are kept for post-mortems.
// Down on a stopped cluster does nothing and succeeds.
func Down(ctx context.Context, cfg Config) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	p := paths{cfg}
	running := runningComponents(p)
	for _, name := range stopOrder {
		id, ok := running[name]
		if !ok {
			continue
		}
		killed, err := stopProcess(id, 15*time.Second)
		if err != nil {
			return fmt.Errorf("stop %s: %w", name, err)
		}
		cfg.Log.Info("stopped", "name", name, "pid", id.pid, "killed", killed)
	}
	for name, id := range running {
		if !slices.Contains(stopOrder, name) {
			if _, err := stopProcess(id, 5*time.Second); err != nil {
				return fmt.Errorf("stop %s: %w", name, err)
			}
		}
	}
	n, err := killCgroups(30 * time.Second)
	if n > 0 {
		cfg.Log.Info("killed leftover processes (shims, containers)", "count", n)
	}
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	if n, err := unmountUnder(cfg.StateDir, cfg.RunDir); err != nil {
		errs = append(errs, err)
	} else if n > 0 {
		cfg.Log.Info("unmounted", "count", n)
	}
	if err := removeLinks(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := removeIPTablesRules(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := removeNFTables(); err != nil {
		errs = append(errs, err)
	}
	if err := restoreSysctls(p); err != nil {
		errs = append(errs, err)
	}
	if err := removeContainerLogLinks(p); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	// Never remove a directory tree that still has something mounted in it:
	// RemoveAll would descend into the mount.
	if mounts, err := mountinfo.Read(); err == nil {
		for _, m := range mounts {
			for _, d := range []string{cfg.StateDir, cfg.RunDir} {
				if m.Point == d || strings.HasPrefix(m.Point, d+"/") {
					return fmt.Errorf("%s is still mounted; not removing %s", m.Point, d)
				}
			}
		}
	}
	for _, d := range []string{cfg.StateDir, cfg.RunDir} {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("remove %s: %w", d, err)
		}
	}
	if err := os.Remove(cfg.Kubeconfig()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove kubeconfig: %w", err)
	}
	// The demo's mesh keeps its trust anchor here; it belongs to this cluster.
	if err := os.Remove(cfg.TrustAnchorFile()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the demo's trust anchor: %w", err)
	}
	if left := Traces(ctx, cfg); len(left) > 0 {
		return fmt.Errorf("still on the machine after stopping: %s", strings.Join(left, "; "))
	}
	cfg.Log.Info("the local cluster is down")
	return nil
}

// removeContainerLogLinks removes the kubelet's symlinks in /var/log/containers
// that point into the cluster's pod logs, and the directory if that empties it.
func removeContainerLogLinks(p paths) error {
	const dir = "/var/log/containers"
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	left := 0
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		target, err := os.Readlink(path)
		if err == nil && strings.HasPrefix(target, p.podLogs()+"/") {
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("remove %s: %w", path, err)
			}
			continue
		}
		left++
	}
	if left == 0 {
		if err := os.Remove(dir); err != nil {
			return fmt.Errorf("remove %s: %w", dir, err)
		}
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("read %s: %w", src, err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(dst), err)
	}
	if err := os.WriteFile(dst, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", dst, err)
	}
	return nil
}
