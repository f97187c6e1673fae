//go:build e2e

package e2e

import (
	"context"
	"log/slog"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshctl/meshctl/controller/leader"
)

// TestLeaderElectionOnTheRealAPIServer runs two controller replicas'
// elections for one Lease against the cluster's API server: exactly one
// leads, never both at once, and when the leader stops, the other takes
// over at once (the lease is released, not left to expire).
func TestLeaderElectionOnTheRealAPIServer(t *testing.T) {
	ns := newNamespace(t, "leader")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	elections := map[string]*leader.Election{}
	stops := map[string]context.CancelFunc{}
	done := map[string]chan error{}
	for _, id := range []string{"replica-a", "replica-b"} {
		e := &leader.Election{Client: cluster.client, Namespace: ns, Name: "route-status", Identity: id, Log: slog.New(slog.DiscardHandler)}
		rctx, stop := context.WithCancel(ctx)
		elections[id], stops[id], done[id] = e, stop, make(chan error, 1)
		go func() { done[id] <- e.Run(rctx) }()
	}
	leaders := func() []string {
		var out []string
		for id, e := range elections {
			if e.Leading() {
				out = append(out, id)
			}
		}
		return out
	}
	var first string
	deadline := time.Now().Add(30 * time.Second)
	for first == "" {
		switch l := leaders(); len(l) {
		case 0:
		case 1:
			first = l[0]
		default:
			t.Fatalf("both replicas lead: %v", l)
		}
		if time.Now().After(deadline) {
			t.Fatal("no replica leads after 30 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// It stays one leader for a few renewals.
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if l := leaders(); len(l) != 1 || l[0] != first {
			t.Fatalf("leaders changed to %v without a reason (was %s)", l, first)
		}
	}
	lease, err := cluster.client.CoordinationV1().Leases(ns).Get(ctx, "route-status", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != first {
		t.Fatalf("the Lease's holder is %v, want %s", lease.Spec.HolderIdentity, first)
	}
	// The leader stops: the other leads well before the lease would expire.
	stopped := time.Now()
	stops[first]()
	if err := <-done[first]; err != nil {
		t.Fatalf("the stopped replica's Run: %v", err)
	}
	if elections[first].Leading() {
		t.Fatal("the stopped replica still says it leads")
	}
	second := "replica-a"
	if first == second {
		second = "replica-b"
	}
	for !elections[second].Leading() {
		if time.Since(stopped) > leader.LeaseDuration {
			t.Fatalf("%s did not take over within %v of %s stopping", second, leader.LeaseDuration, first)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%s led; it stopped and %s took over in %v", first, second, time.Since(stopped).Round(time.Millisecond))
}
