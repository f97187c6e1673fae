// Package ociimage packages static binaries into container images without a
// Docker engine or a registry: it writes docker-archive tarballs (which
// containerd's `ctr images import` reads) with go-containerregistry.
package ociimage
