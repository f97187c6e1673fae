//go:build tools

// Package containerd pins the containerd release the local test cluster runs
// (Debian's 1.6 is too old for kubelet 1.37). It is its own Go module so its
// dependencies never mix with the project's.
package containerd

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
