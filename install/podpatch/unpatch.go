package podpatch

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshctl/meshctl/internal/meshnames"
)

// HasProxy reports whether the pod already carries the injected containers
// (injected by hand with `meshctl inject --manual`, or already mutated).
func HasProxy(pod *corev1.Pod) bool {
	return slices.ContainsFunc(append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...), func(c corev1.Container) bool {
		return c.Name == meshnames.ProxyContainerName || c.Name == meshnames.InitContainerName
	})
}

// Unpatch reverses Patch and the annotation `meshctl inject` adds: it
// removes the injected containers, volumes and labels, the inject
// annotation and the config.meshctl.io annotations, in place. It reports
// whether anything changed.
func Unpatch(meta *corev1.Pod) bool {
	changed := false
	drop := func(c corev1.Container) bool {
		return c.Name == meshnames.ProxyContainerName || c.Name == meshnames.InitContainerName
	}
	if n := len(meta.Spec.InitContainers); n > 0 {
		meta.Spec.InitContainers = slices.DeleteFunc(meta.Spec.InitContainers, drop)
		changed = changed || len(meta.Spec.InitContainers) != n
		if len(meta.Spec.InitContainers) == 0 {
			meta.Spec.InitContainers = nil
		}
	}
	if n := len(meta.Spec.Volumes); n > 0 {
		meta.Spec.Volumes = slices.DeleteFunc(meta.Spec.Volumes, func(v corev1.Volume) bool {
			return v.Name == tokenVolume || v.Name == rootsVolume
		})
		changed = changed || len(meta.Spec.Volumes) != n
		if len(meta.Spec.Volumes) == 0 {
			meta.Spec.Volumes = nil
		}
	}
	for _, l := range []string{meshnames.VersionLabel, meshnames.WorkloadLabel} {
		if _, ok := meta.Labels[l]; ok {
			delete(meta.Labels, l)
			changed = true
		}
	}
	for k := range meta.Annotations {
		if k == meshnames.InjectAnnotation || strings.HasPrefix(k, meshnames.ConfigPrefix) {
			delete(meta.Annotations, k)
			changed = true
		}
	}
	if len(meta.Labels) == 0 {
		meta.Labels = nil
	}
	if len(meta.Annotations) == 0 {
		meta.Annotations = nil
	}
	return changed
}
