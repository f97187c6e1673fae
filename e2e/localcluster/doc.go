// Package localcluster starts and stops a real single-node Kubernetes cluster
// on this machine, for the project's end-to-end tests and demo: etcd, the
// control plane, containerd, the kubelet, kube-proxy and CoreDNS, all built
// from the Go module proxy or taken from Debian packages.
//
// Everything it creates lives under fixed directories (StateDir, RunDir), a
// bridge for the node address, the CNI bridge, iptables chains named KUBE-*
// and CNI-*, and one pids cgroup; Down removes all of it, by PID and by those
// names, so that Up after a crash or a killed session starts clean. It needs root.
package localcluster
