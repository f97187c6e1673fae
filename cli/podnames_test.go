package cli

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// TestPodNamesNameOnlyPodsOfTheirOwnAddress: an address held only by
// host-network pods (the node's) names none; a pod of its own wins over
// them; answers are cached for a while, then asked again; after a failed
// lookup it warns once and asks no more (one failing call per event
// otherwise).
func TestPodNamesNameOnlyPodsOfTheirOwnAddress(t *testing.T) {
	pod := func(ns, name string, host bool) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.PodSpec{HostNetwork: host}}
	}
	answers := map[string][]corev1.Pod{
		"10.199.0.1": {pod("kube-system", "kube-proxy-x", true)},
		"10.244.0.7": {pod("kube-system", "kube-proxy-x", true), pod("shop", "web-2", false)},
	}
	calls, fail := 0, false
	client := fake.NewClientset()
	client.PrependReactor("list", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		calls++
		if fail {
			return true, nil, errors.New("pods is forbidden")
		}
		ip := strings.TrimPrefix(a.(k8stesting.ListAction).GetListRestrictions().Fields.String(), "status.podIP=")
		return true, &corev1.PodList{Items: answers[ip]}, nil
	})
	var warn bytes.Buffer
	n := newPodNames(client, &warn)
	now := time.Now()
	n.now = func() time.Time { return now }
	ctx := context.Background()
	if got := n.name(ctx, "10.199.0.1:10250"); got != "" {
		t.Errorf("the node's address: %q, want none", got)
	}
	if got := n.name(ctx, "10.244.0.7:8080"); got != "shop/web-2" {
		t.Errorf("a pod's address: %q, want shop/web-2", got)
	}
	n.name(ctx, "10.244.0.7:9090")
	if calls != 2 {
		t.Errorf("%d lookups for two addresses, want 2 (the second port of one is cached)", calls)
	}
	now = now.Add(2 * podNameTTL)
	answers["10.244.0.7"] = []corev1.Pod{pod("shop", "api-9", false)}
	if got := n.name(ctx, "10.244.0.7:8080"); got != "shop/api-9" {
		t.Errorf("after the cache's time, an address reused: %q, want shop/api-9", got)
	}
	fail = true
	for range 100 {
		if got := n.name(ctx, "10.244.1.1:80"); got != "" {
			t.Fatalf("a failed lookup named %q", got)
		}
	}
	if calls != 4 || strings.Count(warn.String(), "warning") != 1 {
		t.Errorf("after a failed lookup: %d lookups in all (want 4) and warnings %q (want one)", calls, warn.String())
	}
}
