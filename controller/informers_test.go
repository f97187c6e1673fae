package controller

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestSlimKeepsWhatDiscoveryReads(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-1", Namespace: "shop", Labels: map[string]string{"meshctl.io/proxy-version": "dev"},
			Annotations:   map[string]string{"config.meshctl.io/opaque-ports": "5432", "big": "x"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubelet"}},
		},
		Spec: corev1.PodSpec{ServiceAccountName: "web", Containers: []corev1.Container{{
			Name: "web", Image: "web:1", Env: []corev1.EnvVar{{Name: "A", Value: "b"}},
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http"),
				HTTPHeaders: []corev1.HTTPHeader{{Name: "x", Value: "y"}}}}, PeriodSeconds: 3},
		}}},
		Status: corev1.PodStatus{PodIP: "10.244.0.7", PodIPs: []corev1.PodIP{{IP: "10.244.0.7"}}, Conditions: []corev1.PodCondition{{Type: "Ready"}}},
	}
	out, err := slim(pod)
	if err != nil {
		t.Fatal(err)
	}
	p := out.(*corev1.Pod)
	if p.Spec.ServiceAccountName != "web" || p.Status.PodIPs[0].IP != "10.244.0.7" || p.Labels["meshctl.io/proxy-version"] != "dev" ||
		p.Annotations["config.meshctl.io/opaque-ports"] != "5432" {
		t.Errorf("slim lost what discovery reads: %+v", p)
	}
	// Inbound policy reads a meshed pod's named ports and probe targets.
	want := corev1.Container{Name: "web", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}}}}
	if len(p.Spec.Containers) != 1 || !equality.Semantic.DeepEqual(p.Spec.Containers[0], want) {
		t.Errorf("slim kept containers %+v, want only %+v", p.Spec.Containers, want)
	}
	if len(p.Status.Conditions) != 0 || p.ManagedFields != nil || p.Annotations["big"] != "" {
		t.Errorf("slim kept what nobody reads: %+v", p)
	}
	delete(pod.Labels, "meshctl.io/proxy-version")
	if out, _ := slim(pod); len(out.(*corev1.Pod).Spec.Containers) != 0 {
		t.Error("slim kept the containers of a pod that is not meshed")
	}

	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{
		Name: "web", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
		Annotations: map[string]string{corev1.LastAppliedConfigAnnotation: "{...}", "retry.meshctl.io/http": "5xx"},
	}}
	out, _ = slim(svc)
	s := out.(*corev1.Service)
	if s.ManagedFields != nil || s.Annotations[corev1.LastAppliedConfigAnnotation] != "" || s.Annotations["retry.meshctl.io/http"] != "5xx" {
		t.Errorf("slim(service) = %+v", s.ObjectMeta)
	}
}
