package localcluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// component is one long-running process of the cluster.
type component struct {
	name string
	path string
	args []string
	env  []string // added to the tool's own environment
}

// etcdPort is etcd's client port on loopback.
const etcdPort = 2379

// components returns every process of the cluster, in start order.
func components(p paths, bins binDirs) []component {
	pki := p.pki
	kc := p.kubeconfig
	withPath := func(dirs ...string) []string {
		return []string{"PATH=" + strings.Join(append(dirs, "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"), ":")}
	}
	return []component{
		{name: "etcd", path: "/usr/bin/etcd", args: []string{
			"--name=meshctl", "--data-dir=" + p.etcdData(),
			fmt.Sprintf("--listen-client-urls=http://127.0.0.1:%d", etcdPort),
			fmt.Sprintf("--advertise-client-urls=http://127.0.0.1:%d", etcdPort),
			"--listen-peer-urls=http://127.0.0.1:2380",
			"--initial-advertise-peer-urls=http://127.0.0.1:2380",
			"--initial-cluster=meshctl=http://127.0.0.1:2380",
			// The API server serves consistent lists and watches from its
			// cache once etcd says the cache is current; without progress
			// notifications a quiet resource waits (and times out) for that.
			"--experimental-watch-progress-notify-interval=5s",
		}},
		{name: "kube-apiserver", path: filepath.Join(bins.kube, "kube-apiserver"), args: []string{
			fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", etcdPort),
			"--bind-address=0.0.0.0", "--advertise-address=" + NodeIP, fmt.Sprintf("--secure-port=%d", apiPort),
			"--cert-dir=" + filepath.Join(p.cfg.StateDir, "apiserver"),
			"--tls-cert-file=" + pki("apiserver.crt"), "--tls-private-key-file=" + pki("apiserver.key"),
			"--client-ca-file=" + pki("ca.crt"),
			"--kubelet-client-certificate=" + pki("apiserver-kubelet-client.crt"),
			"--kubelet-client-key=" + pki("apiserver-kubelet-client.key"),
			"--kubelet-preferred-address-types=InternalIP",
			"--service-account-issuer=https://kubernetes.default.svc." + ClusterDomain,
			"--service-account-key-file=" + pki("sa.pub"),
			"--service-account-signing-key-file=" + pki("sa.key"),
			"--service-cluster-ip-range=" + ServiceCIDR,
			"--authorization-mode=Node,RBAC",
			"--enable-admission-plugins=NodeRestriction",
			"--allow-privileged=true",
			"--profiling=false",
			// The front proxy: aggregated APIs (the mesh's admin.meshctl.io)
			// get requests with this client certificate and the user in
			// X-Remote-* headers; the API server dials their Services'
			// endpoints directly.
			"--requestheader-client-ca-file=" + pki("front-proxy-ca.crt"),
			"--requestheader-allowed-names=" + FrontProxyClientName,
			"--requestheader-username-headers=X-Remote-User",
			"--requestheader-group-headers=X-Remote-Group",
			"--requestheader-extra-headers-prefix=X-Remote-Extra-",
			"--proxy-client-cert-file=" + pki("front-proxy-client.crt"),
			"--proxy-client-key-file=" + pki("front-proxy-client.key"),
			"--enable-aggregator-routing=true",
		}},
		{name: "kube-controller-manager", path: filepath.Join(bins.kube, "kube-controller-manager"), args: []string{
			"--kubeconfig=" + kc("controller-manager"),
			"--authentication-kubeconfig=" + kc("controller-manager"),
			"--authorization-kubeconfig=" + kc("controller-manager"),
			"--bind-address=127.0.0.1",
			"--cert-dir=" + filepath.Join(p.cfg.StateDir, "controller-manager"),
			"--service-account-private-key-file=" + pki("sa.key"),
			"--root-ca-file=" + pki("ca.crt"),
			"--cluster-signing-cert-file=" + pki("ca.crt"),
			"--cluster-signing-key-file=" + pki("ca.key"),
			"--service-cluster-ip-range=" + ServiceCIDR,
			"--use-service-account-credentials=true",
			"--leader-elect=false",
			"--controllers=*,-nodeipam",
			"--profiling=false",
		}},
		{name: "kube-scheduler", path: filepath.Join(bins.kube, "kube-scheduler"), args: []string{
			"--kubeconfig=" + kc("scheduler"),
			"--authentication-kubeconfig=" + kc("scheduler"),
			"--authorization-kubeconfig=" + kc("scheduler"),
			"--bind-address=127.0.0.1",
			"--cert-dir=" + filepath.Join(p.cfg.StateDir, "scheduler"),
			"--leader-elect=false",
			"--profiling=false",
		}},
		{name: "containerd", path: filepath.Join(bins.containerd, "containerd"),
			args: []string{"--config=" + p.config("containerd.toml")},
			env:  withPath(bins.containerd)},
		{name: "kubelet", path: filepath.Join(bins.kube, "kubelet"), args: []string{
			"--config=" + p.config("kubelet.yaml"),
			"--kubeconfig=" + kc("kubelet"),
			"--hostname-override=" + NodeName,
			"--node-ip=" + NodeIP,
			"--root-dir=" + p.kubeletRoot(),
			"--v=1",
		}, env: withPath()},
		{name: "kube-proxy", path: filepath.Join(bins.kube, "kube-proxy"),
			args: []string{"--config=" + p.config("kube-proxy.yaml"), "--v=1"},
			env:  withPath()},
	}
}

