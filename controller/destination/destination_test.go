package destination

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/meshctl/meshctl/internal/api"
)

func ptr[T any](v T) *T { return &v }

func pod(name, ip, sa string, meshed bool) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", Labels: map[string]string{"app": "web"},
			Annotations: map[string]string{"config.meshctl.io/opaque-ports": "9000"}},
		Spec:   corev1.PodSpec{ServiceAccountName: sa},
		Status: corev1.PodStatus{PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
	}
	if meshed {
		p.Labels["meshctl.io/proxy-version"] = "dev"
		p.Labels["meshctl.io/workload"] = "web"
	}
	return p
}

func slice(name string, ready map[string]bool) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: "shop", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080))}},
	}
	for podName, ok := range ready {
		ip := map[string]string{"web-a": "10.244.0.10", "web-b": "10.244.0.11", "plain": "10.244.0.12"}[podName]
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(ok)},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: podName, Namespace: "shop"}, Zone: ptr("zone-a"),
		})
	}
	return s
}

func newWatcher(t *testing.T, objs ...any) (*Watcher, *fake.Clientset) {
	t.Helper()
	client := fake.NewClientset()
	for _, o := range objs {
		switch v := o.(type) {
		case *corev1.Service:
			client.Tracker().Add(v)
		case *corev1.Pod:
			client.Tracker().Add(v)
		case *discoveryv1.EndpointSlice:
			client.Tracker().Add(v)
		}
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	w, err := New(factory, "cluster.local", "cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); factory.Shutdown() })
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	return w, client
}

var svc = &corev1.Service{
	ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Annotations: map[string]string{"retry.meshctl.io/http": "5xx", "unrelated": "x"}},
	Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.50", ClusterIPs: []string{"10.96.0.50"},
		Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
}

func TestResolveTranslatesServicesAndPods(t *testing.T) {
	w, _ := newWatcher(t, svc, pod("web-a", "10.244.0.10", "web", true), pod("web-b", "10.244.0.11", "web", true),
		pod("plain", "10.244.0.12", "", false), slice("web-1", map[string]bool{"web-a": true, "web-b": false, "plain": true}))
	want := []api.Endpoint{
		{Addr: "10.244.0.10:8080", Identity: "spiffe://cluster.local/ns/shop/sa/web", Workload: "web", Zone: "zone-a", Weight: 1},
		{Addr: "10.244.0.12:8080", Zone: "zone-a", Weight: 1},
	}
	for _, target := range []string{"web.shop.svc.cluster.local:80", "web.shop:80", "web.shop.svc:80", "10.96.0.50:80"} {
		d, err := w.Resolve(target)
		if err != nil {
			t.Fatal(err)
		}
		if !d.Known || d.Service != "web.shop" || len(d.Endpoints) != 2 || d.Endpoints[0] != want[0] || d.Endpoints[1] != want[1] {
			t.Errorf("%s: %+v", target, d)
		}
		if d.Annotations["retry.meshctl.io/http"] != "5xx" || d.Annotations["unrelated"] != "" {
			t.Errorf("%s: annotations %v", target, d.Annotations)
		}
	}
	d, _ := w.Resolve("10.244.0.11:9000")
	if !d.Known || len(d.Endpoints) != 1 || !d.Endpoints[0].Opaque || d.Endpoints[0].Identity == "" {
		t.Errorf("pod IP target: %+v", d)
	}
	for _, outside := range []string{"93.184.216.34:443", "example.com:443"} {
		if d, _ := w.Resolve(outside); d.Known {
			t.Errorf("%s is outside the cluster but resolved %+v", outside, d)
		}
	}
	if _, err := w.Resolve("no-port"); err == nil {
		t.Error("a target without a port resolved")
	}
}

func TestWatchSendsANewSnapshotWhenEndpointsChange(t *testing.T) {
	w, client := newWatcher(t, svc, pod("web-a", "10.244.0.10", "web", true), pod("web-b", "10.244.0.11", "web", true),
		slice("web-1", map[string]bool{"web-a": true}))
	updates := make(chan api.Destination, 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Watch(ctx, "web.shop:80", func(d api.Destination) error { updates <- d; return nil })
	if d := <-updates; len(d.Endpoints) != 1 {
		t.Fatalf("first snapshot %+v", d)
	}
	start := time.Now()
	if _, err := client.DiscoveryV1().EndpointSlices("shop").Update(ctx, slice("web-1", map[string]bool{"web-a": true, "web-b": true}), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-updates:
		if len(d.Endpoints) != 2 {
			t.Errorf("after the change: %+v", d)
		}
		t.Logf("update reached the watcher in %s", time.Since(start))
	case <-time.After(5 * time.Second):
		t.Fatal("no update after the EndpointSlice changed")
	}
}

// TestPodIPLookupsSkipFinishedPods: a completed Job's pod keeps its IP in
// its status after the IP went to a new pod (linkerd2 #5394). Looking the IP
// up must give the running pod, never the finished one; a pod being deleted
// only when nothing else has the IP.
func TestPodIPLookupsSkipFinishedPods(t *testing.T) {
	const ip = "10.244.0.20"
	withPhase := func(p *corev1.Pod, phase corev1.PodPhase) *corev1.Pod {
		p.Status.Phase = phase
		return p
	}
	deleting := func(p *corev1.Pod) *corev1.Pod {
		p.DeletionTimestamp = &metav1.Time{Time: time.Now()}
		p.Finalizers = []string{"example.com/hold"}
		return p
	}
	for _, tc := range []struct {
		name string
		pods []*corev1.Pod
		want string // the ServiceAccount of the pod found; "" none
	}{
		{"a succeeded Job pod and the running pod that got its IP", []*corev1.Pod{
			withPhase(pod("job-1", ip, "batch", true), corev1.PodSucceeded), withPhase(pod("web-a", ip, "web", true), corev1.PodRunning)}, "web"},
		{"the same, listed the other way round", []*corev1.Pod{
			withPhase(pod("web-a", ip, "web", true), corev1.PodRunning), withPhase(pod("zz-job", ip, "batch", true), corev1.PodSucceeded)}, "web"},
		{"a failed pod and a pending one", []*corev1.Pod{
			withPhase(pod("old", ip, "batch", true), corev1.PodFailed), withPhase(pod("new", ip, "web", true), corev1.PodPending)}, "web"},
		{"a pod being deleted and a new one", []*corev1.Pod{
			deleting(withPhase(pod("a-old", ip, "batch", true), corev1.PodRunning)), withPhase(pod("b-new", ip, "web", true), corev1.PodRunning)}, "web"},
		{"only a finished pod", []*corev1.Pod{withPhase(pod("job-1", ip, "batch", true), corev1.PodSucceeded)}, ""},
		{"only a pod being deleted (still serving)", []*corev1.Pod{deleting(withPhase(pod("web-a", ip, "web", true), corev1.PodRunning))}, "web"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := make([]any, len(tc.pods))
			for i, p := range tc.pods {
				objs[i] = p
			}
			w, _ := newWatcher(t, objs...)
			d, err := w.Resolve(ip + ":8080")
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if d.Known {
					t.Errorf("resolved %+v, want unknown", d)
				}
				return
			}
			want := "spiffe://cluster.local/ns/shop/sa/" + tc.want
			if !d.Known || len(d.Endpoints) != 1 || d.Endpoints[0].Identity != want {
				t.Errorf("resolved %+v, want the pod of %s", d, want)
			}
		})
	}
}
