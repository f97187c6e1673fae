//go:build tools

// Package kube pins the Kubernetes release whose binaries the local test
// cluster runs. It is its own Go module so that k8s.io/kubernetes never enters
// the project's main go.mod; e2e/localcluster builds the commands below from it.
package kube

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