// writeConfigs writes the configuration files of containerd, CNI, the kubelet
// and kube-proxy.
func writeConfigs(p paths) error {
	files := map[string]string{
		p.config("containerd.toml"):                          containerdConfig(p),
		p.config("kubelet.yaml"):                             kubeletConfig(p),
		p.config("kube-proxy.yaml"):                          kubeProxyConfig(p),
		filepath.Join(p.cniConfDir(), "10-meshctl.conflist"): cniConfig(p),
	}
	for path, content := range files {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	return nil
}

// containerdConfig keeps every file containerd makes under the cluster's own
// directories, and carries the fixes this VM needs (see docs/CLUSTER.md):
// restrict_oom_score_adj because the VM lacks CAP_SYS_RESOURCE, network
// namespaces under the state directory so that `ip netns add` elsewhere cannot
// pin them, and Debian's runc, which has seccomp.
func containerdConfig(p paths) string {
	return fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %[3]q

[plugins.'io.containerd.internal.v1.opt']
  path = %[4]q

[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = %[5]q

[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = '/usr/sbin/runc'
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['/usr/lib/cni']
    conf_dir = %[6]q
`, p.containerdRoot(), p.containerdState(), p.containerdSocket(),
		filepath.Join(p.containerdRoot(), "opt"), PauseImage, p.cniConfDir())
}

// kubeletConfig carries the settings this VM needs: cgroup v1 with the
// cgroupfs driver (PID 1 is not systemd), low eviction thresholds because the
// root filesystem's stats are not found, and no swap check. ConfigMap and
// Secret volumes are resynced every 10 s (default 1 min) so that rotation
// tests see trust-bundle changes quickly. maxPods is 300 (default 110) so
// that the dashboard's scale test can run 200 host-network pods (they take
// no address of the node's /24).
func kubeletConfig(p paths) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
healthzBindAddress: 127.0.0.1
healthzPort: 10248
readOnlyPort: 0
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: %[2]s
authorization:
  mode: Webhook
cgroupDriver: cgroupfs
failCgroupV1: false
containerRuntimeEndpoint: unix://%[3]s
clusterDomain: %[4]s
clusterDNS: [%[5]s]
podCIDR: %[6]s
podLogsDir: %[7]s
resolvConf: /etc/resolv.conf
failSwapOn: false
maxPods: 300
syncFrequency: 10s
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%%
  nodefs.inodesFree: 1%%
  imagefs.available: 1%%
`, NodeIP, p.pki("ca.crt"), p.containerdSocket(), ClusterDomain, DNSServiceIP, PodCIDR, p.podLogs())
}

func kubeProxyConfig(p paths) string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %[1]s
mode: iptables
clusterCIDR: %[2]s
hostnameOverride: %[3]s
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, p.kubeconfig("kube-proxy"), clusterCIDR, NodeName)
}

// cniConfig is a bridge network with host-local addresses, kept in the
// cluster's state directory rather than /var/lib/cni.
func cniConfig(p paths) string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "meshctl",
  "plugins": [
    {
      "type": "bridge",
      "bridge": %[1]q,
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": %[2]q,
        "ranges": [[{"subnet": %[3]q}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, cniBridge, p.cniDataDir(), PodCIDR)
}
