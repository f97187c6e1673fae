package controller

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshctl/meshctl/internal/meshnames"
)

// slim is the cluster-wide informers' transform: the caches keep only what
// the destination service and the injector read, so the controller's memory
// grows with the number of pods and endpoints, not with their size.
func slim(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: o.Name, Namespace: o.Namespace, UID: o.UID, ResourceVersion: o.ResourceVersion,
				Labels: o.Labels, Annotations: meshOnly(o.Annotations), OwnerReferences: o.OwnerReferences,
				DeletionTimestamp: o.DeletionTimestamp,
			},
			Spec: corev1.PodSpec{ServiceAccountName: o.Spec.ServiceAccountName, HostNetwork: o.Spec.HostNetwork, NodeName: o.Spec.NodeName,
				Containers: meshedContainers(o)},
			Status: corev1.PodStatus{Phase: o.Status.Phase, PodIP: o.Status.PodIP, PodIPs: o.Status.PodIPs},
		}, nil
	case metav1.Object:
		// Objects straight from a list or watch belong to nobody else yet.
		o.SetManagedFields(nil)
		if a := o.GetAnnotations(); a != nil {
			if _, ok := a[corev1.LastAppliedConfigAnnotation]; ok {
				a = meshOrOther(a)
				o.SetAnnotations(a)
			}
		}
	}
	return obj, nil
}

// meshedContainers keeps, for meshed pods, what inbound policy reads of
// their containers: named ports and probe targets.
func meshedContainers(p *corev1.Pod) []corev1.Container {
	if _, meshed := p.Labels[meshnames.VersionLabel]; !meshed {
		return nil
	}
	out := make([]corev1.Container, len(p.Spec.Containers))
	for i, c := range p.Spec.Containers {
		out[i] = corev1.Container{Name: c.Name, Ports: c.Ports,
			ReadinessProbe: slimProbe(c.ReadinessProbe), LivenessProbe: slimProbe(c.LivenessProbe), StartupProbe: slimProbe(c.StartupProbe)}
	}
	return out
}

func slimProbe(p *corev1.Probe) *corev1.Probe {
	if p == nil {
		return nil
	}
	h := corev1.ProbeHandler{TCPSocket: p.TCPSocket, GRPC: p.GRPC}
	if p.HTTPGet != nil {
		h.HTTPGet = &corev1.HTTPGetAction{Path: p.HTTPGet.Path, Port: p.HTTPGet.Port, Scheme: p.HTTPGet.Scheme}
	}
	return &corev1.Probe{ProbeHandler: h}
}

// meshOnly keeps the meshctl annotations.
func meshOnly(a map[string]string) map[string]string {
	var out map[string]string
	for k, v := range a {
		if strings.Contains(k, "meshctl.io/") {
			if out == nil {
				out = make(map[string]string)
			}
			out[k] = v
		}
	}
	return out
}

// meshOrOther drops kubectl's copy of the last applied object, often the
// largest part of a small object.
func meshOrOther(a map[string]string) map[string]string {
	out := make(map[string]string, len(a))
	for k, v := range a {
		if k != corev1.LastAppliedConfigAnnotation {
			out[k] = v
		}
	}
	return out
}
