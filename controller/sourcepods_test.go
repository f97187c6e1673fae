package controller

import (
	"context"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
)

// TestIssuanceKnowsTheLivePodOfASourceAddress: the identity service's
// PodBySourceIP answers with the ServiceAccount of the pod that holds an
// address now: not a finished pod's (its IP may be another's already), not
// a hostNetwork pod's (the node's address), and a pod being deleted only
// when no other has the address.
func TestIssuanceKnowsTheLivePodOfASourceAddress(t *testing.T) {
	now := metav1.NewTime(time.Now())
	pod := func(ns, name, sa, ip string, change func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       corev1.PodSpec{ServiceAccountName: sa},
			Status:     corev1.PodStatus{Phase: corev1.PodPending, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
		}
		if change != nil {
			change(p)
		}
		return p
	}
	client := fake.NewClientset(
		pod("shop", "web-1", "web", "10.244.0.7", nil), // still starting (its proxy asks before the app runs)
		pod("shop", "old", "web", "10.244.0.9", func(p *corev1.Pod) { p.DeletionTimestamp = &now }),
		pod("shop", "new", "admin", "10.244.0.9", func(p *corev1.Pod) { p.Status.Phase = corev1.PodRunning }),
		pod("shop", "job", "batch", "10.244.0.10", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }),
		pod("kube-system", "agent", "agent", "10.199.0.1", func(p *corev1.Pod) { p.Spec.HostNetwork = true }),
		pod("shop", "going", "web", "10.244.0.11", func(p *corev1.Pod) { p.DeletionTimestamp = &now }),
		pod("shop", "plain", "", "fd00::5", nil),
	)
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(slim))
	pods := factory.Core().V1().Pods().Informer()
	lookup, err := sourcePods(pods)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	factory.Start(ctx.Done())
	defer func() { cancel(); factory.Shutdown() }()
	if !cache.WaitForCacheSync(ctx.Done(), pods.HasSynced) {
		t.Fatal("no sync")
	}
	for _, tc := range []struct {
		ip, ns, sa string
		ok         bool
	}{
		{"10.244.0.7", "shop", "web", true},
		{"::ffff:10.244.0.7", "shop", "web", true},
		{"10.244.0.9", "shop", "admin", true},
		{"10.244.0.10", "", "", false},
		{"10.199.0.1", "", "", false},
		{"10.244.0.11", "shop", "web", true},
		{"fd00::5", "shop", "default", true},
		{"10.244.9.9", "", "", false},
	} {
		ns, sa, ok := lookup(netip.MustParseAddr(tc.ip))
		if ns != tc.ns || sa != tc.sa || ok != tc.ok {
			t.Errorf("%s: %q %q %v, want %q %q %v", tc.ip, ns, sa, ok, tc.ns, tc.sa, tc.ok)
		}
	}
}
