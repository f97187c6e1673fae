//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshctl/meshctl/identity/ca"
)

// TestControllerMemoryWithManyEndpoints measures the controller's memory
// before and after 100 Services with 1,000 endpoints appear (EndpointSlices
// made by hand: no pods needed). It bounds and reports the heap's growth, and
// asserts that the controller saw them all.
func TestControllerMemoryWithManyEndpoints(t *testing.T) {
	ctx := context.Background()
	anchor := mustCA(t)(ca.NewTrustAnchor("cluster.local", 24*time.Hour))
	issuer := mustCA(t)(ca.NewIssuer(anchor, "cluster.local", 12*time.Hour))
	deployControlPlane(t, "24h", issuer, anchor)
	ctrl := podsOf(t, "meshctl", controllerSelector)[0]
	read := func() map[string]float64 {
		t.Helper()
		var m map[string]float64
		eventually(t, "the controller's metrics", time.Minute, func(ctx context.Context) (err error) {
			m, err = podMetrics(ctx, "meshctl", ctrl, "9990")
			return err
		})
		return m
	}
	cached := func(m map[string]float64, resource string) float64 {
		return sumMatching(m, "controller_cached_objects{", "resource="+resource)
	}
	before := read()

	ns := newNamespace(t, "scale")
	const services, perService = 100, 10
	for i := range services {
		name := fmt.Sprintf("svc-%03d", i)
		if _, err := cluster.client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		slice := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptrTo("http"), Port: ptrTo(int32(8080))}},
		}
		for j := range perService {
			slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{fmt.Sprintf("10.250.%d.%d", i, j+1)},
				Conditions: discoveryv1.EndpointConditions{Ready: ptrTo(true)},
			})
		}
		if _, err := cluster.client.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Other tests' namespaces may still be going away: compare the cache
	// with what the API server holds, not with the count before.
	var after map[string]float64
	eventually(t, "the controller to cache every EndpointSlice", 2*time.Minute, func(ctx context.Context) error {
		all, err := cluster.client.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		mine, err := cluster.client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		after = read()
		if got := cached(after, "endpointslices"); got != float64(len(all.Items)) || len(mine.Items) != services {
			return fmt.Errorf("%v EndpointSlices cached, %d in the cluster, %d of ours", got, len(all.Items), len(mine.Items))
		}
		return nil
	})
	mb := func(m map[string]float64, name string) float64 { return sumMatching(m, name+"{") / (1 << 20) }
	t.Logf("controller with %v Services, %v EndpointSlices, %v pods cached: RSS %.1f MB → %.1f MB, heap in use %.1f MB → %.1f MB (before → after %d Services / %d endpoints)",
		cached(after, "services"), cached(after, "endpointslices"), cached(after, "pods"),
		mb(before, "process_resident_memory_bytes"), mb(after, "process_resident_memory_bytes"),
		mb(before, "go_memstats_heap_inuse_bytes"), mb(after, "go_memstats_heap_inuse_bytes"), services, services*perService)
	// The informers are slimmed to what the controller reads: about 2.2 MB
	// of heap for these 1,000 endpoints here. Heap in use moves with the
	// collector's timing, so the bound leaves room for that; it catches a
	// gross regression (a copy per subscriber, a leak per event), while
	// controller/informers_test.go is what fails when whole objects
	// (managed fields, annotations) are cached again.
	grew := mb(after, "go_memstats_heap_inuse_bytes") - mb(before, "go_memstats_heap_inuse_bytes")
	measure(t, "controller.heap_growth_100_services_1000_endpoints_mb", grew, "MB", "<= 8")
	measure(t, "controller.rss_after_100_services_1000_endpoints_mb", mb(after, "process_resident_memory_bytes"), "MB", "")
	if grew > 8 {
		t.Errorf("the controller's heap grew by %.1f MB for %d Services / %d endpoints, want at most 8 MB", grew, services, services*perService)
	}
}

func ptrTo[T any](v T) *T { return &v }
